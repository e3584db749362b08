"""The north-star figures, computed from one run's routed pass and its same-run baselines.

Every comparison is paired: the routed request and the baseline answer of the same item. Baselines
ran once per unique item with every cache bypassed, so a baseline never saw the router's answers;
the always-X cost of a request is what tier X charged for that item (an always-X deployment without
caches pays it for every repeat too). Items a baseline tier could not serve (a replayed tier has no
recording of a Quora question) are left out of that tier's ratios, and the coverage says how many.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from cloud_hub.demo.scoring import paired_ratio_ci, percentile
from cloud_hub.demo.traffic import ROUTED, Record
from shared.taxonomy import HUB_ROUTES, ROUTE_ORDER, Route, Tier

_HUB = {r.value for r in HUB_ROUTES}


@dataclass(frozen=True)
class TierInfo:
    tier: Tier
    model: str
    backend: str

    @property
    def replayed(self) -> bool:
        return self.backend == "replay"


def _by_item(records: Sequence[Record], tier: Tier) -> dict[str, Record]:
    return {r.request.item.item_id: r for r in records if r.covered(tier)}


def _ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


def _fell_back(r: Record) -> bool:
    return r.fallback or any(s.get("decision") == "fallback" for s in r.trace)


def quality_vs(routed: Sequence[Record], base: dict[str, Record]) -> dict[str, object]:
    """Paired quality ratio over graded items both runs scored, weighted by requests per item."""
    scores: dict[str, list[float]] = defaultdict(list)
    for r in routed:
        b = base.get(r.request.item.item_id)
        if r.score is not None and b is not None and b.score is not None and r.request.item.graded:
            scores[r.request.item.item_id].append(r.score)
    ids = sorted(scores)
    mine = [sum(scores[i]) / len(scores[i]) for i in ids]
    theirs = [float(base[i].score or 0.0) for i in ids]
    weights = [float(len(scores[i])) for i in ids]
    ratio, low, high = paired_ratio_ci(mine, theirs, weights)
    total = sum(weights) or 1.0
    return {
        "ratio": ratio,
        "ci95": [low, high],
        "items": len(ids),
        "requests": int(sum(weights)),
        "router_accuracy": sum(m * w for m, w in zip(mine, weights, strict=True)) / total,
        "baseline_accuracy": sum(t * w for t, w in zip(theirs, weights, strict=True)) / total,
    }


def cost_vs(routed: Sequence[Record], base: dict[str, Record], total: int) -> dict[str, object]:
    pairs = [
        (r.cost_usd, base[r.request.item.item_id].cost_usd) for r in routed if r.request.item.item_id in base
    ]
    mine, theirs = sum(p[0] for p in pairs), sum(p[1] for p in pairs)
    ratio = _ratio(mine, theirs)
    return {
        "ratio": ratio,
        "times_cheaper": None if not ratio else 1.0 / ratio,
        "router_usd": mine,
        "baseline_usd": theirs,
        "requests": len(pairs),
        "coverage": len(pairs) / total if total else 0.0,
    }


def per_source(routed: Sequence[Record], front: dict[str, Record]) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for source in sorted({r.request.item.source for r in routed}):
        rows = [r for r in routed if r.request.item.source == source]
        q = quality_vs(rows, front) if any(r.request.item.graded for r in rows) else None
        out[source] = {
            "requests": len(rows),
            "served_without_frontier": sum(r.route != Route.FRONTIER.value for r in rows) / len(rows),
            "router_accuracy": None if q is None else q["router_accuracy"],
            "frontier_accuracy": None if q is None else q["baseline_accuracy"],
            "graded_items": 0 if q is None else q["items"],
        }
    return out


def tier_accuracy(passes: dict[str, list[Record]], tiers: Sequence[TierInfo]) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for t in tiers:
        recs = [r for r in passes.get(t.tier.value, []) if r.covered(t.tier)]
        graded = [r.score for r in recs if r.request.item.graded and r.score is not None]
        out.append(
            {
                "name": t.tier.value,
                "route": t.tier.route.value,
                "model": t.model,
                "backend": t.backend,
                "replayed": t.replayed,
                "accuracy": sum(graded) / len(graded) if graded else None,
                "graded_items": len(graded),
                "covered_items": len(recs),
                "mean_cost_usd": sum(r.cost_usd for r in recs) / len(recs) if recs else None,
            }
        )
    return out


def summarise(passes: dict[str, list[Record]], tiers: Sequence[TierInfo]) -> dict[str, object]:
    routed_all = passes[ROUTED]
    routed = [r for r in routed_all if r.ok]
    n = len(routed_all)
    ok = max(1, len(routed))
    routes = Counter(r.route for r in routed)
    front = _by_item(passes.get(Tier.FRONTIER.value, []), Tier.FRONTIER)
    oss = _by_item(passes.get(Tier.OSS.value, []), Tier.OSS)
    quality = quality_vs(routed, front)
    vs_front, vs_oss = cost_vs(routed, front, n), cost_vs(routed, oss, n)
    baseline_hits = sum(r.cache_hit for name, recs in passes.items() if name != ROUTED for r in recs)
    repeats = Counter(r.request.repeat for r in routed if r.request.repeat)
    repeat_hits = Counter(r.request.repeat for r in routed if r.request.repeat and r.cache_hit)
    latency = {
        route.value: {
            "requests": routes[route.value],
            "p50_s": percentile([r.latency_s for r in routed if r.route == route.value], 50),
            "p95_s": percentile([r.latency_s for r in routed if r.route == route.value], 95),
            "mean_cost_usd": sum(r.cost_usd for r in routed if r.route == route.value) / routes[route.value],
        }
        for route in ROUTE_ORDER
        if routes[route.value]
    }
    return {
        "requests": n,
        "errors": n - len(routed),
        "served_without_frontier": sum(r.route != Route.FRONTIER.value for r in routed) / ok,
        "cost_ratio_vs_frontier": vs_front["ratio"],
        "cost_ratio_vs_hub_oss": vs_oss["ratio"],
        "quality_ratio_vs_frontier": quality["ratio"],
        "quality_ratio_ci95": quality["ci95"],
        "baseline_cache_hits": baseline_hits,
        "tiers": tier_accuracy(passes, tiers),
        "cost": {
            "vs_frontier": vs_front,
            "vs_hub_oss": vs_oss,
            "router_total_usd": sum(r.cost_usd for r in routed),
        },
        "quality": quality,
        "route_mix": {k: v / ok for k, v in sorted(routes.items(), key=lambda kv: Route(kv[0]).rank)},
        "latency_by_route": latency,
        "cache": {
            "exact_hit_rate": routes[Route.EXACT_CACHE.value] / ok,
            "semantic_hit_rate": routes[Route.SEMANTIC_CACHE.value] / ok,
            "repeat_hit_rate": {k: repeat_hits[k] / v for k, v in repeats.items()},
        },
        "escalation_rate": sum(r.route in _HUB for r in routed) / ok,
        "fallback_rate": sum(_fell_back(r) for r in routed) / ok,
        "by_source": per_source(routed, front),
        "baseline_uncovered": {
            name: sum(not r.covered(Tier(name)) for r in recs)
            for name, recs in passes.items()
            if name != ROUTED
        },
    }
