"""Running an agent: in the foreground until a signal (``edge-agent serve``), or in a background
thread with its own event loop, for benchmarks and tests that drive it over real HTTP with
blocking clients from the calling thread, exactly as applications do.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, TypeVar

from aiohttp import web

from edge_agent.api.state import STATE
from edge_agent.assemble import build_app
from shared.config import EdgeSettings

T = TypeVar("T")


class BackgroundAgent:
    def __init__(self, app: web.Application, host: str = "127.0.0.1") -> None:
        self._app = app
        self._host = host
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="edge-agent", daemon=True)
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self.port}"

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 120.0) -> T:
        """Run ``coro`` on the agent's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def drain(self, timeout: float = 120.0) -> None:
        """Wait until the bookkeeping (telemetry, cache stores) of every answer sent so far is done."""
        self.call(self._app[STATE].pipeline.drain(), timeout)

    async def _start(self) -> None:
        self._runner = web.AppRunner(self._app, handle_signals=False, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def start(self) -> BackgroundAgent:
        self._thread.start()
        self.call(self._start())
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self.call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> BackgroundAgent:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


async def serve(settings: EdgeSettings, ready_line: str) -> None:
    """Serve until SIGINT/SIGTERM; print ``ready_line`` (with host and port) once accepting."""
    app = await build_app(settings)
    # a client that hangs up cancels its handler, and with it the escalation and the hub's work
    # (aiohttp would otherwise run the handler to the end for nobody)
    runner = web.AppRunner(app, handle_signals=False, handler_cancellation=True)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.port)
        await site.start()
        port = runner.addresses[0][1] if runner.addresses else settings.port
        print(ready_line.format(host=settings.host, port=port), flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()
