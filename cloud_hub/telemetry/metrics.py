"""Prometheus series on the hub: fleet-wide request metrics as events arrive and ingest health
(``cloud_hub.evaluation.publish`` adds the latest evaluation's quality to the same registry).

Counters move only for events seen for the first time, so a re-sent batch never inflates them.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from shared.telemetry import TelemetryEvent

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class HubTelemetryMetrics:
    """Implements the store's ``IngestObserver``; one registry per instance."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        labels = ["route", "domain", "model"]
        self.requests = Counter(
            "edgeroute_hub_fleet_requests", "Requests reported by edges", labels, registry=r
        )
        self.cost = Counter("edgeroute_hub_fleet_cost_usd", "Cost reported by edges", ["route"], registry=r)
        self.cache_hits = Counter("edgeroute_hub_fleet_cache_hits", "Cache hits", ["route"], registry=r)
        self.fallbacks = Counter("edgeroute_hub_fleet_fallbacks", "Fallbacks", ["route"], registry=r)
        self.escalations = Counter(
            "edgeroute_hub_fleet_escalations", "Escalations", ["route", "reason"], registry=r
        )
        self.regenerations = Counter(
            "edgeroute_hub_fleet_regenerations", "Regenerations", ["route"], registry=r
        )
        self.latency = Histogram(
            "edgeroute_hub_fleet_request_duration_seconds", "Latency", ["route"], buckets=_BUCKETS, registry=r
        )
        self.feedback = Counter("edgeroute_hub_fleet_feedback", "User ratings", ["sentiment"], registry=r)
        self.ingested = Counter("edgeroute_hub_telemetry_events", "Events stored", ["kind"], registry=r)
        self.duplicates = Counter(
            "edgeroute_hub_telemetry_duplicates", "Re-sent events already stored", registry=r
        )
        self.rejected = Counter(
            "edgeroute_hub_telemetry_rejected", "Events quarantined as invalid", registry=r
        )
        self.edge_drops = Gauge(
            "edgeroute_hub_edge_spool_dropped_events",
            "Events an edge dropped at its spool cap",
            ["edge"],
            registry=r,
        )

    def observe_ingest(self, event: TelemetryEvent, duplicate: bool) -> None:
        if duplicate:
            self.duplicates.inc()
            return
        self.ingested.labels(event.kind).inc()
        if event.kind == "feedback":
            rating = event.rating or 0.0
            self.feedback.labels("positive" if rating > 0 else "negative" if rating < 0 else "neutral").inc()
            return
        if event.kind != "request":
            return
        route = event.route or "none"
        self.requests.labels(route, event.domain, event.response_model or event.request_model).inc()
        self.cost.labels(route).inc(max(event.cost_usd, 0.0))
        if event.is_cache_hit:
            self.cache_hits.labels(route).inc()
        if event.fallback:
            self.fallbacks.labels(route).inc()
        if event.escalated:
            self.escalations.labels(route, event.escalation_reason).inc()
        if event.regeneration:
            self.regenerations.labels(route).inc()
        if event.latency_s is not None:
            self.latency.labels(route).observe(event.latency_s)

    def observe_reject(self, reason: str) -> None:
        self.rejected.inc()

    def set_drops(self, drops: dict[str, int]) -> None:
        for edge, n in drops.items():
            self.edge_drops.labels(edge[:16]).set(n)

    def render(self) -> bytes:
        return generate_latest(self.registry)
