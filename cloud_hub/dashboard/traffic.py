"""Traffic figures of the dashboard: the north star over time, route mix, cost, latency, caches.

Rates, costs and latencies come from ``cloud_hub.telemetry.aggregates.aggregate`` (the same rows
``cloud-hub eval stats`` prints). Two figures need more than it returns:

- cost against always-frontier: what the hub's frontier tier would have charged for the tokens of
  each answered request, priced with its configured ``CostModel``. Token prices are linear, so the
  sum over a bucket is the price of the bucket's token sums. Requests whose event carries no token
  counts cannot be priced and are left out of both sides of the ratio (``coverage`` says how many
  were priced); leaving out cheap cache hits only makes the ratio look worse, never better.
- the semantic-hit audit: what reaches the hub about answers served from the semantic cache. The
  edge's reviewed audit labels stay on the edge; the hub sees each hit's similarity, whether the
  user re-asked the question (a regeneration pointing at the hit) and the user's rating.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from cloud_hub.telemetry.aggregates import AggregateRow, aggregate
from cloud_hub.telemetry.store import TelemetryStore
from shared.config import CostModel, HubModelEntry
from shared.taxonomy import ROUTE_ORDER, Route, Tier
from shared.telemetry import TelemetryEvent
from shared.wire import Scalar


@dataclass(frozen=True, slots=True)
class FrontierPrice:
    model: str
    cost: CostModel


def frontier_price(models: Sequence[HubModelEntry]) -> FrontierPrice | None:
    """The price always-frontier is measured against: the cheapest model of the frontier tier, the
    one the hub's tier chooser tries first there."""
    priced = [m for m in models if m.tier is Tier.FRONTIER and m.cost.estimate(1000, 1000) > 0]
    if not priced:
        return None
    best = min(priced, key=lambda m: (m.cost.estimate(1000, 1000), m.name))
    return FrontierPrice(best.name, best.cost)


def _ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


def _answered(row: AggregateRow) -> int:
    return row.requests - row.errors


def _bucket_expr(bucket_s: float) -> str:
    # the same expression ``aggregate`` groups its ``window`` key by, so the buckets line up
    return f"CAST(ts / {float(bucket_s)!r} AS INTEGER) * {float(bucket_s)!r}"


def _priced(
    store: TelemetryStore, since: float, until: float, bucket_s: float
) -> dict[float, tuple[int, int, int, float]]:
    """Per bucket, over answered requests with token counts: (requests, prompt tokens, completion
    tokens, what the router charged for them)."""
    sql = f"""
        SELECT {_bucket_expr(bucket_s)}, COUNT(*), SUM(input_tokens), SUM(output_tokens), SUM(cost_usd)
        FROM events
        WHERE kind = 'request' AND error = 0 AND ts >= ? AND ts < ?
          AND (input_tokens > 0 OR output_tokens > 0)
        GROUP BY 1
    """
    with store.transaction() as db:
        rows = db.execute(sql, (since, until)).fetchall()
    return {float(b): (int(n), int(i or 0), int(o or 0), float(c or 0.0)) for b, n, i, o, c in rows}


def _cost_vs(router_usd: float, frontier_usd: float | None, priced: int, answered: int) -> dict[str, Any]:
    ratio = _ratio(router_usd, frontier_usd) if frontier_usd is not None else None
    return {
        "router_usd": router_usd,
        "frontier_usd": frontier_usd,
        "ratio": ratio,
        "times_cheaper": 1.0 / ratio if ratio else None,
        "priced_requests": priced,
        "coverage": _ratio(priced, answered),
    }


def north_star(
    store: TelemetryStore, since: float, until: float, bucket_s: float, price: FrontierPrice | None
) -> dict[str, Any]:
    """Share of answered requests served without the frontier tier, and cost against
    always-frontier, per time bucket and over the whole window."""
    rows = aggregate(store, by=("route",), window_s=bucket_s, since=since, until=until)
    priced = _priced(store, since, until, bucket_s)
    buckets: dict[float, dict[str, int]] = defaultdict(lambda: {"requests": 0, "answered": 0, "frontier": 0})
    for row in rows:
        b = buckets[float(row.key["window"])]
        b["requests"] += row.requests
        b["answered"] += _answered(row)
        if row.key["route"] == Route.FRONTIER.value:
            b["frontier"] += _answered(row)
    series: list[dict[str, Any]] = []
    totals = {"answered": 0, "frontier": 0, "priced": 0, "router_usd": 0.0, "frontier_usd": 0.0}
    for start in sorted(buckets):
        b = buckets[start]
        n, prompt, completion, router_usd = priced.get(start, (0, 0, 0, 0.0))
        frontier_usd = price.cost.estimate(prompt, completion) if price is not None else None
        cost = _cost_vs(router_usd, frontier_usd, n, b["answered"])
        series.append(
            {
                "start": start,
                "requests": b["requests"],
                "answered": b["answered"],
                "served_without_frontier": _ratio(b["answered"] - b["frontier"], b["answered"]),
                "cost_ratio": cost["ratio"],
                "router_usd": cost["router_usd"],
                "frontier_usd": frontier_usd,
                "priced_requests": n,
            }
        )
        totals["answered"] += b["answered"]
        totals["frontier"] += b["frontier"]
        totals["priced"] += n
        totals["router_usd"] += cost["router_usd"]
        totals["frontier_usd"] += frontier_usd or 0.0
    answered = int(totals["answered"])
    return {
        "frontier_price": None
        if price is None
        else {
            "model": price.model,
            "usd_per_1k_prompt": price.cost.usd_per_1k_prompt,
            "usd_per_1k_completion": price.cost.usd_per_1k_completion,
        },
        "served_without_frontier": _ratio(answered - int(totals["frontier"]), answered),
        "cost_vs_frontier": _cost_vs(
            float(totals["router_usd"]),
            float(totals["frontier_usd"]) if price is not None else None,
            int(totals["priced"]),
            answered,
        ),
        "series": series,
    }


def rates(row: AggregateRow) -> dict[str, Any]:
    return {
        "requests": row.requests,
        "errors": row.errors,
        "cost_usd": row.cost_usd,
        "cost_per_request": row.cost_per_request,
        "cache_hit_rate": row.cache_hit_rate,
        "fallback_rate": row.fallback_rate,
        "escalation_rate": row.escalation_rate,
        "regeneration_rate": row.regeneration_rate,
        "error_rate": row.rate(row.errors),
        "latency_p50_s": row.latency_p50_s,
        "latency_p95_s": row.latency_p95_s,
        "ttft_p50_s": row.ttft_p50_s,
        "feedback_n": row.feedback_n,
        "feedback_mean": row.feedback_mean,
    }


def totals(store: TelemetryStore, since: float, until: float) -> dict[str, Any]:
    (row,) = aggregate(store, by=(), since=since, until=until)
    return rates(row)


def routes(store: TelemetryStore, since: float, until: float) -> list[dict[str, Any]]:
    """One row per route, cheapest route first; ``share`` is of all requests in the window."""
    rows = aggregate(store, by=("route",), since=since, until=until)
    total = sum(r.requests for r in rows)
    rank = {r.value: i for i, r in enumerate(ROUTE_ORDER)}
    rows.sort(key=lambda r: (rank.get(str(r.key["route"]), len(rank)), str(r.key["route"])))
    return [
        {"route": str(r.key["route"]) or "(none)", "share": _ratio(r.requests, total), **rates(r)}
        for r in rows
    ]


def cache(
    store: TelemetryStore, since: float, until: float, route_rows: list[dict[str, Any]]
) -> dict[str, Any]:
    total = sum(int(r["requests"]) for r in route_rows)
    by_route = {r["route"]: int(r["requests"]) for r in route_rows}
    hits = sum(n for route, n in by_route.items() if route in {r.value for r in ROUTE_ORDER if r.is_cache})
    return {
        "hit_rate": _ratio(hits, total),
        "exact_hit_rate": _ratio(by_route.get(Route.EXACT_CACHE.value, 0), total),
        "semantic_hit_rate": _ratio(by_route.get(Route.SEMANTIC_CACHE.value, 0), total),
        "semantic_audit": semantic_audit(store, since, until),
    }


def semantic_audit(store: TelemetryStore, since: float, until: float) -> list[dict[str, Any]]:
    """Per domain: semantic hits, their similarity, and how many users re-asked or rated them down."""
    decoder = msgspec.msgpack.Decoder(dict[str, Scalar])
    with store.transaction() as db:
        hits = db.execute(
            "SELECT attrs FROM events WHERE kind = 'request' AND route = ? AND ts >= ? AND ts < ?",
            (Route.SEMANTIC_CACHE.value, since, until),
        ).fetchall()
        # a re-ask can come after the window's end; any later regeneration still counts against the hit
        regens = db.execute(
            "SELECT attrs FROM events WHERE kind = 'request' AND regeneration = 1 AND ts >= ?", (since,)
        ).fetchall()
    reasked = {TelemetryEvent.from_attributes(decoder.decode(a)).regenerates for (a,) in regens} - {""}
    ratings = store.feedback_by_response()
    groups: dict[str, list[TelemetryEvent]] = defaultdict(list)
    for (blob,) in hits:
        event = TelemetryEvent.from_attributes(decoder.decode(blob))
        groups[event.domain].append(event)
    out: list[dict[str, Any]] = []
    for domain, events in sorted(groups.items()):
        sims = [e.cache_similarity for e in events if e.cache_similarity is not None]
        ids = [e.response_id for e in events if e.response_id]
        out.append(
            {
                "domain": domain,
                "hits": len(events),
                "similarity_mean": sum(sims) / len(sims) if sims else None,
                "similarity_min": min(sims) if sims else None,
                "reasked": sum(i in reasked for i in ids),
                "rated": sum(i in ratings for i in ids),
                "rated_down": sum(ratings.get(i, 0.0) < 0 for i in ids),
            }
        )
    return out
