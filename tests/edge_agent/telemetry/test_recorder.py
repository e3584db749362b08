from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge_agent.telemetry.metrics import EdgeMetrics
from edge_agent.telemetry.recorder import FeedbackError, TelemetryRecorder
from edge_agent.telemetry.regeneration import RegenerationDetector
from edge_agent.telemetry.spool import TelemetrySpool
from shared.paths import REPO_ROOT
from shared.telemetry import TelemetryEvent


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _recorder(tmp_path: Path, capture: bool = False, clock: _Clock | None = None) -> TelemetryRecorder:
    detector = RegenerationDetector(window_s=300, clock=clock or _Clock())
    return TelemetryRecorder(
        TelemetrySpool(tmp_path / "s.db"), EdgeMetrics(), detector, capture_content=capture
    )


def _spooled(rec: TelemetryRecorder) -> list[TelemetryEvent]:
    lease = rec.spool.lease(max_events=1000)
    assert lease is not None
    return [TelemetryEvent.from_attributes(e) for e in lease.events]


def test_content_is_dropped_unless_captured(tmp_path: Path) -> None:
    rec = _recorder(tmp_path)
    rec.record(TelemetryEvent(route="edge_local", completion="the answer"), prompt="the question")
    rec.record(
        TelemetryEvent(route="edge_local", completion="42", reference="#### 42", reference_kind="gsm8k")
    )
    plain, probe = _spooled(rec)
    assert plain.prompt is None and plain.completion is None
    assert probe.completion == "42" and probe.reference == "#### 42"  # probes keep what the check needs
    rec.close()
    captured = _recorder(tmp_path / "c", capture=True)
    captured.record(TelemetryEvent(route="edge_local", completion="the answer"), prompt="the question")
    [event] = _spooled(captured)
    assert (event.prompt, event.completion) == ("the question", "the answer")
    captured.close()


def test_near_duplicate_reask_within_the_window_is_a_regeneration(tmp_path: Path) -> None:
    clock = _Clock()
    rec = _recorder(tmp_path, clock=clock)
    first = rec.record(
        TelemetryEvent(user="u1", response_id="r1"), prompt="How many legs does a spider have?"
    )
    again = rec.record(TelemetryEvent(user="u1", response_id="r2"), prompt="how many legs does a spider have")
    other_user = rec.record(
        TelemetryEvent(user="u2", response_id="r3"), prompt="How many legs does a spider have?"
    )
    different = rec.record(TelemetryEvent(user="u1", response_id="r4"), prompt="What do spiders eat?")
    clock.now = 1000.0
    late = rec.record(TelemetryEvent(user="u1", response_id="r5"), prompt="How many legs does a spider have?")
    explicit = rec.record(
        TelemetryEvent(user="u3", response_id="r6", regenerate_flag=True), prompt="Tell a joke"
    )
    assert not first.regeneration
    assert again.regeneration and again.regenerates == "r1"
    assert not other_user.regeneration and not different.regeneration and not late.regeneration
    assert explicit.regeneration and explicit.regenerates == ""
    text = rec.metrics.render().decode()
    assert 'edgeroute_regenerations_total{route="none",source="near_duplicate"} 1.0' in text
    assert 'edgeroute_regenerations_total{route="none",source="explicit"} 1.0' in text
    rec.close()


def test_detector_memory_is_bounded() -> None:
    detector = RegenerationDetector(max_users=3, per_user=2)
    for i in range(10):
        detector.check(f"user{i}", f"question {i}", f"r{i}")
    assert not detector.check("user0", "question 0", "again").regeneration  # evicted long ago
    assert detector.check("user9", "question 9", "again").regenerates == "r9"


def test_feedback_is_validated_counted_and_spooled(tmp_path: Path) -> None:
    rec = _recorder(tmp_path)
    rec.feedback("req-1", -1.0, tenant="t")
    rec.feedback("req-2", 0.5)
    for bad in (("", 1.0), ("req", 2.0), ("x" * 201, 0.0)):
        with pytest.raises(FeedbackError):
            rec.feedback(*bad)
    events = _spooled(rec)
    assert [(e.kind, e.response_id, e.rating) for e in events] == [
        ("feedback", "req-1", -1.0),
        ("feedback", "req-2", 0.5),
    ]
    text = rec.metrics.render().decode()
    assert 'edgeroute_feedback_total{sentiment="negative"} 1.0' in text
    assert 'edgeroute_feedback_total{sentiment="positive"} 1.0' in text
    rec.close()


def test_metrics_by_route(tmp_path: Path) -> None:
    rec = _recorder(tmp_path)
    rec.record(TelemetryEvent(route="semantic_cache", latency_s=0.01, cache_similarity=0.97))
    hub = TelemetryEvent(
        route="hub_oss", escalation_reason="low_confidence", cost_usd=0.002, latency_s=1.5, ttft_s=0.3,
        input_tokens=10, output_tokens=20,
    )  # fmt: skip
    rec.record(hub)
    rec.record(TelemetryEvent(route="edge_local", fallback=True, latency_s=0.4))
    rec.record(TelemetryEvent(route="hub_oss", error_type="timeout"))
    text = rec.metrics.render().decode()
    assert 'edgeroute_cache_hits_total{route="semantic_cache"} 1.0' in text
    assert "edgeroute_cache_lookups_total 4.0" in text
    assert 'edgeroute_escalations_total{reason="low_confidence",route="hub_oss"} 1.0' in text
    assert 'edgeroute_fallbacks_total{route="edge_local"} 1.0' in text
    assert 'edgeroute_cost_usd_total{route="hub_oss"} 0.002' in text
    assert 'edgeroute_request_duration_seconds_count{route="hub_oss"} 1.0' in text
    assert 'edgeroute_time_to_first_token_seconds_count{route="hub_oss"} 1.0' in text
    assert 'edgeroute_request_errors_total{error="timeout",route="hub_oss"} 1.0' in text
    assert 'edgeroute_tokens_total{direction="output",route="hub_oss"} 20.0' in text
    rec.refresh_spool_metrics()
    assert "edgeroute_telemetry_spool_events 4.0" in rec.metrics.render().decode()
    rec.close()


def test_streamed_answers_and_local_confidence(tmp_path: Path) -> None:
    rec = _recorder(tmp_path)
    rec.record(TelemetryEvent(route="edge_local", streamed=True, local_confidence=0.93))
    rec.record(TelemetryEvent(route="exact_cache"))
    text = rec.metrics.render().decode()
    assert 'route="edge_local",streamed="true",task="other"} 1.0' in text
    assert 'route="exact_cache",streamed="false",task="other"} 1.0' in text
    # a cache hit carries no confidence: only the local answer is observed
    assert "edgeroute_local_confidence_count 1.0" in text
    assert 'edgeroute_local_confidence_bucket{le="0.9"} 0.0' in text
    assert 'edgeroute_local_confidence_bucket{le="0.95"} 1.0' in text
    rec.close()


async def test_on_a_loop_events_are_written_later_in_one_batch_and_drain_waits(tmp_path: Path) -> None:
    rec = _recorder(tmp_path)
    commits: list[str] = []
    rec.spool._conn.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
    for i in range(200):
        rec.record(TelemetryEvent(event_id=f"e{i:04d}", route="exact_cache"))
    assert rec.spool.stats().pending_events == 0  # nothing written on the loop itself
    await rec.drain()
    assert commits == ["COMMIT"]  # the 200 recorded in one loop turn share one transaction
    assert [e.event_id for e in _spooled(rec)] == [f"e{i:04d}" for i in range(200)]
    rec.close()


async def test_events_spread_over_the_linger_share_one_commit_and_a_full_batch_goes_at_once(
    tmp_path: Path,
) -> None:
    spool = TelemetrySpool(tmp_path / "s.db")
    rec = TelemetryRecorder(spool, EdgeMetrics(), linger_s=0.5, max_batch=64)
    commits: list[str] = []
    spool._conn.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
    for i in range(10):  # a slow trickle, each in its own loop turn
        rec.record(TelemetryEvent(event_id=f"t{i}", route="exact_cache"))
        await asyncio.sleep(0.01)
    assert commits == [] and spool.stats().pending_events == 0  # still lingering
    for i in range(64):  # fills the batch: written without waiting out the linger
        rec.record(TelemetryEvent(event_id=f"b{i}", route="exact_cache"))
    await asyncio.sleep(0.3)
    assert commits == ["COMMIT"] and spool.stats().pending_events == 74
    rec.record(TelemetryEvent(event_id="last", route="exact_cache"))
    began = time.monotonic()
    await rec.drain()  # cuts the next linger short
    assert time.monotonic() - began < 0.4 and spool.stats().pending_events == 75
    rec.close()


async def test_close_writes_what_is_still_queued(tmp_path: Path) -> None:
    rec = _recorder(tmp_path)
    for i in range(5):
        rec.record(TelemetryEvent(event_id=f"e{i}", route="exact_cache"))
    rec.feedback("e0", 1.0)
    rec.close()  # no drain first
    with pytest.raises(RuntimeError):
        rec.record(TelemetryEvent(route="exact_cache"))  # the spool is closed: the caller hears it
    spool = TelemetrySpool(tmp_path / "s.db")
    assert spool.stats().pending_events == 6
    spool.close()


KILLED = """
import asyncio, sys
from pathlib import Path
from edge_agent.telemetry.recorder import TelemetryRecorder
from edge_agent.telemetry.spool import TelemetrySpool
from shared.telemetry import TelemetryEvent

async def main() -> None:
    rec = TelemetryRecorder(TelemetrySpool(Path(sys.argv[1])))
    n = 0
    while True:
        for _ in range(50):
            rec.record(TelemetryEvent(event_id=f"e{n:06d}", route="exact_cache"))
            n += 1
        await rec.drain()
        print(n, flush=True)  # every event below n is stored
        for _ in range(7):  # recorded, not yet drained, when the kill comes
            rec.record(TelemetryEvent(event_id=f"e{n:06d}", route="exact_cache"))
            n += 1
            await asyncio.sleep(0)

asyncio.run(main())
"""


def test_kill_9_loses_no_event_that_drain_reported_stored(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    with subprocess.Popen(  # leaving the block closes the stdout pipe
        [sys.executable, "-c", KILLED, str(db)], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None
        stored = [int(proc.stdout.readline()) for _ in range(40)]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    spool = TelemetrySpool(db)
    ids: set[str] = set()
    while (lease := spool.lease(max_events=1000)) is not None:
        ids |= {str(e["edgeroute.event.id"]) for e in lease.events}
        spool.ack(lease.batch_id)
    assert {f"e{i:06d}" for i in range(stored[-1])} <= ids
    assert spool.stats().appended_events == len(ids)  # stored once each, counted once each
    spool.close()
