"""Headless Chromium driven over the DevTools protocol with aiohttp's websocket client.

Debian's ``chromium`` package is the browser; nothing is downloaded. ``ensure_chromium`` installs
it with apt when it is missing and the tests run as root, and says why when it cannot.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp


class BrowserUnavailable(Exception):
    """No chromium on this machine and no way to install it here; the reason is the message."""


def ensure_chromium() -> str:
    found = shutil.which("chromium")
    if found:
        return found
    if os.geteuid() != 0:
        raise BrowserUnavailable("chromium is not installed and installing it with apt needs root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BrowserUnavailable(f"`{' '.join(cmd)}` could not run: {exc}") from None
    found = shutil.which("chromium")
    if found is None:
        raise BrowserUnavailable(f"`{' '.join(cmd)}` failed ({done.returncode}): {done.stderr[-800:]}")
    return found


class Page:
    """One tab over the DevTools protocol: commands by id, events kept for ``wait_for`` and inspection."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: list[dict[str, Any]] = []
        self._arrived = asyncio.Condition()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for msg in self._ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            if "id" in data:
                future = self._pending.pop(data["id"], None)
                if future is not None and not future.done():
                    future.set_result(data)
            else:
                async with self._arrived:
                    self.events.append(data)
                    self._arrived.notify_all()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionError("DevTools connection closed"))

    async def send(self, method: str, timeout: float = 30.0, **params: Any) -> dict[str, Any]:
        msg_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = future
        await self._ws.send_str(json.dumps({"id": msg_id, "method": method, "params": params}))
        reply = await asyncio.wait_for(future, timeout)
        if "error" in reply:
            raise RuntimeError(f"{method} failed: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    async def wait_for(self, method: str, since: int = 0, timeout: float = 30.0) -> dict[str, Any]:
        """The first ``method`` event at or after index ``since`` of ``events``."""
        async with asyncio.timeout(timeout), self._arrived:
            while True:
                for event in self.events[since:]:
                    if event["method"] == method:
                        return event
                await self._arrived.wait()

    async def evaluate(self, expression: str) -> Any:
        result = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def navigate(self, url: str, timeout: float = 30.0) -> None:
        mark = len(self.events)
        await self.send("Page.navigate", url=url)
        await self.wait_for("Page.loadEventFired", since=mark, timeout=timeout)

    async def wait_until(self, expression: str, timeout: float = 30.0) -> None:
        end = time.monotonic() + timeout
        while not await self.evaluate(expression):
            if time.monotonic() > end:
                raise AssertionError(f"page never satisfied {expression!r}")
            await asyncio.sleep(0.05)

    async def screenshot(self, path: Path, width: int = 1280) -> bytes:
        """A PNG of the whole page, not only the viewport."""
        metrics = await self.send("Page.getLayoutMetrics")
        height = int(min(metrics["cssContentSize"]["height"], 12000))
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        shot = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        png = base64.b64decode(shot["data"])
        await asyncio.to_thread(path.write_bytes, png)
        return png

    async def close(self) -> None:
        await self._ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


def _devtools_port(port_file: Path) -> int | None:
    """The port chromium wrote once its DevTools server listens; None until then."""
    if not port_file.is_file():
        return None
    text = port_file.read_text()
    # the first line is the port, complete once its newline is there
    return int(text.splitlines()[0]) if "\n" in text else None


async def _wait_devtools(proc: asyncio.subprocess.Process, profile: Path, log_file: Path) -> int:
    # chromium says nothing on its own when it is ready: the port file it writes is polled
    port_file = profile / "DevToolsActivePort"
    end = time.monotonic() + 60
    while (port := await asyncio.to_thread(_devtools_port, port_file)) is None:
        if proc.returncode is not None or time.monotonic() > end:
            log = await asyncio.to_thread(log_file.read_text, errors="replace")
            raise RuntimeError("chromium did not start:\n" + log[-3000:])
        await asyncio.sleep(0.05)
    return port


@contextlib.asynccontextmanager
async def chromium_page(executable: str, profile: Path, log_file: Path) -> AsyncIterator[Page]:
    """A fresh headless browser with its own profile, and its first tab."""
    await asyncio.to_thread(profile.mkdir, parents=True, exist_ok=True)
    cmd = [
        executable, "--headless", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
        "--disable-extensions", "--disable-background-networking", "--disable-dev-shm-usage",
        "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", f"--user-data-dir={profile}",
        "--window-size=1280,900", "about:blank",
    ]  # fmt: skip
    if os.geteuid() == 0:
        cmd.insert(1, "--no-sandbox")  # chromium refuses to start its sandbox as root
    with log_file.open("wb") as log:  # the child holds its own copy of the descriptor
        proc = await asyncio.create_subprocess_exec(*cmd, stdout=log, stderr=asyncio.subprocess.STDOUT)
    try:
        port = await _wait_devtools(proc, profile, log_file)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as resp:
                targets = await resp.json()
            target = next(t for t in targets if t["type"] == "page")
            ws = await http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0)
            page = Page(ws)
            try:
                for domain in ("Page", "Runtime", "Log"):
                    await page.send(f"{domain}.enable")
                yield page
            finally:
                await page.close()
    finally:
        await _stop(proc)


async def _stop(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):  # it may have exited already
        proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), 10)
    except TimeoutError:
        proc.kill()
        await asyncio.wait_for(proc.wait(), 10)
