from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud_hub.telemetry.aggregates import aggregate, percentile
from cloud_hub.telemetry.metrics import HubTelemetryMetrics
from cloud_hub.telemetry.store import TelemetryStore
from shared.telemetry import TelemetryEvent
from shared.wire import TelemetryBatch


def _batch(events: list[TelemetryEvent], batch_id: str = "b") -> TelemetryBatch:
    return TelemetryBatch(batch_id, [e.to_attributes() for e in events])


@pytest.fixture
def store(tmp_path: Path) -> Iterator[TelemetryStore]:
    s = TelemetryStore(tmp_path / "hub.db", observer=HubTelemetryMetrics())
    yield s
    s.close()


def test_dedupes_per_edge_and_event_id(store: TelemetryStore) -> None:
    events = [TelemetryEvent(event_id=f"e{i}", route="edge_local") for i in range(3)]
    ack = store.ingest("edgeA", _batch(events, "b1"))
    assert (ack.batch_id, ack.accepted) == ("b1", 3)
    again = store.ingest("edgeA", _batch(events, "b2"))
    assert again.accepted == 3  # a re-sent batch is acknowledged but stored once
    assert store.count() == 3
    store.ingest("edgeB", _batch(events[:1]))
    assert store.count() == 4  # the same event id from another edge is another event
    metrics = store.observer
    assert isinstance(metrics, HubTelemetryMetrics)
    assert metrics.duplicates._value.get() == 3


def test_invalid_events_are_quarantined_and_acknowledged(store: TelemetryStore) -> None:
    good = TelemetryEvent(event_id="ok").to_attributes()
    bad = dict(good, **{"edgeroute.event.id": "bad", "gen_ai.usage.input_tokens": "lots"})
    ack = store.ingest("edgeA", TelemetryBatch("b", [good, bad]))
    assert ack.accepted == 2
    assert store.count() == 1
    [(edge, reason)] = store.rejects()
    assert edge == "edgeA" and "input_tokens" in reason


def test_empty_edge_id_is_refused(store: TelemetryStore) -> None:
    with pytest.raises(ValueError):
        store.ingest("", _batch([TelemetryEvent()]))


def test_spool_drop_reports_keep_the_maximum(store: TelemetryStore) -> None:
    store.ingest("edgeA", _batch([TelemetryEvent(kind="spool_drops", dropped_events=7)]))
    store.ingest("edgeA", _batch([TelemetryEvent(kind="spool_drops", dropped_events=5)]))
    assert store.drops() == {"edgeA": 7}


def test_aggregates_by_route_domain_window_and_tenant(store: TelemetryStore) -> None:
    t0 = 1_700_000_000.0
    events = [
        TelemetryEvent(
            timestamp=t0 + i, route="exact_cache", domain="code", tenant="t1", latency_s=0.01, cost_usd=0.0
        )
        for i in range(4)
    ]
    events += [
        TelemetryEvent(
            timestamp=t0 + 70 + i,
            route="hub_oss",
            domain="math",
            tenant="t2",
            latency_s=1.0 + i,
            cost_usd=0.002,
            escalation_reason="low_confidence",
            fallback=i == 0,
            regeneration=i < 2,
            response_id=f"r{i}",
        )
        for i in range(4)
    ]
    events.append(TelemetryEvent(kind="feedback", response_id="r0", rating=-1.0, timestamp=t0 + 100))
    events.append(TelemetryEvent(kind="feedback", response_id="r1", rating=1.0, timestamp=t0 + 100))
    store.ingest("e", _batch(events))
    by_route = {r.key["route"]: r for r in aggregate(store, by=("route",))}
    cache, hub = by_route["exact_cache"], by_route["hub_oss"]
    assert cache.requests == 4 and cache.cache_hit_rate == 1.0 and cache.escalation_rate == 0.0
    assert hub.fallback_rate == 0.25 and hub.regeneration_rate == 0.5 and hub.escalation_rate == 1.0
    assert hub.cost_usd == pytest.approx(0.008)
    assert hub.latency_p50_s == pytest.approx(2.5)
    assert hub.feedback_n == 2 and hub.feedback_mean == 0.0
    windows = aggregate(store, by=(), window_s=60)
    assert [(r.key["window"], r.requests) for r in windows] == [(t0 // 60 * 60, 4), (t0 // 60 * 60 + 60, 4)]
    tenants = {r.key["tenant"]: r.requests for r in aggregate(store, by=("tenant", "domain"))}
    assert tenants == {"t1": 4, "t2": 4}
    assert aggregate(store, by=("route",), since=t0 + 60)[0].key["route"] == "hub_oss"
    with pytest.raises(ValueError):
        aggregate(store, by=("color",))


def test_percentile() -> None:
    assert percentile([], 0.5) is None
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert percentile([1.0, 2.0], 0.95) == pytest.approx(1.95)
