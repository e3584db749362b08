"""The spool's defences: damaged rows set aside, a poison row isolated, a full disk counted."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from edge_agent.telemetry.spool import TelemetrySpool
from shared.telemetry import TelemetryEvent


def _ids(lease: object) -> list[str]:
    events = getattr(lease, "events", [])
    return [str(e["edgeroute.event.id"]) for e in events]


def _fill(path: Path, n: int) -> None:
    spool = TelemetrySpool(path)
    for i in range(n):
        spool.append(TelemetryEvent(event_id=f"e{i}", route="edge_local"))
    spool.close()


def test_a_row_that_fails_its_checksum_is_quarantined_not_sent(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    _fill(path, 3)
    with sqlite3.connect(path) as conn:
        (payload,) = conn.execute("SELECT payload FROM events WHERE event_id = 'e1'").fetchone()
        conn.execute(
            "UPDATE events SET payload = ? WHERE event_id = 'e1'", (payload[:-1] + bytes([payload[-1] ^ 1]),)
        )
    spool = TelemetrySpool(path)
    lease = spool.lease()
    assert lease is not None and _ids(lease) == ["e0", "e2"]
    assert spool.stats().corrupt_events == 1
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT event_id, reason FROM quarantine").fetchall() == [("e1", "checksum")]
    spool.close()


def test_a_batch_the_sender_fails_on_is_retried_row_by_row_then_quarantined(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    _fill(path, 3)
    spool = TelemetrySpool(path, max_tries=2)
    first = spool.lease()
    assert first is not None and len(first.events) == 3
    spool.fail(first.batch_id)  # the whole batch failed: each row travels alone from now on
    alone = spool.lease()
    assert alone is not None and _ids(alone) == ["e0"]
    spool.ack(alone.batch_id)
    poison = spool.lease()
    assert poison is not None and _ids(poison) == ["e1"]
    spool.fail(poison.batch_id)  # e1's second failure: its tries are used up
    nxt = spool.lease()
    assert nxt is not None and _ids(nxt) == ["e2"]
    assert spool.stats().quarantined_events == 1
    spool.close()


def test_a_full_disk_drops_the_event_counts_it_and_writes_again_later(tmp_path: Path) -> None:
    spool = TelemetrySpool(tmp_path / "spool.db")
    conn = spool._conn
    (pages,) = conn.execute("PRAGMA page_count").fetchone()
    conn.execute(f"PRAGMA max_page_count = {pages}")
    big = "x" * 20_000
    assert spool.append(TelemetryEvent(event_id="lost", route="edge_local", escalation_reason=big)) is False
    assert spool.stats().dropped_events == 1
    conn.execute("PRAGMA max_page_count = 1000000")
    assert spool.append(TelemetryEvent(event_id="kept", route="edge_local"))
    spool.close()
    again = TelemetrySpool(tmp_path / "spool.db")
    assert again.stats().dropped_events == 1  # the drop was written down with the next append
    again.close()


def test_a_batch_the_full_disk_refuses_keeps_each_event_that_still_fits(tmp_path: Path) -> None:
    spool = TelemetrySpool(tmp_path / "spool.db")
    assert spool.append(TelemetryEvent(event_id="warm", route="edge_local"))
    conn = spool._conn
    (pages,) = conn.execute("PRAGMA page_count").fetchone()
    conn.execute(f"PRAGMA max_page_count = {pages + 1}")
    big = TelemetryEvent(event_id="big", route="edge_local", escalation_reason="x" * 20_000)
    small = [TelemetryEvent(event_id=f"s{i}", route="edge_local") for i in range(2)]
    # the batch as a whole does not fit; tried one by one, only the big event is lost
    assert spool.append_many([small[0], big, small[1]]) == [True, False, True]
    stats = spool.stats()
    assert (stats.pending_events, stats.dropped_events) == (3, 1)
    spool.close()
    again = TelemetrySpool(tmp_path / "spool.db")
    assert again.stats().dropped_events == 1  # written down with the event after it
    assert sorted(_ids(again.lease())) == ["s0", "s1", "warm"]
    again.close()
