from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from cloud_hub.images.base import RenderSpec
from cloud_hub.images.cascade import CascadePolicy, QualityGate, train_gate
from cloud_hub.images.diffusers_backend import DiffusersImageBackend
from cloud_hub.images.features import GATE_FEATURES, gate_features
from tests.cloud_hub.images.conftest import SIDE, STEPS


def _pictures(backend: DiffusersImageBackend, n: int) -> list[np.ndarray]:
    spec = RenderSpec("a harbour at night", SIDE, SIDE, 4, seed=0)
    return [backend.fresh(replace(spec, seed=s)).pixels for s in range(n)]


def test_gate_features_are_fixed_length_and_finite(backend: DiffusersImageBackend) -> None:
    pic = _pictures(backend, 1)[0]
    f = gate_features(pic)
    assert f.shape == (GATE_FEATURES,) and np.isfinite(f).all()
    flat = np.full_like(pic, 128)
    assert gate_features(flat)[6] == pytest.approx(0.0)  # no gradient energy in a flat picture
    assert gate_features(np.stack([pic, flat])).shape == (GATE_FEATURES,)  # a video: its middle frame


def test_training_learns_a_rule_present_in_real_picture_features(backend: DiffusersImageBackend) -> None:
    # a stand-in for "the large model would do better": washed-out pictures, i.e. the ones whose
    # contrast was cut. Random weights offer no real quality signal; the rule checks the learner
    pics = _pictures(backend, 24)
    rng = np.random.default_rng(0)
    faded = rng.random(len(pics)) < 0.5
    shown = [
        ((p.astype(np.float32) - 128) * (0.35 if f else 1.0) + 128).astype(np.uint8)
        for p, f in zip(pics, faded, strict=True)
    ]
    x = np.stack([gate_features(p) for p in shown])
    gate = train_gate(x[:16], faded[:16])
    predicted = np.array([gate.escalate(row) for row in x[16:]])
    assert (predicted == faded[16:]).mean() >= 0.85
    with pytest.raises(ValueError, match="both classes"):
        train_gate(x[:4], np.zeros(4))


def test_gate_weights_round_trip_as_json(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 5)).astype(np.float32)
    gate = train_gate(x, x[:, 0] + 0.3 * rng.normal(size=40) > 0, threshold=0.4)
    gate.save(tmp_path / "gate.json")
    loaded = QualityGate.load(tmp_path / "gate.json")
    assert "weights" in (tmp_path / "gate.json").read_text()
    assert [loaded.probability(r) for r in x[:5]] == pytest.approx(
        [gate.probability(r) for r in x[:5]], abs=1e-6
    )
    assert loaded.threshold == 0.4


def test_cascade_escalates_only_when_the_gate_says_so(backend: DiffusersImageBackend) -> None:
    large = DiffusersImageBackend.tiny(unet_size="large", threads=1)
    spec = RenderSpec("a harbour at night", SIDE, SIDE, STEPS, seed=3)
    zeros = np.zeros(GATE_FEATURES, np.float32)
    ones = np.ones(GATE_FEATURES, np.float32)
    never = CascadePolicy(backend, large, QualityGate(zeros, -5.0, zeros, ones))
    always = CascadePolicy(backend, large, QualityGate(zeros, 5.0, zeros, ones))
    kept, sent = never.render(spec), always.render(spec)
    assert not kept.escalated and kept.large_steps == 0 and kept.small_steps == STEPS
    assert sent.escalated and sent.large_steps == STEPS
    assert np.array_equal(kept.rendered.pixels, backend.fresh(spec).pixels)
    assert np.array_equal(sent.rendered.pixels, large.fresh(spec).pixels)
