"""The link against ``cloud-hub serve`` in its own process: kill it, restart it, recover."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.hub_link import HubLink, HubUnavailable
from shared.wire import Reply
from tests.cloud_hub.helpers import HubProcess, Keys, make_keys, write_config
from tests.edge_agent.hub_link.test_link import HEARTBEAT_S, req, wait_until


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return make_keys(tmp_path)


@pytest.fixture
def hub_proc(tmp_path: Path, keys: Keys) -> Iterator[HubProcess]:
    config = write_config(tmp_path / "hub.yaml", [{"name": "echo", "backend": "echo"}], "echo", HEARTBEAT_S)
    proc = HubProcess(keys.hub_home, config)
    proc.start()
    yield proc
    proc.kill()


async def test_hub_killed_then_restarted(keys: Keys, hub_proc: HubProcess) -> None:
    link = HubLink(hub_proc.endpoint, keys.hub_public, keys.edge_secret_file, heartbeat_s=HEARTBEAT_S)
    await link.start()
    try:
        await wait_until(lambda: link.connected)
        assert (await link.escalate(req("before"))).text == "hello edge"
        items = [i async for i in link.stream(req("stream", "over processes"))]
        assert isinstance(items[-1], Reply) and items[-1].text == "over processes"

        hub_proc.kill()  # SIGKILL: no goodbye, the link must notice on its own
        down_after = await wait_until(lambda: not link.connected, timeout=3.0)
        assert down_after <= 3 * HEARTBEAT_S + 1.0  # three missed beats, plus slack for a busy box
        started = time.monotonic()
        with pytest.raises(HubUnavailable):
            await link.escalate(req("during"))
        assert time.monotonic() - started < 0.05

        restarted = HubProcess(keys.hub_home, hub_proc.config, bind=hub_proc.endpoint)
        restarted.start()
        try:
            await wait_until(lambda: link.connected, timeout=10.0)
            assert (await link.escalate(req("after", "back again"))).text == "back again"
        finally:
            restarted.kill()
    finally:
        await link.close()


def test_sigterm_shuts_down_cleanly(hub_proc: HubProcess) -> None:
    assert hub_proc.terminate(timeout_s=10) == 0
    assert "stopped" in hub_proc.output()
