"""Cross-encoder verification of semantic-cache candidates, and the choice of verifier at start-up.

A cross-encoder reads the cached question and the new one together, token against token, where the
logistic verifier sees one cosine and a few lexical counts. It is opt-in: the MiniLM-L6 one that two
CPU cores can train in an install ranks Quora pairs better than the logistic verifier on its own,
but once the guards have run the two are level (``edge-agent bench cache``), so the default install
does not spend 17 minutes building it. A hub with a GPU can train a larger one from the same entry.
The hard guards always run first: they are free, and a number or negation that differs is a veto
whatever any model says.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from edge_agent.cache.base import CandidateVerifier
from edge_agent.cache.guards import check_pair
from edge_agent.cache.verifier import Verifier, refined_threshold
from shared.cache_text import question_form
from shared.config import CacheSettings
from shared.cross_encoder import OnnxCrossEncoder, PairScorer

ARTIFACT = "minilm-l6-qqp-cross-encoder"
# the model, not the cosine, separates paraphrases, so candidates may be further apart than the
# logistic verifier's 0.80 floor: MiniLM puts a fifth of Quora's true paraphrases below it
MIN_COSINE = 0.70

log = logging.getLogger(__name__)


class CrossEncoderVerifier:
    def __init__(
        self, scorer: PairScorer, *, min_cosine: float = MIN_COSINE, threshold: float | None = None
    ) -> None:
        """``threshold`` replaces the one calibrated with the model (an operator's own audit)."""
        self.scorer = scorer
        self.min_cosine = min_cosine
        self._default = scorer.threshold if threshold is None else threshold
        self.thresholds: dict[str, float] = {}

    @property
    def default_threshold(self) -> float:
        return self._default

    def threshold(self, domain: str) -> float:
        return self.thresholds.get(domain, self._default)

    def raise_threshold(self, at_least: float) -> None:
        self._default = max(self._default, at_least)
        self.thresholds = {d: max(t, at_least) for d, t in self.thresholds.items()}

    def accept(self, cosine: float, cached: str, query: str, domain: str) -> tuple[bool, float, str]:
        if cosine < self.min_cosine:
            return False, 0.0, "below_min_cosine"
        if question_form(cached) == question_form(query):
            return True, 1.0, "verified"  # the same question up to case and punctuation
        veto = check_pair(cached, query).veto
        if veto:
            return False, 0.0, veto
        prob = float(self.scorer.score([(cached, query)])[0])
        ok = prob >= self.threshold(domain)
        return ok, prob, "verified" if ok else "verifier_rejected"

    def raise_domain(self, domain: str, at_least: float) -> None:
        self.thresholds[domain] = max(self.threshold(domain), at_least)

    def refine(self, domain: str, audit: Sequence[tuple[float, bool]], max_false_rate: float) -> float:
        self.thresholds[domain] = refined_threshold(self.threshold(domain), audit, max_false_rate)
        return self.thresholds[domain]


def load_verifier(settings: CacheSettings, models_dirs: Sequence[Path]) -> CandidateVerifier:
    """The verifier ``settings.verifier`` names; "auto" takes the cross-encoder when it is installed."""
    if settings.verifier != "logistic":
        for base in models_dirs:
            try:
                verifier: CandidateVerifier = CrossEncoderVerifier(OnnxCrossEncoder(base / ARTIFACT))
                break
            except FileNotFoundError:
                continue
        else:
            if settings.verifier == "cross_encoder":
                raise FileNotFoundError(f"{ARTIFACT} is not installed: `edgeroute-models install {ARTIFACT}`")
            log.warning("%s not installed: semantic cache falls back to the logistic verifier", ARTIFACT)
            verifier = Verifier.load(settings.verifier_file)
    else:
        verifier = Verifier.load(settings.verifier_file)
    if settings.min_cosine is not None:
        verifier.min_cosine = settings.min_cosine
    if settings.min_verifier_probability is not None:
        verifier.raise_threshold(settings.min_verifier_probability)
    return verifier
