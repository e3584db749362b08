"""Prometheus series for the edge: one scrape answers cost, latency, cache, fallback, escalation
and regeneration questions per route, plus the health of the telemetry pipeline itself.

These are the only series that count answers: each fact is taken from the one telemetry event
every answer produces (streamed or not, over HTTP or not), so no other family repeats it. The app's
HTTP series (``edgeroute_http_*``) count requests and statuses, which are not answers.

Each instance owns its ``CollectorRegistry`` (no process-global state), so tests and several
agents in one process never collide; the app serves ``render()`` on ``/metrics``.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from edge_agent.telemetry.spool import SpoolStats
from shared.telemetry import TelemetryEvent

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.99)

CONTENT_TYPE = CONTENT_TYPE_LATEST
_Labelled = Counter | Gauge | Histogram


class LabelMemo:
    """``metric.labels(*values)``, remembered: ``labels`` takes a lock and builds a key on every
    call, and each answer touches ten series. Holds no more children than the registry does."""

    def __init__(self) -> None:
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def __call__(self, metric: _Labelled, *values: str) -> Any:
        key = (id(metric), values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child


class EdgeMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.of = LabelMemo()
        r = self.registry
        route = ["route"]
        self.requests = Counter(
            "edgeroute_requests",
            "Answered requests",
            ["route", "model", "domain", "task", "streamed"],
            registry=r,
        )
        self.errors = Counter("edgeroute_request_errors", "Failed requests", ["route", "error"], registry=r)
        self.cache_hits = Counter("edgeroute_cache_hits", "Requests answered from a cache", route, registry=r)
        self.cache_lookups = Counter(
            "edgeroute_cache_lookups", "Requests that consulted the caches", registry=r
        )
        self.fallbacks = Counter(
            "edgeroute_fallbacks", "Requests served by a fallback path", route, registry=r
        )
        self.escalations = Counter(
            "edgeroute_escalations", "Requests escalated past the edge", ["route", "reason"], registry=r
        )
        self.regenerations = Counter(
            "edgeroute_regenerations",
            "Regenerated requests (explicit flag or near-duplicate re-ask)",
            ["route", "source"],
            registry=r,
        )
        self.cost = Counter("edgeroute_cost_usd", "Estimated cost in USD", route, registry=r)
        self.tokens = Counter("edgeroute_tokens", "Tokens processed", ["route", "direction"], registry=r)
        self.latency = Histogram(
            "edgeroute_request_duration_seconds",
            "End-to-end latency",
            route,
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "edgeroute_time_to_first_token_seconds",
            "Time to first token",
            route,
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.local_confidence = Histogram(
            "edgeroute_local_confidence",
            "Mean token probability of local drafts and answers",
            buckets=_CONFIDENCE_BUCKETS,
            registry=r,
        )
        self.feedback = Counter("edgeroute_feedback", "User feedback by sign", ["sentiment"], registry=r)
        self.spool_pending = Gauge("edgeroute_telemetry_spool_events", "Events awaiting delivery", registry=r)
        self.spool_bytes = Gauge("edgeroute_telemetry_spool_bytes", "Bytes awaiting delivery", registry=r)
        self.spool_dropped = Gauge(
            "edgeroute_telemetry_dropped_events", "Events dropped by the spool cap (cumulative)", registry=r
        )
        self.delivered = Counter(
            "edgeroute_telemetry_delivered_events", "Events acknowledged by the hub", registry=r
        )
        self.delivery_failures = Counter(
            "edgeroute_telemetry_delivery_failures", "Failed delivery attempts", ["reason"], registry=r
        )

    def observe(self, event: TelemetryEvent) -> None:
        if event.kind == "feedback":
            rating = event.rating or 0.0
            self.of(
                self.feedback, "positive" if rating > 0 else "negative" if rating < 0 else "neutral"
            ).inc()
        elif event.kind == "request":
            route = event.route or "none"
            self._count_request(route, event)
            self._add_usage(route, event)

    def _count_request(self, route: str, event: TelemetryEvent) -> None:
        """The request's outcome and what happened on its way (cache, fallback, escalation)."""
        if event.error_type:
            self.of(self.errors, route, event.error_type).inc()
        else:
            model = event.response_model or event.request_model
            streamed = "true" if event.streamed else "false"
            self.of(self.requests, route, model, event.domain, event.task, streamed).inc()
        self.cache_lookups.inc()
        if event.is_cache_hit:
            self.of(self.cache_hits, route).inc()
        if event.fallback:
            self.of(self.fallbacks, route).inc()
        if event.escalated:
            self.of(self.escalations, route, event.escalation_reason).inc()
        if event.regeneration:
            self.of(
                self.regenerations, route, "explicit" if event.regenerate_flag else "near_duplicate"
            ).inc()

    def _add_usage(self, route: str, event: TelemetryEvent) -> None:
        """Spend, tokens and timings (a timing the request did not measure is left out)."""
        self.of(self.cost, route).inc(max(event.cost_usd, 0.0))
        self.of(self.tokens, route, "input").inc(max(event.input_tokens, 0))
        self.of(self.tokens, route, "output").inc(max(event.output_tokens, 0))
        if event.latency_s is not None:
            self.of(self.latency, route).observe(event.latency_s)
        if event.ttft_s is not None:
            self.of(self.ttft, route).observe(event.ttft_s)
        if event.local_confidence is not None:
            self.local_confidence.observe(event.local_confidence)

    def observe_spool(self, stats: SpoolStats) -> None:
        self.spool_pending.set(stats.pending_events)
        self.spool_bytes.set(stats.pending_bytes)
        self.spool_dropped.set(stats.dropped_events)

    def render(self) -> bytes:
        return generate_latest(self.registry)
