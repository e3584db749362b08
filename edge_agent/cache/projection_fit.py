"""Fit the paraphrase projection on the QQP train split and measure it against the shipped verifier.

``python -m edge_agent.cache.projection_fit --out var/projection.npz`` does, in one run:

1. cuts the QQP train split by a hash of the pair into a projection part (3 in 4) and a calibration
   part (1 in 4): the verifier refitted on projected cosines, and its operating points, are read
   off pairs the projection never saw, because on its own training pairs the projected cosine
   looks far cleaner than it is;
2. fits the projection (``cache.projection``) on the projection part only;
3. refits the logistic verifier with the projected cosine in place of the raw one, on the
   calibration part + MRPC train (the shipped verifier's other source), candidates above the raw
   cosine floor as on the edge;
4. scores QQP eval and MRPC val with the shipped verifier, the refitted one and the projected cosine
   alone, all behind the same raw floor and guards: best recall at each false-hit rate of
   ``training.FRONTIER_RATES``, and what the fitted default and 5% points serve there;
5. times the projection of one vector and of ten candidates, the work it adds to a lookup.

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_agent.cache.embedding import load_embedder
from edge_agent.cache.projection import F32, FitConfig, Projection, fit_projection
from edge_agent.cache.training import MIN_COSINE, frontier
from edge_agent.cache.verifier import Verifier, train
from shared import paths
from shared.pair_vectors import pair_vectors
from shared.paraphrase import Pair, mrpc, qqp_split

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


def calibration_part(p: Pair) -> bool:
    """One QQP train pair in four is kept out of the projection's fit (Pair has no id: hash the text)."""
    return hashlib.sha256(f"{p.a}\x00{p.b}".encode()).digest()[0] % 4 == 0


def labels_of(pairs: Sequence[Pair]) -> I64:
    return np.fromiter((p.label for p in pairs), dtype=np.int64, count=len(pairs))


def verifier_scores(
    verifier: Verifier, pairs: Sequence[Pair], raw: F64, cosines: F64, floor: float = MIN_COSINE
) -> F64:
    """The verifier's probability per pair with ``cosines`` as its cosine feature; -inf where the
    raw cosine is under the floor or a guard vetoes, as the edge would never serve those."""
    out = np.full(len(pairs), -np.inf)
    for i, p in enumerate(pairs):
        if raw[i] < floor:
            continue
        prob, veto = verifier.probability(float(cosines[i]), p.a, p.b)
        if not veto:
            out[i] = prob
    return out


def served_at(scores: F64, labels: I64, threshold: float) -> dict[str, float]:
    """What a fixed threshold serves: false-hit rate and recall (scores at 1.0 are identical forms)."""
    hit = np.isfinite(scores) & (scores >= threshold)
    n, right = int(hit.sum()), int((hit & (labels == 1)).sum())
    return {
        "threshold": round(threshold, 6),
        "hits": n,
        "false_hit_rate": round(1 - right / n, 4) if n else 0.0,
        "recall": round(right / max(int(labels.sum()), 1), 4),
    }


def frontier_of(scores: F64, labels: I64) -> dict[str, float]:
    return frontier(np.where(np.isfinite(scores), scores, 0.0), labels, int(labels.sum()))


def fit_verifier(rows: list[tuple[float, str, str, int]], projection: Projection) -> Verifier:
    """The shipped verifier's fit, on projected cosines; the raw floor was applied by the caller."""
    model = train(
        rows,
        min_cosine=-1.0,
        max_false_rate=0.02,
        meta={
            "data": "qqp train split, calibration quarter + mrpc train",
            "embedder": "minilm-l6-v2-onnx",
            "projection": projection.identity,
        },
    )
    model.min_cosine = MIN_COSINE
    return model


def time_projection(projection: Projection, repeats: int = 5000) -> dict[str, float]:
    """Median microseconds to project the query vector, and the query plus ten candidates."""
    rng = np.random.default_rng(0)
    q = rng.standard_normal(projection.input_dim).astype(np.float32)
    cands = rng.standard_normal((10, projection.input_dim)).astype(np.float32)
    one, eleven = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        projection.project(q)
        t1 = time.perf_counter()
        projection.project(cands) @ projection.project(q)
        t2 = time.perf_counter()
        one.append(t1 - t0)
        eleven.append(t2 - t1)
    return {
        "query_us_p50": round(float(np.median(one)) * 1e6, 1),
        "query_and_10_candidates_us_p50": round(float(np.median(eleven)) * 1e6, 1),
    }


def evaluate(
    shipped: Verifier,
    refit: Verifier,
    projection: Projection,
    sets: dict[str, tuple[list[Pair], F32, F32]],
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, (pairs, va, vb) in sets.items():
        y = labels_of(pairs)
        raw = np.einsum("ij,ij->i", va, vb).astype(np.float64)
        proj = projection.cosines(va, vb).astype(np.float64)
        base = verifier_scores(shipped, pairs, raw, raw)
        new = verifier_scores(refit, pairs, raw, proj)
        cos_only = np.where(np.isfinite(base), proj + 2.0, -np.inf)  # floor and guards as the verifier's
        out[name] = {
            "pairs": len(pairs),
            "positives": int(y.sum()),
            "frontier": {
                "shipped_verifier": frontier_of(base, y),
                "projected_verifier": frontier_of(new, y),
                "projected_cosine": frontier_of(cos_only, y),
            },
            "points": {
                "shipped_default": served_at(base, y, shipped.default_threshold),
                "projected_default": served_at(new, y, refit.default_threshold),
                "shipped_0.05": served_at(base, y, shipped.points.get("0.05", 1.0)),
                "projected_0.05": served_at(new, y, refit.points.get("0.05", 1.0)),
            },
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fit and measure the paraphrase projection")
    parser.add_argument("--out", type=Path, required=True, help="projection weights (.npz)")
    parser.add_argument("--verifier-out", type=Path, help="the verifier refitted on projected cosines")
    parser.add_argument("--dim", type=int, default=FitConfig.dim)
    parser.add_argument("--epochs", type=int, default=FitConfig.epochs)
    parser.add_argument("--l2", type=float, default=FitConfig.l2)
    parser.add_argument("--max-pairs", type=int, help="subsample the projection part to this many")
    args = parser.parse_args(argv)
    embedder = load_embedder(paths.models_dir())
    qqp_train, mrpc_train = qqp_split("train"), mrpc("train")
    # one call for both, as the verifier's own fit makes: its cached vectors are reused
    ta, tb = pair_vectors(embedder, qqp_train + mrpc_train)
    calib = np.fromiter((calibration_part(p) for p in qqp_train), dtype=bool, count=len(qqp_train))
    fit_idx = np.flatnonzero(~calib)
    if args.max_pairs is not None and args.max_pairs < len(fit_idx):
        fit_idx = np.sort(np.random.default_rng(0).choice(fit_idx, args.max_pairs, replace=False))
    cfg = FitConfig(dim=args.dim, epochs=args.epochs, l2=args.l2)
    t0 = time.perf_counter()
    projection = fit_projection(ta[fit_idx], tb[fit_idx], labels_of(qqp_train)[fit_idx], cfg)
    fit_s = time.perf_counter() - t0
    projection.meta["data"] = "qqp train split, projection part (3 of 4 by a hash of the pair)"
    rows: list[tuple[float, str, str, int]] = []
    cal_idx = [*np.flatnonzero(calib).tolist(), *range(len(qqp_train), len(qqp_train) + len(mrpc_train))]
    every = qqp_train + mrpc_train
    raw = np.einsum("ij,ij->i", ta[cal_idx], tb[cal_idx])
    proj = projection.cosines(ta[cal_idx], tb[cal_idx])
    for k, i in enumerate(cal_idx):
        if raw[k] >= MIN_COSINE:
            rows.append((float(proj[k]), every[i].a, every[i].b, every[i].label))
    refit = fit_verifier(rows, projection)
    qe, mv = qqp_split("eval"), mrpc("val")
    sets = {"qqp_eval": (qe, *pair_vectors(embedder, qe)), "mrpc_val": (mv, *pair_vectors(embedder, mv))}
    result = {
        "projection": {"identity": projection.identity, "fit_s": round(fit_s, 1), **projection.meta},
        "verifier": {"default_threshold": refit.default_threshold, "points": refit.points, **refit.meta},
        "latency": time_projection(projection),
        "sets": evaluate(Verifier.load(), refit, projection, sets),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    projection.save(args.out)
    if args.verifier_out is not None:
        args.verifier_out.write_text(refit.to_json() + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
