"""The pair-head judge: ``shared.cache_judge.JudgeHead`` on the hub's MiniLM embeddings.

Cheap enough to judge every grey-zone candidate as it arrives (one embedding of each question and a
dot product), and measured on the same pairs as the edge's verifier by ``edge-agent bench cache``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cloud_hub.cache.judge import JudgeItem, domain_threshold
from shared.cache_judge import JudgeHead
from shared.routing.embed import TextEmbedder, load_default_embedder


class HeadJudge:
    def __init__(self, embedder: TextEmbedder, head: JudgeHead) -> None:
        self._embedder = embedder
        self.head = head

    @classmethod
    def load(cls, weights: Path | None = None, models_dir: Path | None = None) -> HeadJudge:
        return cls(load_default_embedder(models_dir), JudgeHead.load(weights))

    @property
    def name(self) -> str:
        return f"pair-head:{self.head.identity}"

    def score(self, items: Sequence[JudgeItem]) -> list[float]:
        if not items:
            return []
        cached = [i.cached for i in items]
        query = [i.query for i in items]
        vecs = self._embedder.embed(cached + query)
        probs = self.head.probabilities(vecs[: len(items)], vecs[len(items) :], cached, query)
        return [float(p) for p in probs]

    def threshold(self, domain: str) -> float:
        return domain_threshold(self.head.thresholds, domain, self.head.threshold)

    def set_thresholds(self, thresholds: dict[str, float]) -> None:
        """Domain thresholds fitted from reviewed verdicts (``judge.fit_domain_thresholds``)."""
        self.head.thresholds.update(thresholds)
