"""Real traffic for the dashboard tests: edges record events with the edge's own recorder and spool
and deliver them over a CURVE ``HubLink`` to a running hub, whose telemetry service stores them.

Three edges: ``a`` sends a mixed workload over five hours (every route, reference-checkable
answers for the evaluation, a re-asked semantic hit, ratings) and ends with events still in its
spool; ``b`` has a spool too small for its traffic, so it drops events and reports the drops;
``idle`` is enrolled and never connects.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_agent.hub_link.link import HubLink
from edge_agent.telemetry.delivery import TelemetryDeliverer
from edge_agent.telemetry.recorder import TelemetryRecorder
from edge_agent.telemetry.spool import TelemetrySpool
from shared.keys import enroll_public_key, fingerprint, init_keys, load_public
from shared.telemetry import TelemetryEvent

EDGES = ("a", "b", "idle")
BATCH = 10
LATE_EVENTS = 12  # sent after edge a's spool drained: one batch goes, LATE_EVENTS - BATCH stay behind


@dataclass
class FleetKeys:
    hub_public: bytes
    secrets: dict[str, Path]
    ids: dict[str, str]


def enrol_edges(hub_home: Path, root: Path) -> FleetKeys:
    """Edge key pairs under ``root``, each enrolled with the hub at ``hub_home``."""
    hub_public = load_public(hub_home / "keys" / "curve.key")
    secrets: dict[str, Path] = {}
    ids: dict[str, str] = {}
    for name in EDGES:
        public, secret = init_keys(root / name / "keys")
        enroll_public_key(public, hub_home / "enrolled")
        secrets[name], ids[name] = secret, fingerprint(load_public(public))
    return FleetKeys(hub_public, secrets, ids)


@dataclass
class Edge:
    name: str
    link: HubLink
    spool: TelemetrySpool
    recorder: TelemetryRecorder
    deliverer: TelemetryDeliverer
    events: list[TelemetryEvent] = field(default_factory=list)

    async def close(self) -> None:
        await self.link.close()
        self.recorder.close()


async def wait_until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.02)


def _prompt(i: int) -> str:
    return f"question {i} {uuid.uuid4().hex}"


def workload_a(now: float) -> list[tuple[dict[str, Any], str]]:
    """(event fields, prompt) for edge a, spread over the last five hours."""
    start = now - 5 * 3600
    out: list[tuple[dict[str, Any], str]] = []

    def add(i: int, prompt: str | None = None, **fields: Any) -> None:
        base = {"response_id": f"a-{i}", "tenant": "tenant-1", "timestamp": start + i * 580.0}
        out.append(({**base, **fields}, prompt or _prompt(i)))

    for i in range(6):
        add(i, route="exact_cache", latency_s=0.002 + i * 1e-4)
    similarities = (0.91, 0.95, 0.97, 0.93)
    for k, i in enumerate(range(6, 10)):
        tokens: dict[str, Any] = {"input_tokens": 12, "output_tokens": 24} if k % 2 else {}
        add(i, route="semantic_cache", domain=("general", "general", "coding", "coding")[k],
            cache_similarity=similarities[k], latency_s=0.02 + k * 0.001, **tokens)  # fmt: skip
    # the user re-asks the question the first semantic hit answered, soon enough for the recorder
    # (it remembers a user's last few prompts) to mark it as a regeneration of that hit
    add(30, prompt=out[6][1], route="edge_local", input_tokens=10, output_tokens=20, latency_s=0.3)
    for i in range(10, 20):
        right = i not in (12, 15, 17)
        add(i, route="edge_local", domain="math", task="math", reference_kind="gsm8k", reference="42",
            completion="so the answer is 42" if right else "the answer is 41", input_tokens=30,
            output_tokens=60, cost_usd=2e-6, latency_s=0.4 + 0.01 * i, ttft_s=0.05, local_confidence=0.8,
            fallback=i >= 18, policy_version="v1" if i < 14 else "v0", canary=i < 14)  # fmt: skip
    for i in range(20, 26):
        add(i, route="hub_oss", reference_kind="mcq", reference="B", completion="The answer is B",
            escalation_reason="low_confidence", input_tokens=40, output_tokens=80, cost_usd=2e-5,
            latency_s=1.1 + 0.05 * i, ttft_s=0.3, policy_version="v0")  # fmt: skip
    for i in range(26, 29):
        add(i, route="frontier", domain="coding", escalation_reason="hard", input_tokens=50,
            output_tokens=100, cost_usd=0.0035, latency_s=2.5 + 0.1 * i, policy_version="v0")  # fmt: skip
    add(29, route="hub_oss", error_type="timeout", latency_s=5.0, escalation_reason="low_confidence")
    return out


def workload_b(now: float) -> list[tuple[dict[str, Any], str]]:
    start = now - 2 * 3600
    return [
        (
            {
                "response_id": f"b-{i}",
                "tenant": "tenant-2",
                "timestamp": start + i * 60.0,
                "route": "hub_oss",
                "escalation_reason": "low_confidence",
                "input_tokens": 20 + i,
                "output_tokens": 40,
                "cost_usd": 1e-5,
                "latency_s": 0.9 + 0.01 * i,
                "policy_version": "v0",
                "domain": "legal",
            },
            _prompt(100 + i),
        )
        for i in range(25)
    ]


async def _connect(name: str, endpoint: str, keys: FleetKeys, root: Path, spool_bytes: int) -> Edge:
    link = HubLink(endpoint, keys.hub_public, keys.secrets[name], heartbeat_s=0.2)
    await link.start()
    await wait_until(lambda: link.connected)
    spool = TelemetrySpool(root / name / "spool.db", max_bytes=spool_bytes)
    recorder = TelemetryRecorder(spool)
    deliverer = TelemetryDeliverer(spool, link, max_events=BATCH, timeout_s=5.0)
    return Edge(name, link, spool, recorder, deliverer)


def _record(edge: Edge, work: list[tuple[dict[str, Any], str]]) -> None:
    for fields, prompt in work:
        edge.events.append(edge.recorder.record(TelemetryEvent(**fields), prompt=prompt))


async def _drain(edge: Edge) -> None:
    await edge.recorder.drain()  # on a running loop the recorder writes its events in batches
    while await edge.deliverer.deliver_once():
        pass


async def send_traffic(endpoint: str, keys: FleetKeys, root: Path, now: float) -> dict[str, Edge]:
    """Runs edges a and b against the hub at ``endpoint``; edge a's link stays open (close it)."""
    a = await _connect("a", endpoint, keys, root, 64 * 1024 * 1024)
    _record(a, workload_a(now))
    a.recorder.feedback("a-7", -1.0, tenant="tenant-1")
    a.recorder.feedback("a-10", 1.0, tenant="tenant-1")
    await _drain(a)
    late = {"tenant": "tenant-1", "route": "edge_local", "input_tokens": 8, "output_tokens": 16,
            "latency_s": 0.25, "cost_usd": 1e-6}  # fmt: skip
    _record(
        a,
        [
            ({**late, "response_id": f"a-late-{i}", "timestamp": now - 60.0 + i}, _prompt(200 + i))
            for i in range(LATE_EVENTS)
        ],
    )
    await a.recorder.drain()
    await a.deliverer.deliver_once()  # one batch only: the rest is the backlog the hub hears about
    b = await _connect("b", endpoint, keys, root, 2500)
    _record(b, workload_b(now))
    await _drain(b)
    await b.link.close()  # gone from the link; its spool stays readable for the tests
    return {"a": a, "b": b}
