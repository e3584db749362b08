from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from edge_agent.telemetry.spool import TelemetrySpool
from shared.paths import REPO_ROOT
from shared.telemetry import TelemetryEvent


def _ev(i: int, pad: int = 0) -> TelemetryEvent:
    return TelemetryEvent(event_id=f"e{i:05d}", route="edge_local", completion="x" * pad or None)


def test_lease_ack_release_cycle(tmp_path: Path) -> None:
    spool = TelemetrySpool(tmp_path / "s.db")
    for i in range(5):
        assert spool.append(_ev(i))
    first = spool.lease(max_events=3)
    assert first is not None
    assert [e["edgeroute.event.id"] for e in first.events] == ["e00000", "e00001", "e00002"]
    second = spool.lease(max_events=10)
    assert second is not None and len(second.events) == 2  # leased rows are not handed out twice
    assert spool.lease() is None
    spool.release(second.batch_id)
    assert spool.ack(first.batch_id) == 3
    stats = spool.stats()
    assert (stats.pending_events, stats.delivered_events, stats.in_flight_events) == (2, 3, 0)
    again = spool.lease()
    assert again is not None and [e["edgeroute.event.id"] for e in again.events] == ["e00003", "e00004"]
    spool.close()
    spool.close()  # idempotent


def test_duplicate_event_ids_are_stored_once(tmp_path: Path) -> None:
    spool = TelemetrySpool(tmp_path / "s.db")
    spool.append(_ev(1))
    spool.append(_ev(1))
    assert spool.stats().pending_events == 1
    spool.close()


def test_cap_drops_oldest_and_counts_every_drop(tmp_path: Path) -> None:
    spool = TelemetrySpool(tmp_path / "s.db", max_bytes=4000)
    for i in range(40):
        spool.append(_ev(i, pad=200))
    stats = spool.stats()
    assert stats.pending_bytes <= 4000
    assert stats.pending_events + stats.dropped_events == 40
    assert stats.dropped_events > 0 and stats.dropped_bytes > 0
    lease = spool.lease(max_events=1000)
    assert lease is not None
    ids = [e["edgeroute.event.id"] for e in lease.events]
    assert ids[-1] == "e00039"  # the newest survive
    spool.close()


def test_in_flight_rows_are_never_evicted(tmp_path: Path) -> None:
    spool = TelemetrySpool(tmp_path / "s.db", max_bytes=3000)
    for i in range(8):
        spool.append(_ev(i, pad=200))
    lease = spool.lease(max_events=1000)
    assert lease is not None
    assert not spool.append(_ev(99, pad=200))  # nothing evictable: the new event is the drop
    assert spool.stats().dropped_events >= 1
    assert spool.ack(lease.batch_id) == len(lease.events)
    assert spool.append(_ev(100, pad=200))
    spool.close()


def test_oversized_event_is_counted_not_stored(tmp_path: Path) -> None:
    spool = TelemetrySpool(tmp_path / "s.db", max_bytes=500)
    assert not spool.append(_ev(1, pad=2000))
    assert spool.stats().dropped_events == 1
    assert spool.stats().pending_events == 0
    spool.close()


def test_counters_and_rows_survive_reopen_and_leases_reset(tmp_path: Path) -> None:
    spool = TelemetrySpool(tmp_path / "s.db", max_bytes=2000)
    for i in range(20):
        spool.append(_ev(i, pad=200))
    assert spool.lease() is not None
    before = spool.stats()
    spool.close()
    reopened = TelemetrySpool(tmp_path / "s.db", max_bytes=2000)
    after = reopened.stats()
    assert after.in_flight_events == 0
    assert (after.pending_events, after.dropped_events) == (before.pending_events, before.dropped_events)
    reopened.close()


def test_kill_9_mid_batch_loses_nothing_unacknowledged(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from edge_agent.telemetry.spool import TelemetrySpool
        from shared.telemetry import TelemetryEvent
        spool = TelemetrySpool(Path({str(db)!r}))
        for i in range(300):
            spool.append(TelemetryEvent(event_id=f"e{{i:05d}}"))
        acked = spool.lease(max_events=100)
        spool.ack(acked.batch_id)
        spool.lease(max_events=100)  # in flight when the process dies
        print("ready", flush=True)
        while True:
            spool.append(TelemetryEvent())
            time.sleep(0.001)
        """
    )
    with subprocess.Popen(  # leaving the block closes the stdout pipe (else a ResourceWarning)
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    ) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    spool = TelemetrySpool(db)
    stats = spool.stats()
    remaining: set[str] = set()
    while (lease := spool.lease(max_events=1000)) is not None:
        remaining |= {str(e["edgeroute.event.id"]) for e in lease.events}
        spool.ack(lease.batch_id)
    expected = {f"e{i:05d}" for i in range(100, 300)}
    assert expected <= remaining  # the unacknowledged batch and the unleased rows all survive
    assert not {f"e{i:05d}" for i in range(100)} & remaining  # the acknowledged batch is gone
    assert stats.appended_events == stats.pending_events + stats.delivered_events
    spool.close()


def test_append_many_is_one_transaction_with_append_s_answer_for_each_event(tmp_path: Path) -> None:
    spool = TelemetrySpool(tmp_path / "s.db", max_bytes=10_000)
    commits: list[str] = []
    spool._conn.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
    batch = [_ev(0), _ev(1), _ev(0), _ev(2, pad=20_000), _ev(3)]
    # a repeated id is already stored (True, stored once); the one over the cap is dropped
    assert spool.append_many(batch) == [True, True, True, False, True]
    assert commits == ["COMMIT"]
    assert spool.append_many([]) == []
    stats = spool.stats()
    assert (stats.pending_events, stats.appended_events, stats.dropped_events) == (3, 3, 1)
    lease = spool.lease()
    assert lease is not None
    assert [e["edgeroute.event.id"] for e in lease.events] == ["e00000", "e00001", "e00003"]
    spool.close()


def test_a_fitting_batch_that_repeats_a_stored_id_keeps_the_first_and_counts_once(
    tmp_path: Path,
) -> None:
    spool = TelemetrySpool(tmp_path / "s.db")
    assert spool.append_many([_ev(0), _ev(1)]) == [True, True]
    one = spool.stats().pending_bytes
    # fits under the cap, so it is tried as one statement; the repeat sends it row by row
    assert spool.append_many([_ev(2), _ev(1, pad=50), _ev(3)]) == [True, True, True]
    stats = spool.stats()
    assert (stats.pending_events, stats.appended_events) == (4, 4)
    assert stats.pending_bytes == 2 * one
    (stored,) = spool._conn.execute("SELECT SUM(size) FROM events").fetchone()
    assert stored == stats.pending_bytes  # the running total matches the rows
    lease = spool.lease()
    assert lease is not None and all("gen_ai.output.messages" not in e for e in lease.events)
    spool.close()
