"""Aggregates over the hub store by time window, domain, route, model, tenant (any combination).

The seed metrics are rates over request events: cache hit, fallback, escalation, regeneration and
error rates, cost and latency per group, and the mean user rating of the group's answers. Latency
percentiles are computed from the group's values (exact, fine up to millions of rows per query).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from cloud_hub.telemetry.store import TelemetryStore

DIMENSIONS: Final[dict[str, str]] = {
    "route": "e.route",
    "domain": "e.domain",
    "model": "e.model",
    "tenant": "e.tenant",
    "task": "e.task",
    "edge": "e.edge_id",
    "canary": "e.canary",
    "policy": "e.policy_version",
}


@dataclass(frozen=True, slots=True)
class AggregateRow:
    key: dict[str, str | int | float]
    requests: int
    errors: int
    cost_usd: float
    cache_hits: int
    fallbacks: int
    escalations: int
    regenerations: int
    latency_p50_s: float | None
    latency_p95_s: float | None
    ttft_p50_s: float | None
    feedback_n: int
    feedback_mean: float | None
    extra: dict[str, float] = field(default_factory=dict)

    def rate(self, count: int) -> float:
        return count / self.requests if self.requests else 0.0

    @property
    def cache_hit_rate(self) -> float:
        return self.rate(self.cache_hits)

    @property
    def fallback_rate(self) -> float:
        return self.rate(self.fallbacks)

    @property
    def escalation_rate(self) -> float:
        return self.rate(self.escalations)

    @property
    def regeneration_rate(self) -> float:
        return self.rate(self.regenerations)

    @property
    def cost_per_request(self) -> float:
        return self.cost_usd / self.requests if self.requests else 0.0


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def aggregate(
    store: TelemetryStore,
    by: tuple[str, ...] = ("route",),
    window_s: float | None = None,
    since: float | None = None,
    until: float | None = None,
) -> list[AggregateRow]:
    """One row per group of request events; ``window_s`` adds a ``window`` key (bucket start)."""
    unknown = [d for d in by if d not in DIMENSIONS]
    if unknown:
        raise ValueError(f"unknown dimension(s) {unknown}; choose from {sorted(DIMENSIONS)}")
    if window_s is not None and window_s <= 0:
        raise ValueError("window_s must be positive")
    exprs = [DIMENSIONS[d] for d in by]
    names = list(by)
    if window_s is not None:
        exprs.append(f"CAST(e.ts / {float(window_s)!r} AS INTEGER) * {float(window_s)!r}")
        names.append("window")
    select_keys = ", ".join(exprs) if exprs else "'all'"
    group = f"GROUP BY {', '.join(str(i + 1) for i in range(len(exprs)))}" if exprs else ""
    sql = f"""
        SELECT {select_keys}, COUNT(*), SUM(e.error), SUM(e.cost_usd), SUM(e.cache_hit), SUM(e.fallback),
               SUM(e.escalated), SUM(e.regeneration), COUNT(f.rating), AVG(f.rating)
        FROM events e
        LEFT JOIN (SELECT response_id, AVG(rating) AS rating FROM events
                   WHERE kind = 'feedback' GROUP BY response_id) f
          ON f.response_id = e.response_id AND e.response_id != ''
        WHERE e.kind = 'request' AND e.ts >= ? AND e.ts < ?
        {group}
        ORDER BY {", ".join(str(i + 1) for i in range(max(len(exprs), 1)))}
    """
    lo = since if since is not None else float("-inf")
    hi = until if until is not None else float("inf")
    with store.transaction() as db:
        rows = db.execute(sql, (lo, hi)).fetchall()
        latencies: dict[tuple[object, ...], tuple[list[float], list[float]]] = {}
        lat_sql = f"""SELECT {select_keys}, e.latency_s, e.ttft_s FROM events e
                      WHERE e.kind = 'request' AND e.ts >= ? AND e.ts < ?"""
        nkeys = max(len(exprs), 1)
        for row in db.execute(lat_sql, (lo, hi)):
            lat, ttft = latencies.setdefault(tuple(row[:nkeys]), ([], []))
            if row[nkeys] is not None:
                lat.append(float(row[nkeys]))
            if row[nkeys + 1] is not None:
                ttft.append(float(row[nkeys + 1]))
    out: list[AggregateRow] = []
    nkeys = max(len(exprs), 1)
    for row in rows:
        keys = tuple(row[:nkeys])
        lat, ttft = latencies.get(keys, ([], []))
        n, errors, cost, hits, fallbacks, escalations, regens, fb_n, fb_mean = row[nkeys:]
        out.append(
            AggregateRow(
                key=dict(zip(names, keys, strict=False)) if names else {"all": "all"},
                requests=int(n),
                errors=int(errors or 0),
                cost_usd=float(cost or 0.0),
                cache_hits=int(hits or 0),
                fallbacks=int(fallbacks or 0),
                escalations=int(escalations or 0),
                regenerations=int(regens or 0),
                latency_p50_s=percentile(lat, 0.5),
                latency_p95_s=percentile(lat, 0.95),
                ttft_p50_s=percentile(ttft, 0.5),
                feedback_n=int(fb_n or 0),
                feedback_mean=float(fb_mean) if fb_mean is not None else None,
            )
        )
    return out
