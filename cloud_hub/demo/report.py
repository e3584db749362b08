"""Printing, Markdown and plots of the north-star summary (``summary.summarise``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def _pct(x: object) -> str:
    return f"{100 * float(x):.1f}%" if isinstance(x, int | float) else "n/a"


def _num(x: object, fmt: str = ".3f") -> str:
    return format(float(x), fmt) if isinstance(x, int | float) else "n/a"


def headline(s: dict[str, Any]) -> list[str]:
    q, c = s["quality"], s["cost"]["vs_frontier"]
    low, high = s["quality_ratio_ci95"]
    cheaper = c["times_cheaper"]
    return [
        f"{_pct(s['served_without_frontier'])} of {s['requests']} requests served without the frontier tier "
        f"(goal ≥85%)",
        f"cost {_num(s['cost_ratio_vs_frontier'])}× always-frontier = {_num(cheaper, '.1f')}× cheaper "
        f"(goal ≥6×), on the {_pct(c['coverage'])} of requests always-frontier could serve; "
        f"{_num(s['cost_ratio_vs_hub_oss'])}× always-hub-oss",
        f"quality {_num(s['quality_ratio_vs_frontier'])} of always-frontier, "
        f"95% CI [{_num(low)}, {_num(high)}] "
        f"(goal ≥0.98): accuracy {_pct(q['router_accuracy'])} vs {_pct(q['baseline_accuracy'])} on "
        f"{q['items']} graded held-out items ({q['requests']} requests)",
        f"baseline answers served from a cache: {s['baseline_cache_hits']} (must be 0)",
    ]


def _tier_table(s: dict[str, Any]) -> Table:
    t = Table(title="Tiers, each run alone on the same items (caches bypassed)")
    for col in ("tier", "model", "backend", "accuracy", "graded", "mean USD/request"):
        t.add_column(col)
    for row in s["tiers"]:
        backend = row["backend"] + (" (replayed recorded answers)" if row["replayed"] else " (live)")
        t.add_row(
            row["name"],
            row["model"],
            backend,
            _pct(row["accuracy"]),
            str(row["graded_items"]),
            _num(row["mean_cost_usd"], ".6f"),
        )
    return t


def _route_table(s: dict[str, Any]) -> Table:
    t = Table(title="Routed pass by route (cheapest first)")
    for col in ("route", "share", "p50 s", "p95 s", "mean USD"):
        t.add_column(col)
    for route, row in s["latency_by_route"].items():
        t.add_row(
            route,
            _pct(s["route_mix"][route]),
            _num(row["p50_s"], ".2f"),
            _num(row["p95_s"], ".2f"),
            _num(row["mean_cost_usd"], ".6f"),
        )
    return t


def _source_table(s: dict[str, Any]) -> Table:
    t = Table(title="By source: where quality or cost is lost")
    for col in ("source", "requests", "without frontier", "router acc", "frontier acc", "graded items"):
        t.add_column(col)
    for name, row in s["by_source"].items():
        t.add_row(
            name,
            str(row["requests"]),
            _pct(row["served_without_frontier"]),
            _pct(row["router_accuracy"]),
            _pct(row["frontier_accuracy"]),
            str(row["graded_items"]),
        )
    return t


def print_report(s: dict[str, Any], console: Console) -> None:
    console.print(_tier_table(s))
    console.print(_route_table(s))
    console.print(_source_table(s))
    cache = s["cache"]
    console.print(
        f"caches: exact {_pct(cache['exact_hit_rate'])}, "
        f"semantic {_pct(cache['semantic_hit_rate'])} of requests; "
        f"repeat hit rates {json.dumps({k: round(v, 3) for k, v in cache['repeat_hit_rate'].items()})}; "
        f"escalated {_pct(s['escalation_rate'])}, fell back {_pct(s['fallback_rate'])}, errors {s['errors']}"
    )
    for curve_name in ("target_curve", "repeat_sweep"):
        if s.get(curve_name):
            console.print(f"{curve_name}: {json.dumps(s[curve_name])}")
    console.print("[bold]North star[/bold]")
    for line in headline(s):
        console.print(f"  • {line}")


def markdown(s: dict[str, Any]) -> str:
    lines = ["# North-star report", "", *[f"- {x}" for x in headline(s)], "", "## Tiers", ""]
    lines += [
        "| tier | model | backend | replayed | accuracy | graded items | mean USD/request |",
        "|---" * 7 + "|",
    ]
    for r in s["tiers"]:
        lines.append(
            f"| {r['name']} | {r['model']} | {r['backend']} | {r['replayed']} | {_pct(r['accuracy'])} "
            f"| {r['graded_items']} | {_num(r['mean_cost_usd'], '.6f')} |"
        )
    lines += ["", "## Routes", "", "| route | share | p50 s | p95 s |", "|---|---|---|---|"]
    for route, row in s["latency_by_route"].items():
        lines.append(
            f"| {route} | {_pct(s['route_mix'][route])} | {_num(row['p50_s'], '.2f')} | "
            f"{_num(row['p95_s'], '.2f')} |"
        )
    lines += [
        "",
        "## By source",
        "",
        "| source | requests | without frontier | router acc | frontier acc |",
        "|---|---|---|---|---|",
    ]
    for name, row in s["by_source"].items():
        lines.append(
            f"| {name} | {row['requests']} | {_pct(row['served_without_frontier'])} | "
            f"{_pct(row['router_accuracy'])} | {_pct(row['frontier_accuracy'])} |"
        )
    for curve_name in ("target_curve", "repeat_sweep"):
        rows = s.get(curve_name) or []
        if rows:
            keys = list(rows[0])
            lines += ["", f"## {curve_name}", "", "| " + " | ".join(keys) + " |", "|---" * len(keys) + "|"]
            lines += [
                "| " + " | ".join(_num(r[k]) if isinstance(r[k], float) else str(r[k]) for k in keys) + " |"
                for r in rows
            ]
    lines += ["", "## Reproduce", "", f"`{s.get('meta', {}).get('command', 'cloud-hub demo')}`", ""]
    return "\n".join(lines)


def plot(s: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    mix = s["route_mix"]
    axes[0].bar(list(mix), [100 * v for v in mix.values()], color="tab:blue")
    axes[0].set_ylabel("% of requests")
    axes[0].set_title("Routed pass: where requests were served")
    axes[0].tick_params(axis="x", rotation=30)
    tiers = [t for t in s["tiers"] if t["accuracy"] is not None]
    axes[1].bar(
        [t["name"] + ("*" if t["replayed"] else "") for t in tiers],
        [100 * t["accuracy"] for t in tiers],
        color="tab:green",
    )
    q = s["quality"]
    axes[1].axhline(100 * q["router_accuracy"], color="black", linestyle="--", label="router")
    axes[1].set_ylabel("accuracy % on graded held-out items")
    axes[1].set_title("Per tier (* replayed recorded answers)")
    axes[1].legend()
    curve = s.get("target_curve") or []
    if curve:
        axes[2].plot([c["cost_ratio"] for c in curve], [c["quality_ratio"] for c in curve], "o-")
        for c in curve:
            axes[2].annotate(f"{c['target']:g}", (c["cost_ratio"], c["quality_ratio"]))
    axes[2].scatter(
        [s["cost_ratio_vs_frontier"] or 0],
        [s["quality_ratio_vs_frontier"] or 0],
        color="red",
        label="this run",
        zorder=3,
    )
    axes[2].set_xlabel("cost / always-frontier")
    axes[2].set_ylabel("quality / always-frontier")
    axes[2].set_title("Cost–quality as the quality target moves")
    axes[2].legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_all(s: dict[str, Any], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "northstar.json", out / "northstar.md", out / "northstar.png"]
    paths[0].write_text(json.dumps(s, indent=2, default=str) + "\n", encoding="utf-8")
    paths[1].write_text(markdown(s), encoding="utf-8")
    plot(s, paths[2])
    return paths
