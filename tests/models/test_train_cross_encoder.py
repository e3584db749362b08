"""The cross-encoder build: a few real training steps on a tiny data dir, through the installer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.derive import DeriveError
from models.installer import SilentReporter
from models.stamp import read_stamp
from models.train_cross_encoder import CrossEncoderTrain, calibrate
from shared.cross_encoder import OnnxCrossEncoder, ScorerClosed
from shared.paraphrase import QQP_FILE, mrpc_file
from tests.conftest import PARAPHRASES


@pytest.mark.slow
def test_trained_verifier_is_stamped_loads_and_scores(tiny_cross_encoder: Path) -> None:
    out = tiny_cross_encoder / "minilm-l6-qqp-cross-encoder"
    stamp = read_stamp(out)
    assert stamp is not None and stamp.derived is not None and stamp.derived.method == "cross_encoder_train"
    assert set(stamp.files) == {"model.onnx", "tokenizer.json", "cross_encoder.json"}
    meta = json.loads((out / "cross_encoder.json").read_text())
    assert meta["train"]["steps"] >= 2 and set(meta["data"]) == {str(QQP_FILE), str(mrpc_file("train"))}
    # too few calib pairs to read a threshold off: it must refuse everything, not guess
    assert meta["threshold"] == 1.0 and meta["calibration"]["served"] == 0
    scorer = OnnxCrossEncoder(out)
    scores = scorer.score([(a, b) for a, b, _ in PARAPHRASES])
    assert scores.shape == (4,) and np.all((scores > 0) & (scores < 1))
    # batching and length-sorting move a score only by int8 dynamic quantisation, whose activation
    # scale is per batch (about 1e-3), never by mixing pairs up
    alone = np.array([scorer.score([(a, b)])[0] for a, b, _ in PARAPHRASES])
    assert np.allclose(scores, alone, atol=5e-3)
    scorer.close()
    scorer.close()  # idempotent
    with pytest.raises(ScorerClosed):
        scorer.score([("a?", "b?")])


def test_missing_data_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEROUTE_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(DeriveError, match="EDGEROUTE_DATA_DIR"):
        CrossEncoderTrain().derive(tmp_path, tmp_path / "out", {}, SilentReporter())


def test_calibration_takes_the_lowest_threshold_meeting_the_target() -> None:
    # ranked: 100 right hits, 2 wrong, 48 right, then 50 wrong
    scores = [1.0 - i / 1000 for i in range(200)]
    labels = [1] * 100 + [0] * 2 + [1] * 48 + [0] * 50
    got = calibrate(scores, labels, 0.015)
    assert got["threshold"] == scores[149] and got["false_hit_rate"] <= 0.015
    assert got["recall"] == 1.0 and got["served"] == 150
    assert calibrate(scores, labels, 0.0)["threshold"] == scores[99]
    assert calibrate([0.9] * 10, [1] * 10, 0.0)["threshold"] == 1.0  # under MIN_SERVED: refuse
