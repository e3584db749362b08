"""Summaries of a routing replay: the summary dict (JSON), a rich table and PNG plots."""

from __future__ import annotations

import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from cloud_hub.bench.agreement import AgreementReport
from cloud_hub.bench.routing_eval import TARGETS, RouterResult, aiq, apgr, cost_needed, share_needed
from shared.routing.datasets import OutcomeTable

# RouteLLM's published best routers (matrix factorisation, with gold-label augmentation) at 95% of
# GPT-4 quality: share of GPT-4 calls. Reference lines only; their test rows are not ours.
ROUTELLM_PUBLISHED_SHARE_AT_95 = {"gsm8k": 0.65, "mmlu": 0.55, "mt_bench": 0.14}


def summarise(
    dataset: str, results: dict[str, RouterResult], test: OutcomeTable, strong: str, weak: str, cheapest: str
) -> dict[str, Any]:
    qs, qw = test.mean_score(strong), test.mean_score(weak)
    cs, c_lo = test.mean_cost(strong), test.mean_cost(cheapest)
    two = len(test.models) == 2
    routers: dict[str, Any] = {}
    for name, r in results.items():
        routers[name] = {
            "apgr": apgr(r.curve, qw, qs, test.mean_cost(weak), cs, two) if len(r.curve) > 1 else None,
            "aiq": aiq(r.curve, c_lo, cs) if len(r.curve) > 1 else None,
            "share_needed": {str(t): share_needed(r.curve, t * qs) for t in TARGETS},
            "cost_needed": {str(t): cost_needed(r.curve, t * qs, cs) for t in TARGETS},
            "points": [
                {
                    "target": t,
                    "quality_ratio": p.quality / qs,
                    "strong_call_share": p.strong_share,
                    "cost_ratio": p.cost / cs,
                }
                for t, p in sorted(r.at_target.items())
            ],
            "curve": [[p.cost / cs, p.quality / qs, p.strong_share] for p in r.curve],
        }
    main_name = "edgeroute_cascade" if "edgeroute_cascade" in routers else "edgeroute"
    main = routers[main_name]
    return {
        "dataset": dataset,
        "router": main_name,
        "strong_model": strong,
        "weak_model": weak,
        "rows_evaluated": len(test),
        "strong_quality": qs,
        "weak_quality": qw,
        "apgr": main["apgr"],
        "aiq": main["aiq"],
        "points": main["points"],
        "routers": routers,
        "routellm_published_share_at_95": ROUTELLM_PUBLISHED_SHARE_AT_95.get(dataset),
    }


def final_line(summary: dict[str, Any]) -> dict[str, Any]:
    keys = ("dataset", "router", "strong_model", "apgr", "aiq", "points")
    out = {k: summary[k] for k in keys}
    if "agreement" in summary:
        out["agreement"] = {
            name: {t: {k: p[k] for k in ("cost_ratio", "quality_ratio")} for t, p in points.items()}
            for name, points in summary["agreement"]["signals"].items()
        }
    return out


def print_table(console: Console, summary: dict[str, Any]) -> None:
    table = Table(
        title=f"{summary['dataset']}: {summary['rows_evaluated']} evaluated rows, "
        f"strong={summary['strong_model']}"
    )
    table.add_column("router")
    for t in TARGETS:
        table.add_column(f"@{t:.0%} q / strong / cost", justify="right")
    table.add_column("strong needed @95%", justify="right")
    table.add_column("cost needed @95% / @100%", justify="right")
    table.add_column("APGR", justify="right")
    table.add_column("AIQ", justify="right")
    for name, r in summary["routers"].items():
        cells = [
            f"{p['quality_ratio']:.3f} / {p['strong_call_share']:.1%} / {p['cost_ratio']:.3f}"
            for p in r["points"]
        ]
        need = r["share_needed"]["0.95"]
        table.add_row(
            name,
            *cells,
            "—" if need is None else f"{need:.1%}",
            " / ".join(
                "—" if r["cost_needed"][k] is None else f"{r['cost_needed'][k]:.3f}" for k in ("0.95", "1.0")
            ),
            "—" if r["apgr"] is None else f"{r['apgr']:.3f}",
            "—" if r["aiq"] is None else f"{r['aiq']:.3f}",
        )
    ref = summary.get("routellm_published_share_at_95")
    if ref is not None:
        table.caption = f"RouteLLM published: {ref:.0%} strong calls at 95% of GPT-4 quality"
    console.print(table)


def plot(summary: dict[str, Any], out: Path) -> None:
    """Cost–quality curve of every router, and the strong-call share curve, in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 5))
    for name, r in summary["routers"].items():
        xs = [c[0] for c in r["curve"]]
        ys = [c[1] for c in r["curve"]]
        share = [c[2] for c in r["curve"]]
        style = "o" if len(xs) == 1 else "-"
        ax1.plot(xs, ys, style, label=name)
        ax2.plot(share, ys, style, label=name)
    for ax in (ax1, ax2):
        ax.axhline(0.95, color="grey", linestyle=":", linewidth=1)
        ax.set_ylabel("quality / strong model's")
        ax.grid(alpha=0.3)
    ref = summary.get("routellm_published_share_at_95")
    if ref is not None:
        ax2.axvline(ref, color="red", linestyle="--", linewidth=1, label="RouteLLM @95% (published)")
    ax1.set_xlabel("cost / always-strong cost")
    ax2.set_xlabel(f"share of calls to {summary['strong_model']}")
    ax2.legend(fontsize=8)
    fig.suptitle(f"{summary['dataset']}: cost–quality (evaluated rows only)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


SIGNAL_LABELS = {
    "prompt_only": "prompt-only router",
    "local_confidence": "local confidence",
    "agreement": "answer agreement",
    "agreement_head": "agreement + success head",
    "oracle": "oracle",
}
GOAL = (0.99, 0.20)  # quality ratio to reach, cost ratio to stay under


def agreement_summary(report: AgreementReport) -> dict[str, Any]:
    """JSON form of an agreement report; targets become string keys as elsewhere in the summary."""
    signals = {
        name: {str(t): asdict(p) for t, p in points.items()} for name, points in report.signals.items()
    }
    return {
        "dataset": report.dataset,
        "task": report.task,
        "strong_model": report.strong,
        "rows_calibration": report.rows_calibration,
        "rows_held_back": report.rows_held_back,
        "cheap_models": report.cheap_models,
        "notes": report.notes,
        "signals": signals,
        "goal": {"quality_ratio": GOAL[0], "cost_ratio": GOAL[1], "met": goal_met(signals)},
    }


def pool_agreement(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Several datasets' held-back rows as one: summed cost over summed always-strong cost, same for score."""
    signals: dict[str, dict[str, dict[str, Any]]] = {}
    for part in parts:
        for name, points in part["signals"].items():
            for t, p in points.items():
                acc = signals.setdefault(name, {}).setdefault(
                    t, {"cost": 0.0, "strong_cost": 0.0, "score": 0.0, "strong_score": 0.0}
                )
                for k in acc:
                    acc[k] += p[k]
    for points in signals.values():
        for t, acc in points.items():
            acc["target"] = float(t)
            acc["cost_ratio"] = acc["cost"] / acc["strong_cost"]
            acc["quality_ratio"] = acc["score"] / acc["strong_score"]
    return {
        "dataset": "+".join(p["dataset"] for p in parts),
        "rows_held_back": sum(p["rows_held_back"] for p in parts),
        "signals": signals,
        "goal": {"quality_ratio": GOAL[0], "cost_ratio": GOAL[1], "met": goal_met(signals)},
    }


def goal_met(signals: dict[str, dict[str, dict[str, Any]]]) -> dict[str, bool]:
    """Per deployable signal: cost <= 0.20 of always-strong at >= 0.99 of its quality, held-back rows."""
    out = {}
    for name, points in signals.items():
        p = points.get(str(GOAL[0]))
        if p is not None and name != "oracle":
            out[name] = bool(p["quality_ratio"] >= GOAL[0] - 1e-12 and p["cost_ratio"] <= GOAL[1])
    return out


def print_agreement(console: Console, summary: dict[str, Any]) -> None:
    """One row per signal: cost and quality ratios vs always-strong at each target, held-back rows."""
    targets = sorted({t for points in summary["signals"].values() for t in points}, key=float)
    title = f"{summary['dataset']}: cascade signals on {summary['rows_held_back']} held-back rows"
    if "rows_calibration" in summary:
        title += f" (configured on {summary['rows_calibration']} calibration rows)"
    table = Table(title=title)
    table.add_column("signal")
    for t in targets:
        table.add_column(f"≥{float(t):.0%}: cost / quality", justify="right")
    with_rules = any(p.get("rule") for points in summary["signals"].values() for p in points.values())
    if with_rules:
        table.add_column(f"chosen at ≥{float(targets[-1]):.0%}")
    notes = summary.get("notes", {})
    for name, label in SIGNAL_LABELS.items():
        points = summary["signals"].get(name)
        if points is None:
            if name in notes and with_rules:
                table.add_row(label, *["—"] * len(targets), notes[name])
            continue
        cells = [f"{points[t]['cost_ratio']:.3f} / {points[t]['quality_ratio']:.3f}" for t in targets]
        if with_rules:
            cells.append(re.sub(r"[\w.-]+/", "", points[targets[-1]].get("rule", "")))
        table.add_row(label, *cells)
    met = goal_met(summary["signals"])
    table.caption = (
        f"goal: cost ≤ {GOAL[1]:.2f} of always-strong at ≥ {GOAL[0]:.2f} of its quality — "
        + ", ".join(f"{SIGNAL_LABELS.get(k, k)}: {'met' if v else 'not met'}" for k, v in met.items())
    )
    console.print(table)
