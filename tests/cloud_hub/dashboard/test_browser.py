"""The dashboard in headless Chromium: ``cloud-hub serve --dashboard-port 0`` in a subprocess, real
edges delivering telemetry to it, an evaluation run; the page must show what ``/api/summary``
reports, keep to its content security policy, and leave a screenshot in the test's folder."""

from __future__ import annotations

import asyncio
import struct
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from cloud_hub.cli import main as hub_cli
from cloud_hub.dashboard.app import Dashboard
from cloud_hub.dashboard.summary import Sources
from cloud_hub.dashboard.token import load_token
from cloud_hub.evaluation.canary import CanaryController
from cloud_hub.telemetry.store import TelemetryStore, store_path
from tests.cloud_hub.dashboard.cdp import BrowserUnavailable, Page, chromium_page, ensure_chromium
from tests.cloud_hub.dashboard.fleet_traffic import Edge, FleetKeys, enrol_edges, send_traffic
from tests.cloud_hub.helpers import HUB_CLI, write_config

pytestmark = pytest.mark.asyncio(loop_scope="module")

_COLLECT = """[...document.querySelectorAll('[data-metric]')].map((n) => ({
  path: n.dataset.metric, format: n.dataset.format || null, text: n.textContent,
  value: n.hasAttribute('data-value') ? n.getAttribute('data-value') : null}))"""


@pytest.fixture(scope="module")
def chromium() -> str:
    try:
        return ensure_chromium()
    except BrowserUnavailable as exc:
        pytest.skip(f"no headless browser: {exc}")


@dataclass
class Served:
    url: str
    token: str
    home: Path
    edges: dict[str, Edge]


def _start_hub(home: Path, config: Path, log_file: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    cmd = [str(HUB_CLI), "serve", "--home", str(home), "--bind", "tcp://127.0.0.1:0", "--config", str(config),
           "--dashboard-port", "0"]  # fmt: skip
    with log_file.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    end = time.monotonic() + 60
    while time.monotonic() < end and proc.poll() is None:
        lines = log_file.read_text(errors="replace").splitlines()
        url = next((ln.removeprefix("dashboard on ") for ln in lines if ln.startswith("dashboard on ")), "")
        endpoint = next(
            (ln.removeprefix("hub ready on ") for ln in lines if ln.startswith("hub ready on ")), ""
        )
        if url and endpoint:
            return proc, endpoint.strip(), url.strip()
        time.sleep(0.05)
    proc.kill()
    proc.wait(30)
    raise RuntimeError("hub did not become ready:\n" + log_file.read_text(errors="replace")[-4000:])


@pytest.fixture(scope="module")
def hub_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, FleetKeys, str, str]]:
    root = tmp_path_factory.mktemp("served")
    home = root / "hub"
    assert hub_cli(["keys", "init", "--home", str(home)]) == 0
    frontier: dict[str, object] = {"name": "frontier-echo", "backend": "echo", "tier": "frontier",
                "cost": {"usd_per_1k_prompt": 0.01, "usd_per_1k_completion": 0.03}}  # fmt: skip
    config = write_config(root / "hub.yaml", [{"name": "echo", "backend": "echo"}, frontier], "echo", 0.5)
    CanaryController(home / "policy.json").start(0.7, share=0.2)
    keys = enrol_edges(home, root / "edges")
    proc, endpoint, url = _start_hub(home, config, root / "hub.log")
    yield home, keys, endpoint, url
    proc.terminate()
    assert proc.wait(60) == 0, (root / "hub.log").read_text()[-3000:]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served(hub_process: tuple[Path, FleetKeys, str, str]) -> AsyncIterator[Served]:
    home, keys, endpoint, url = hub_process
    assert url.startswith("http://127.0.0.1:")  # bound to loopback unless told otherwise
    edges = await send_traffic(endpoint, keys, home.parent / "edges", time.time())
    run = ["eval", "run", "--home", str(home), "--no-mlflow", "--min-n", "3", "--target", "math=0.9"]
    assert await asyncio.to_thread(hub_cli, run) == 0
    yield Served(url, load_token(home), home, edges)
    for edge in edges.values():
        await edge.close()


async def _summary(s: Served) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{s.url}api/summary", headers={"Authorization": f"Bearer {s.token}"}) as r,
    ):
        assert r.status == 200
        body: dict[str, Any] = await r.json()
        return body


def _fixed(x: float, digits: int) -> str:
    # Number.prototype.toFixed rounds the exact binary value half away from zero
    return str(Decimal(x).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP))


def as_shown(value: Any, kind: str) -> str:
    """What the page's formatter prints for ``value``."""
    if value is None:
        return "—"
    if kind == "pct":
        return _fixed(value * 100, 1) + "%"
    if kind == "usd":
        return "$" + _fixed(value, 2 if abs(value) >= 100 else 6)
    if kind == "ratio":
        return _fixed(value, 3) + "×"
    if kind == "times":
        return _fixed(value, 1) + "×"
    if kind == "secs":
        return _fixed(value, 3) + " s"
    if kind == "num":
        return _fixed(value, 3)
    return str(value)


def resolve(summary: dict[str, Any], path: str) -> Any:
    node: Any = summary
    for part in path.split("."):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def _problems(page: Page) -> list[str]:
    out = []
    for event in page.events:
        if event["method"] == "Runtime.exceptionThrown":
            out.append(str(event["params"]["exceptionDetails"]))
        elif event["method"] == "Log.entryAdded" and event["params"]["entry"]["level"] == "error":
            out.append(event["params"]["entry"]["text"])
        elif event["method"] == "Runtime.consoleAPICalled" and event["params"]["type"] == "error":
            out.append(str(event["params"]["args"]))
    return out


def _png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    return int(width), int(height)


async def test_page_shows_what_the_api_reports(chromium: str, served: Served, tmp_path: Path) -> None:
    async with chromium_page(chromium, tmp_path / "profile", tmp_path / "chromium.log") as page:
        await page.navigate(f"{served.url}#token={served.token}")
        await page.wait_until("document.body.dataset.state === 'ready'")
        api = await _summary(served)
        shown: list[dict[str, Any]] = await page.evaluate(_COLLECT)
        assert await page.evaluate("location.hash") == ""  # the token left the address bar
        png = await page.screenshot(tmp_path / "dashboard.png")
        problems = _problems(page)
    assert not problems, problems

    paths = {item["path"] for item in shown}
    required = {
        "totals.requests", "north_star.served_without_frontier", "north_star.cost_vs_frontier.ratio",
        "totals.cost_usd", "totals.cache_hit_rate", "totals.escalation_rate", "totals.fallback_rate",
        "totals.regeneration_rate", "totals.error_rate", "cache.hit_rate", "cache.semantic_hit_rate",
        "canary.canary_version", "canary.canary.eval.pass_rate", "canary.control.requests",
    }  # fmt: skip
    for i in range(len(api["north_star"]["series"])):
        required.add(f"north_star.series.{i}.served_without_frontier")
    for i in range(len(api["routes"])):
        required |= {
            f"routes.{i}.{k}" for k in ("route", "share", "cost_usd", "latency_p50_s", "latency_p95_s")
        }
    for i in range(len(api["cache"]["semantic_audit"])):
        required |= {
            f"cache.semantic_audit.{i}.{k}" for k in ("domain", "hits", "similarity_mean", "reasked")
        }
    for i in range(len(api["quality"]["domains"])):
        required |= {
            f"quality.domains.{i}.{k}" for k in ("domain", "pass_rate", "ci_low", "ci_high", "status")
        }
    for i in range(len(api["quality"]["flags"])):
        required |= {f"quality.flags.{i}.{k}" for k in ("domain", "route", "status", "top_failure")}
    for i in range(len(api["fleet"])):
        required |= {f"fleet.{i}.{k}" for k in ("edge", "requests", "spool_backlog", "dropped_events")}
    assert not required - paths, sorted(required - paths)
    assert api["quality"]["flags"] and len(api["fleet"]) == 3 and len(api["routes"]) == 5

    for item in shown:
        expected = resolve(api, item["path"])
        if item["value"] is not None:  # a chart mark: its exact value
            assert float(item["value"]) == pytest.approx(expected, rel=1e-12), item
        else:
            assert item["text"] == as_shown(expected, item["format"]), item

    drops = [row["dropped_events"] for row in api["fleet"]]
    assert any(drops) and any(row["spool_backlog"] for row in api["fleet"])
    assert api["north_star"]["frontier_price"]["model"] == "frontier-echo"
    width, height = _png_size(png)
    assert width == 1280 and height > 1500  # the whole page, every panel
    assert len(png) > 50_000


async def test_login_box_refuses_a_wrong_token_and_takes_the_right_one(
    chromium: str, served: Served, tmp_path: Path
) -> None:
    async with chromium_page(chromium, tmp_path / "profile", tmp_path / "chromium.log") as page:
        await page.navigate(served.url)
        await page.wait_until("document.body.dataset.state === 'login'")
        assert await page.evaluate("document.getElementById('panels').hidden") is True
        submit = (
            "document.getElementById('token').value = {!r}; document.getElementById('login').requestSubmit()"
        )
        await page.evaluate(submit.format("not-the-token"))
        await page.wait_until("document.getElementById('login-error').textContent.includes('refused')")
        assert await page.evaluate("document.body.dataset.state") == "login"
        await page.evaluate(submit.format(served.token))
        await page.wait_until("document.body.dataset.state === 'ready'")
        requests = await page.evaluate(
            "document.querySelector('[data-metric=\"totals.requests\"]').textContent"
        )
        mark = len(page.events)
        await page.send("Page.reload")
        await page.wait_for("Page.loadEventFired", since=mark)
        await page.wait_until("document.body.dataset.state === 'login'")  # the token was never stored
        problems = [p for p in _problems(page) if "401" not in p]  # the refused token's fetch
    assert requests == str((await _summary(served))["totals"]["requests"])
    assert not problems, problems


async def test_a_fresh_hub_renders_unknowns_without_script_errors(chromium: str, tmp_path: Path) -> None:
    home = tmp_path / "hub"
    assert hub_cli(["keys", "init", "--home", str(home)]) == 0
    store = TelemetryStore(store_path(home))
    board = Dashboard(Sources(store, home, None, home / "enrolled"), load_token(home))
    url = await board.start()
    try:
        async with chromium_page(chromium, tmp_path / "profile", tmp_path / "chromium.log") as page:
            await page.navigate(f"{url}#token={load_token(home)}")
            await page.wait_until("document.body.dataset.state === 'ready'")
            shown = {i["path"]: i["text"] for i in await page.evaluate(_COLLECT)}
            empty = await page.evaluate(
                "[...document.querySelectorAll('td.empty')].map((n) => n.textContent)"
            )
            problems = _problems(page)
    finally:
        await board.close()
        store.close()
    assert not problems, problems
    assert shown["totals.requests"] == "0"
    assert shown["north_star.served_without_frontier"] == "—"
    assert shown["north_star.cost_vs_frontier.ratio"] == "—"
    assert "no requests in this window" in empty and "no evaluation results" in empty
