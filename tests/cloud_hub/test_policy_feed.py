"""The canary loop closed: the canary controller's ``policy.json`` on the hub reaches connected edges
(real in-process hub, real HubLink over CURVE), the edge decides with the arm it was assigned, and its
telemetry says which arm decided."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from cloud_hub.evaluation.canary import CanaryController
from cloud_hub.evaluation.results import ResultRow
from cloud_hub.policy_feed import PolicyFeed
from cloud_hub.server import Hub
from edge_agent.backends.base import Confidence
from edge_agent.hub_link import HubLink
from edge_agent.policies import ThresholdPolicy
from edge_agent.request import Answer, Draft, InferenceRequest, Outcome
from edge_agent.telemetry.recorder import TelemetryRecorder
from edge_agent.telemetry.sink import TelemetrySink
from edge_agent.telemetry.spool import TelemetrySpool
from edge_agent.tenancy import RequestContext
from shared.taxonomy import Route
from shared.telemetry import TelemetryEvent
from shared.wire import ChatMessage, PolicyUpdate, SamplingParams, TraceStep, Usage
from tests.cloud_hub.helpers import Keys, build_registry, make_keys

HEARTBEAT_S = 0.2


@dataclass
class Loop:
    hub: Hub
    link: HubLink
    controller: CanaryController
    policy_file: Path


async def _wait(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "condition not met in time"
        await asyncio.sleep(0.02)


@pytest.fixture
async def loop(tmp_path: Path) -> AsyncIterator[Loop]:
    keys: Keys = make_keys(tmp_path)
    policy_file = keys.hub_home / "policy.json"
    controller = CanaryController(policy_file, initial_threshold=0.7)
    controller._save()  # the controller writes its file on the first change; start from v0 on disk
    hub = Hub(
        bind="tcp://127.0.0.1:0",
        secret_key_file=keys.hub_secret_file,
        enrolled_dir=keys.enrolled_dir,
        registry=build_registry(),
        heartbeat_s=HEARTBEAT_S,
        enrol_poll_s=0.1,
        policy_file=policy_file,
        policy_poll_s=0.05,
    )
    await hub.start()
    link = HubLink(hub.endpoint, keys.hub_public, keys.edge_secret_file, heartbeat_s=HEARTBEAT_S)
    await link.start()
    await _wait(lambda: link.connected)
    yield Loop(hub, link, controller, policy_file)
    await link.close()
    await hub.close()


def _rows(version: str, canary: bool, passed: int, n: int) -> list[ResultRow]:
    """Scored local answers of one policy arm: ``passed`` of ``n`` pass."""
    row = ResultRow(
        run_id="run", edge_id="edge", event_id="", domain="general", route="edge_local", model="m",
        weight=1.0, scorer="reference", passed=True, score=1.0, failure=None, detail="",
        canary=canary, policy_version=version, local_confidence=0.8,
    )  # fmt: skip
    return [dataclasses.replace(row, event_id=f"{version}-{i}", passed=i < passed) for i in range(n)]


def _req(rid: str) -> InferenceRequest:
    return InferenceRequest(
        ctx=RequestContext(request_id=rid),
        model="auto",
        messages=(ChatMessage("user", "hi"),),
        params=SamplingParams(max_tokens=8),
    )


async def test_policy_arrives_with_ready(loop: Loop) -> None:
    await _wait(lambda: loop.link.policy is not None)
    assert loop.link.policy == PolicyUpdate(version="v0", threshold=0.7)


async def test_promote_and_rollback_reach_the_connected_edge(loop: Loop) -> None:
    await _wait(lambda: loop.link.policy is not None)
    loop.controller.start(0.55, share=0.3)
    await _wait(lambda: loop.link.policy is not None and loop.link.policy.canary_version == "v1")
    assert loop.link.policy == PolicyUpdate("v0", 0.7, "v1", 0.55, 0.3)

    decision, _ = loop.controller.decide(_rows("v1", True, 400, 400) + _rows("v0", False, 390, 400))
    assert decision == "promote"
    await _wait(lambda: loop.link.policy is not None and loop.link.policy.version == "v1")
    assert loop.link.policy == PolicyUpdate("v1", 0.55)

    loop.controller.start(0.3, share=0.2)
    await _wait(lambda: loop.link.policy is not None and loop.link.policy.canary_version == "v2")
    decision, _ = loop.controller.decide(_rows("v2", True, 5, 40) + _rows("v1", False, 40, 40))
    assert decision == "rollback"
    await _wait(lambda: loop.link.policy is not None and loop.link.policy.canary_version is None)
    assert loop.link.policy == PolicyUpdate("v1", 0.55)  # the promoted threshold stays in force


async def test_edge_decides_with_its_arm_and_telemetry_records_it(loop: Loop, tmp_path: Path) -> None:
    loop.controller.start(0.2, share=0.5)
    await _wait(lambda: loop.link.policy is not None and loop.link.policy.canary_version == "v1")
    policy = ThresholdPolicy(0.9, source=loop.link)
    draft = Draft("x", Confidence([math.log(0.5)] * 4), finished=False)  # mean probability 0.5
    decisions = {rid: policy.decide(_req(rid), draft) for rid in (f"req-{i}" for i in range(200))}
    canary = [d for d in decisions.values() if d.detail["canary"] is True]
    control = [d for d in decisions.values() if d.detail["canary"] is False]
    assert 60 < len(canary) < 140  # about half, by request hash
    assert all(d.detail["policy_version"] == "v1" and not d.escalate for d in canary)  # 0.5 >= 0.2
    assert all(d.detail["policy_version"] == "v0" and d.escalate for d in control)  # 0.5 < 0.7
    # the assignment is the controller's own
    for rid, d in decisions.items():
        assert loop.controller.assign(rid).canary is d.detail["canary"]

    spool = TelemetrySpool(tmp_path / "spool.db")
    sink = TelemetrySink(TelemetryRecorder(spool))
    for rid, decided in [
        next((r, d) for r, d in decisions.items() if d.detail["canary"] is c) for c in (True, False)
    ]:
        step = TraceStep(
            "policy", "escalate" if decided.escalate else "answer", decided.reason, 0.0, decided.detail
        )
        answer = Answer("x", "stop", Usage(1, 1), Route.EDGE_LOCAL, "m", (step,))
        sink(Outcome(_req(rid), answer, 0.1, 0.05))
    await sink.drain()  # on a running loop the recorder writes its events in batches
    lease = spool.lease()
    assert lease is not None
    events = [TelemetryEvent.from_attributes(e) for e in lease.events]
    assert [(e.policy_version, e.canary) for e in events] == [("v1", True), ("v0", False)]
    spool.close()


async def test_feed_ignores_a_bad_file_and_keeps_the_last_good_policy(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    feed = PolicyFeed(path)
    assert not feed.refresh() and feed.current is None  # no file: no policy
    path.write_text(json.dumps({"version": "v3", "threshold": 0.6}))
    assert feed.refresh() and feed.current == PolicyUpdate("v3", 0.6)
    assert not feed.refresh()  # unchanged
    path.write_text(json.dumps({"version": "v4", "threshold": 7}))
    assert not feed.refresh() and feed.current == PolicyUpdate("v3", 0.6)
    path.write_text("{not json")
    assert not feed.refresh() and feed.current == PolicyUpdate("v3", 0.6)
