"""The cost-quality curve as the quality target moves, from one run's per-tier outcomes.

Re-serving the workload live at every target would multiply the run time, so the curve replays the
router's own rule offline: the shipped success heads predict each tier's success on each graded
held-out item, the calibrated threshold table turns each target into its ``lam``, and the rule
(``shared.routing.calibration.choose``) picks a tier per item. Quality and cost are then what that
tier *measured in this run's baselines* for that item. It leaves out what only the live system has
(caches, the local draft's confidence), so the report labels it as a replay; the live point of the
run is plotted beside it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cloud_hub.demo.summary import TierInfo
from cloud_hub.demo.traffic import Record
from shared.routing.calibration import DEFAULT_TARGETS, ThresholdTable, choose
from shared.routing.embed import TextEmbedder, routing_view
from shared.routing.heads import ClassifierHeads
from shared.taxonomy import Tier


def target_curve(
    passes: dict[str, list[Record]],
    tiers: Sequence[TierInfo],
    heads: ClassifierHeads,
    table: ThresholdTable,
    embedder: TextEmbedder,
    targets: Sequence[float] = DEFAULT_TARGETS,
) -> list[dict[str, float]]:
    names = [t.tier for t in tiers if t.tier.value in heads.success.labels and t.tier.value in passes]
    by_tier = {
        t: {r.request.item.item_id: r for r in passes[t.value] if r.covered(t) and r.score is not None}
        for t in names
    }
    # a tier that served nothing in this run (it failed throughout) cannot be on the curve
    names = [t for t in names if by_tier[t]]
    by_tier = {t: by_tier[t] for t in names}
    if Tier.FRONTIER not in names:
        return []
    ids = sorted(set.intersection(*(set(v) for v in by_tier.values())))
    ids = [i for i in ids if by_tier[Tier.FRONTIER][i].request.item.graded]
    if not ids:
        return []
    prompts = [by_tier[Tier.FRONTIER][i].request.item.prompt for i in ids]
    x = np.asarray(embedder.embed([routing_view(p) for p in prompts]), dtype=np.float32)
    p_all = heads.success.proba(x)
    cols = [heads.success.labels.index(t.value) for t in names]
    pred = p_all[:, cols].astype(np.float64)
    scores = np.array([[by_tier[t][i].score or 0.0 for t in names] for i in ids], dtype=np.float64)
    costs = np.array([[by_tier[t][i].cost_usd for t in names] for i in ids], dtype=np.float64)
    cost_est = costs.mean(axis=0)  # what each tier charged on average in this run
    front = names.index(Tier.FRONTIER)
    ref_q, ref_c = float(scores[:, front].mean()), float(costs[:, front].sum())
    rows = np.arange(len(ids))
    out = []
    for target in targets:
        pick = choose(pred, cost_est, table.lam_for(target))
        q, c = float(scores[rows, pick].mean()), float(costs[rows, pick].sum())
        out.append(
            {
                "target": float(target),
                "quality_ratio": q / ref_q if ref_q else float("nan"),
                "cost_ratio": c / ref_c if ref_c else float("nan"),
                "frontier_share": float(np.mean(pick == front)),
                "items": float(len(ids)),
            }
        )
    return out
