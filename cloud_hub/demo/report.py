"""The north-star report: how much traffic avoided the expensive tier, what it saved, what it cost in
quality — with the figures computed from what the router actually did in this run."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from cloud_hub.demo.replay import Record
from shared.taxonomy import HUB_ROUTES, ROUTE_ORDER, Route


@dataclass(frozen=True)
class FrontierPrice:
    """Reference price of the expensive tier the router is trying to avoid (USD per 1M tokens)."""

    usd_per_m_prompt: float = 2.50
    usd_per_m_completion: float = 10.00

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.usd_per_m_prompt + completion_tokens * self.usd_per_m_completion) / 1e6


@dataclass(frozen=True)
class FrontierModel:
    """A model the hub serves in its frontier tier, and the backend it runs on."""

    name: str
    backend: str

    @property
    def stand_in(self) -> bool:
        # only an openai_http entry can reach a real frontier API; anything else is local
        return self.backend != "openai_http"


def summarise(
    records: list[Record], price: FrontierPrice, frontier: Sequence[FrontierModel] = ()
) -> dict[str, object]:
    served = [r for r in records if not r.error]
    routes = Counter(r.route for r in served)
    n = max(1, len(served))
    no_frontier = sum(1 for r in served if r.route != Route.FRONTIER.value)
    no_hub = sum(1 for r in served if r.route not in {t.value for t in HUB_ROUTES})
    cost = sum(r.cost_usd for r in served)
    baseline_cost = sum(price.cost(r.prompt_tokens, r.completion_tokens) for r in served)
    checked = [r for r in served if r.correct is not None and r.baseline_correct is not None]
    acc = sum(bool(r.correct) for r in checked) / len(checked) if checked else None
    base_acc = sum(bool(r.baseline_correct) for r in checked) / len(checked) if checked else None
    by_route: dict[str, dict[str, float]] = defaultdict(dict)
    for route, count in routes.items():
        rows = [r for r in served if r.route == route]
        by_route[route] = {
            "requests": count,
            "share": count / n,
            "cost_usd": sum(r.cost_usd for r in rows),
            "mean_latency_s": sum(r.latency_s for r in rows) / len(rows),
        }
    return {
        "requests": len(records),
        "errors": len(records) - len(served),
        "share_without_frontier": no_frontier / n,
        "share_without_hub_gpu": no_hub / n,
        "cost_usd": cost,
        "always_frontier_cost_usd": baseline_cost,
        "cost_cut": 1 - cost / baseline_cost if baseline_cost else None,
        "checked_requests": len(checked),
        "router_accuracy": acc,
        "always_hub_accuracy": base_acc,
        "quality_ratio": (acc / base_acc) if acc is not None and base_acc else None,
        "by_route": dict(by_route),
        "frontier_price_usd_per_m": [price.usd_per_m_prompt, price.usd_per_m_completion],
        "frontier_tier": {
            "configured": [{"model": f.name, "backend": f.backend, "stand_in": f.stand_in} for f in frontier],
            "served_by": sorted({r.model for r in served if r.route == Route.FRONTIER.value}),
        },
    }


def _pct(x: object) -> str:
    return f"{100 * float(x):.1f}%" if isinstance(x, int | float) else "n/a"


def print_report(summary: dict[str, object], console: Console) -> None:
    table = Table(title="Requests by route (cheapest first)")
    for col in ("route", "requests", "share", "cost USD", "mean latency s"):
        table.add_column(col, justify="right" if col != "route" else "left")
    by_route = summary["by_route"]
    assert isinstance(by_route, dict)
    order = [r.value for r in ROUTE_ORDER] + sorted(set(by_route) - {r.value for r in ROUTE_ORDER})
    for route in order:
        if route in by_route:
            row = by_route[route]
            table.add_row(
                route,
                str(int(row["requests"])),
                _pct(row["share"]),
                f"{row['cost_usd']:.6f}",
                f"{row['mean_latency_s']:.2f}",
            )
    console.print(table)
    console.print(
        f"[bold]North star[/bold]: {_pct(summary['share_without_frontier'])} of requests served without the "
        f"frontier tier ({_pct(summary['share_without_hub_gpu'])} without any hub GPU); cost "
        f"${float(summary['cost_usd']):.6f} vs ${float(summary['always_frontier_cost_usd']):.6f} "  # type: ignore[arg-type]
        f"always-frontier (cut {_pct(summary['cost_cut'])}); accuracy on {summary['checked_requests']} "
        f"checkable requests {_pct(summary['router_accuracy'])} vs {_pct(summary['always_hub_accuracy'])} "
        f"when every one goes to the hub (ratio {summary['quality_ratio']})."
    )
    console.print(_frontier_line(summary))


def _frontier_line(summary: dict[str, object]) -> str:
    tier = summary.get("frontier_tier")
    configured = tier.get("configured", []) if isinstance(tier, dict) else []
    served = tier.get("served_by", []) if isinstance(tier, dict) else []
    if not configured:
        return "Frontier tier: none configured on this hub."
    stand_ins = [f"{f['model']} ({f['backend']} backend)" for f in configured if f["stand_in"]]
    real = [f"{f['model']} ({f['backend']})" for f in configured if not f["stand_in"]]
    parts = []
    if stand_ins:
        parts.append(
            f"{', '.join(stand_ins)} stood in for a frontier API: a local model priced at frontier "
            "rates, not a frontier model, so the quality figures say nothing about a real one"
        )
    if real:
        parts.append(f"frontier API: {', '.join(real)}")
    answered = ", ".join(str(m) for m in served) if served else "no model (no request went there)"
    parts.append(f"frontier answers in this run came from {answered}")
    return "[bold]Frontier tier[/bold]: " + "; ".join(parts) + "."


def plot_routes(summary: dict[str, object], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_route = summary["by_route"]
    assert isinstance(by_route, dict)
    routes = [r.value for r in ROUTE_ORDER if r.value in by_route]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.bar(routes, [by_route[r]["share"] * 100 for r in routes], color="tab:blue")
    ax1.set_ylabel("% of requests")
    ax1.set_title("Where requests were served")
    ax1.tick_params(axis="x", rotation=30)
    ax2.bar(["router", "always frontier"], [summary["cost_usd"], summary["always_frontier_cost_usd"]])
    ax2.set_ylabel("USD for the workload")
    ax2.set_title("Cost")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_json(summary: dict[str, object], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2))
