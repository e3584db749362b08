"""Fit the pair-head judge on the QQP train split, choose its threshold on a held-out slice of it.

``python -m cloud_hub.cache.judge_training --out shared/cache_judge.json``

Only the train split (``shared.paraphrase.qqp_split("train")``, the verifier's split) is read. A
fifth of it, cut by a digest of the two texts, is kept out of the fit; the approval threshold is
the lowest score at which the held-out pairs an edge would send (cosine ≥ ``MIN_COSINE``) keep
wrong approvals at ``MAX_FALSE_RATE``. Vectors are those of the verifier's fit (same cache file),
so the texts of MRPC's train file are embedded with QQP's, and then left out.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np

from shared import paths
from shared.cache_judge import fit_head, pair_features
from shared.embedding import OnnxEmbedder
from shared.pair_vectors import pair_vectors
from shared.paraphrase import Pair, mrpc, operating_point, qqp_split
from shared.routing.embed import EMBEDDING_MODEL

MAX_FALSE_RATE = 0.02
MIN_COSINE = 0.80  # the edge never sends a candidate below its verifier's floor
L2 = 10.0


def held_out(pair: Pair) -> bool:
    return hashlib.sha256(f"{pair.a}\x00{pair.b}".encode()).digest()[1] % 5 == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fit the hub's pair-head cache judge on QQP train")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--max-false-rate", type=float, default=MAX_FALSE_RATE)
    parser.add_argument("--l2", type=float, default=L2)
    args = parser.parse_args(argv)
    qqp = qqp_split("train")
    with OnnxEmbedder(paths.models_dir() / EMBEDDING_MODEL) as embedder:
        va, vb = pair_vectors(embedder, qqp + mrpc("train"))
    va, vb = va[: len(qqp)], vb[: len(qqp)]
    x = pair_features(va, vb, [p.a for p in qqp], [p.b for p in qqp])
    y = np.asarray([p.label for p in qqp], dtype=np.float64)
    cal = np.asarray([held_out(p) for p in qqp])
    head = fit_head(
        x[~cal], y[~cal], dim=va.shape[1], l2=args.l2,
        meta={"data": "qqp train split (sha256(pair_id) % 5 != 0), less a held-out fifth",
              "embedder": EMBEDDING_MODEL},
    )  # fmt: skip
    near = cal & (x[:, 2 * va.shape[1]] >= MIN_COSINE)
    scores = head.probabilities(va[near], vb[near], [p.a for p, n in zip(qqp, near, strict=True) if n],
                                [p.b for p, n in zip(qqp, near, strict=True) if n])  # fmt: skip
    point = operating_point(list(scores), [int(v) for v in y[near]], args.max_false_rate)
    head.threshold = point.threshold
    head.meta.update(
        held_out_pairs=int(near.sum()),
        held_out_false_hit_rate=point.false_hit_rate,
        held_out_recall=point.recall,
        max_false_rate=args.max_false_rate,
    )
    args.out.write_text(head.to_json() + "\n")
    print(json.dumps({"out": str(args.out), "threshold": head.threshold, **head.meta}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
