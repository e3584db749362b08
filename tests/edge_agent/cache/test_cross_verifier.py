"""The cross-encoder verifier's gates and thresholds, and how the cache picks its verifier."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.cache.cross_verifier import ARTIFACT, MIN_COSINE, CrossEncoderVerifier, load_verifier
from edge_agent.cache.verifier import Verifier
from shared.config import CacheSettings
from shared.cross_encoder import OnnxCrossEncoder

pytestmark = pytest.mark.slow  # the session builds a cross-encoder (a few training steps)


@pytest.fixture(scope="module")
def scorer(tiny_cross_encoder: Path) -> OnnxCrossEncoder:
    return OnnxCrossEncoder(tiny_cross_encoder / ARTIFACT)


def test_auto_takes_the_cross_encoder_when_installed(tiny_cross_encoder: Path, tmp_path: Path) -> None:
    got = load_verifier(CacheSettings(), [tmp_path, tiny_cross_encoder])
    assert isinstance(got, CrossEncoderVerifier) and got.min_cosine == MIN_COSINE
    assert got.default_threshold == got.scorer.threshold  # the calibrated one, from the artifact


def test_auto_falls_back_and_an_explicit_choice_does_not(tmp_path: Path) -> None:
    assert isinstance(load_verifier(CacheSettings(), [tmp_path]), Verifier)
    with pytest.raises(FileNotFoundError, match=ARTIFACT):
        load_verifier(CacheSettings(verifier="cross_encoder"), [tmp_path])
    assert isinstance(load_verifier(CacheSettings(verifier="logistic"), []), Verifier)


def test_settings_override_floor_and_operating_point(tiny_cross_encoder: Path) -> None:
    settings = CacheSettings(verifier="cross_encoder", min_cosine=0.85, min_verifier_probability=0.5)
    got = load_verifier(settings, [tiny_cross_encoder])
    # a stricter point never lowers the calibrated threshold (1.0 for this tiny model)
    assert isinstance(got, CrossEncoderVerifier) and got.min_cosine == 0.85
    assert got.default_threshold == max(0.5, got.scorer.threshold)


def test_the_model_decides_between_the_gates(scorer: OnnxCrossEncoder) -> None:
    cached, query = "How can I lose weight fast?", "How do I lose weight quickly?"
    prob = float(scorer.score([(cached, query)])[0])
    at = CrossEncoderVerifier(scorer, threshold=prob)  # exactly at its score: served
    ok, got, why = at.accept(0.9, cached, query, "general")
    assert (ok, why) == (True, "verified") and got == pytest.approx(prob)
    above = CrossEncoderVerifier(scorer, threshold=prob + 1e-3)  # refused, its probability traced
    ok, got, why = above.accept(0.9, cached, query, "general")
    assert (ok, why) == (False, "verifier_rejected") and got == pytest.approx(prob)


def test_gates_run_before_the_model(scorer: OnnxCrossEncoder) -> None:
    v = CrossEncoderVerifier(scorer, threshold=0.0)  # the model would accept anything
    assert v.accept(0.5, "a question?", "another?", "general") == (False, 0.0, "below_min_cosine")
    assert v.accept(0.99, "What is 2+2?", "what is 2+2", "general") == (True, 1.0, "verified")
    for cached, query in [
        ("How do I enable 2FA?", "How do I disable 2FA?"),
        ("What is 2+2?", "What is 2+3?"),
    ]:
        ok, prob, why = v.accept(0.99, cached, query, "general")
        assert not ok and prob == 0.0 and why not in ("verified", "verifier_rejected")


def test_an_audit_raises_only_its_domain(scorer: OnnxCrossEncoder) -> None:
    v = CrossEncoderVerifier(scorer, threshold=0.6)
    raised = v.refine("code", [(0.61, False), (0.62, True), (0.9999, True)], 0.0)
    assert raised == 0.62 and v.threshold("code") == 0.62 and v.threshold("general") == 0.6
    v.raise_threshold(0.7)
    assert v.threshold("general") == 0.7 and v.threshold("code") == 0.7
