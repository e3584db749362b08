"""T1, T3, T4, T5 and T8 at CI size: what crashes, full disks and damaged rows leave behind."""

from __future__ import annotations

from pathlib import Path

from edge_agent.reliability.durability import journal_violations, t1_crash, t4_journal
from edge_agent.reliability.spool_faults import t3_disk_full, t5_poison, t8_capacity
from shared.reliability import Size


def test_t1_kill_9_loses_no_acknowledged_row_or_event(tmp_path: Path) -> None:
    r = t1_crash(Size.CI, tmp_path)
    assert r.passed, r.failures
    f = r.figures
    assert f["kills"] == f["rounds"] == 4
    assert f["rows_lost"] == 0 and f["events_lost"] == 0 and f["integrity_failures"] == 0
    assert f["sem_rows"] == f["vec_rows"]
    assert isinstance(f["rows_acknowledged"], int) and f["rows_acknowledged"] > 100


def test_t3_a_full_disk_costs_cache_writes_and_counted_events_never_answers(tmp_path: Path) -> None:
    r = t3_disk_full(Size.CI, tmp_path)
    assert r.passed, r.failures
    f = r.figures
    assert f["errors"] == 0 and f["events_unaccounted"] == 0
    assert isinstance(f["events_dropped_counted"], int) and f["events_dropped_counted"] > 0
    assert f["served_after_space_back"] == 20


def test_t4_no_hot_journal_is_deleted_and_the_gate_sees_planted_code(tmp_path: Path) -> None:
    r = t4_journal(Size.CI, tmp_path)
    assert r.passed, r.failures
    assert r.figures["violations"] == 0 and r.figures["wal_files_kept"] == 2
    assert journal_violations("import shutil\nshutil.move(p + '-shm', q)\n")


def test_t5_damaged_and_poison_records_are_set_aside_and_the_rest_delivered(tmp_path: Path) -> None:
    r = t5_poison(Size.CI, tmp_path)
    assert r.passed, r.failures
    f = r.figures
    assert f["corrupt_counted"] == 6 and f["poison_quarantined"] == 1
    assert f["lost"] == 0 and f["damaged_delivered"] == 0


def test_t8_the_spool_keeps_its_cap_and_counts_what_it_drops(tmp_path: Path) -> None:
    r = t8_capacity(Size.CI, tmp_path)
    assert r.passed, r.failures
    assert r.figures["unaccounted"] == 0
