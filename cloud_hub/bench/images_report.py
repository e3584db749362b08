"""Figures, table, plot and final JSON line of ``cloud-hub bench images``."""

from __future__ import annotations

import argparse
import io
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image
from rich.console import Console
from rich.table import Table

from cloud_hub.images.features import F16, ThumbnailDistance
from cloud_hub.images.reuse import ReusePolicy

if TYPE_CHECKING:
    from cloud_hub.bench.image_streams import PromptEvent
    from cloud_hub.bench.images import Run

KINDS = ("exact", "variation", "recomposition", "fresh")


def decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def thumb_of(dist: ThumbnailDistance, pngs: list[bytes]) -> F16:
    frames = [decode(p) for p in pngs]
    return dist.thumb(frames[0] if len(frames) == 1 else np.stack(frames))


def _diversity(per_request: list[list[F16]]) -> float | None:
    """Mean pairwise distance between the returns of one request, averaged over requests."""
    dist = ThumbnailDistance()
    means = []
    for thumbs in per_request:
        pairs = [dist.distance(a, b) for i, a in enumerate(thumbs) for b in thumbs[i + 1 :]]
        if pairs:
            means.append(float(np.mean(pairs)))
    return round(float(np.mean(means)), 5) if means else None


def summarise(
    reuse: Run,
    fresh: Run,
    policy: ReusePolicy,
    calibration: dict[str, Any],
    events: list[PromptEvent],
    args: argparse.Namespace,
) -> dict[str, Any]:
    n = len(reuse.traces)
    kinds: Counter[str] = Counter(t.kind for t in reuse.traces)
    reused = [t for t in reuse.traces if t.route == "asset_reuse"]
    var_d = [t.distance for t in reused if t.distance is not None]
    all_d = [t.distance for t in reuse.traces if t.distance is not None]
    skipped = [t.steps_skipped / t.steps_total for t in reused if t.kind != "exact"]
    return {
        "stream": str(args.prompts) if args.prompts else args.stream,
        "modality": "video" if args.video else "image",
        "requests": len(events),
        "returns": n,
        "sizes": sorted({f"{e.width}x{e.height}" for e in events}),
        "steps_logged": dict(Counter(e.steps for e in events)),
        "reuse_share": round(len(reused) / n, 4) if n else 0.0,
        "share_by_kind": {k: round(kinds.get(k, 0) / n, 4) for k in KINDS} if n else {},
        "steps_reuse": reuse.steps,
        "steps_fresh": fresh.steps,
        "compute_saved": round(1.0 - reuse.steps / fresh.steps, 4) if fresh.steps else 0.0,
        "wall_reuse_s": round(reuse.wall_s, 2),
        "wall_fresh_s": round(fresh.wall_s, 2),
        "wall_saved": round(1.0 - reuse.wall_s / fresh.wall_s, 4) if fresh.wall_s else 0.0,
        "mean_skipped_share": round(float(np.mean(skipped)), 4) if skipped else 0.0,
        "escalations": sum(t.escalations for t in reuse.traces),
        "variation_threshold": round(policy.threshold, 5),
        "min_variation_distance": round(min(var_d), 5) if var_d else None,
        "min_distance_all_returns": round(min(all_d), 5) if all_d else None,
        "variation_distances": [round(d, 5) for d in var_d],
        "below_threshold": sum(d < policy.threshold for d in var_d),
        "diversity_reuse": _diversity(reuse.per_request),
        "diversity_fresh": _diversity(fresh.per_request),
        "repeat_returns": sum(c - 1 for c in reuse.returned.values() if c > 1),
        "repeat_returns_fresh": sum(c - 1 for c in fresh.returned.values() if c > 1),
        "skip_table": [list(r) for r in policy.table.rows],
        "calibration": calibration,
    }


def quality(reuse: list[float], fresh: list[float], note: str, scorer: Any) -> dict[str, Any]:
    if scorer is None:
        return {"clip_score": None, "note": note}
    return {
        "clip_model": scorer.name,
        "clip_score_reuse": round(float(np.mean(reuse)), 3),
        "clip_score_fresh": round(float(np.mean(fresh)), 3),
    }


def final_line(s: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "requests",
        "returns",
        "compute_saved",
        "wall_saved",
        "reuse_share",
        "share_by_kind",
        "min_variation_distance",
        "variation_threshold",
        "repeat_returns",
        "diversity_reuse",
        "diversity_fresh",
    )
    return {"bench": f"images-{s['modality']}", **{k: s[k] for k in keys}}


def print_summary(console: Console, s: dict[str, Any]) -> None:
    t = Table(
        title=f"{s['modality']} reuse on {s['stream']} ({s['requests']} requests, {s['returns']} returns)"
    )
    t.add_column("figure")
    t.add_column("value", justify="right")
    rows = [
        ("denoising steps: reuse / always-fresh", f"{s['steps_reuse']} / {s['steps_fresh']}"),
        ("compute saved (steps)", f"{s['compute_saved']:.1%}"),
        ("wall time: reuse / always-fresh", f"{s['wall_reuse_s']:.1f} s / {s['wall_fresh_s']:.1f} s"),
        ("wall time saved", f"{s['wall_saved']:.1%}"),
        ("returns that reuse", f"{s['reuse_share']:.1%}"),
        *((f"  {k}", f"{v:.1%}") for k, v in s["share_by_kind"].items()),
        ("mean share of steps skipped when reusing", f"{s['mean_skipped_share']:.1%}"),
        ("escalations (attempts short of the threshold)", str(s["escalations"])),
        ("variation threshold", f"{s['variation_threshold']:.4f}"),
        ("min variation distance", str(s["min_variation_distance"])),
        ("diversity within a request: reuse / fresh", f"{s['diversity_reuse']} / {s['diversity_fresh']}"),
        ("repeat returns", str(s["repeat_returns"])),
    ]
    for row in rows:
        t.add_row(*row)
    console.print(t)
    q = s.get("quality", {})
    console.print(f"quality: {q.get('note') or q}")
    for name, figures in s.get("extras", {}).items():
        console.print(f"{name}: {figures}")


def plot(reuse: Run, fresh: Run, threshold: float, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    axes[0].plot(np.cumsum([t.steps_run for t in fresh.traces]), label="always fresh")
    axes[0].plot(np.cumsum([t.steps_run for t in reuse.traces]), label="reuse")
    axes[0].set(xlabel="returned asset", ylabel="cumulative denoising steps", title="compute")
    axes[0].legend()
    d = [t.distance for t in reuse.traces if t.route == "asset_reuse" and t.distance is not None]
    f = [t.distance for t in fresh.traces if t.distance is not None]
    bins = np.linspace(0, max([*d, *f, threshold * 2, 1e-3]), 40)
    axes[1].hist(f, bins=bins, alpha=0.6, label="fresh: to nearest earlier return")
    axes[1].hist(d, bins=bins, alpha=0.6, label="reuse: to source / earlier returns")
    axes[1].axvline(threshold, color="k", linestyle="--", label="threshold")
    axes[1].set(xlabel="thumbnail distance", title="variation distance")
    axes[1].legend(fontsize=8)
    kinds: Counter[str] = Counter(t.kind for t in reuse.traces)
    axes[2].bar(list(KINDS), [kinds.get(k, 0) for k in KINDS])
    axes[2].set(title="returns by reuse kind")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
