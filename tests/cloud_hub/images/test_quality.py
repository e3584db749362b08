from __future__ import annotations

import numpy as np
import pytest

from cloud_hub.images import tiny
from cloud_hub.images.base import lib
from cloud_hub.images.quality import ClipScorer, load_clip


def _random_clip() -> ClipScorer:
    """The real CLIP classes with tiny random weights: the scoring path, not meaningful scores."""
    tf = lib("transformers")
    CLIPConfig, CLIPModel, CLIPProcessor = tf.CLIPConfig, tf.CLIPModel, tf.CLIPProcessor
    CLIPTextConfig, CLIPVisionConfig = tf.CLIPTextConfig, tf.CLIPVisionConfig
    CLIPImageProcessorPil = lib("transformers.models.clip").CLIPImageProcessorPil
    tok = tiny.byte_tokenizer()
    text = CLIPTextConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        image_size=32,
        patch_size=8,
    )
    config = CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=16)
    images = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    return ClipScorer(CLIPModel(config), CLIPProcessor(image_processor=images, tokenizer=tok), name="random")


def test_clip_score_runs_on_the_real_classes() -> None:
    scorer = _random_clip()
    rng = np.random.default_rng(0)
    pic = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    video = rng.integers(0, 255, (5, 32, 32, 3), dtype=np.uint8)
    scores = scorer.scores([pic, pic, video], ["a cat", "a dog on a hill", "a cat"])
    assert len(scores) == 3 and all(0.0 <= s <= 100.0 for s in scores)
    assert scorer.scores([pic], ["a cat"]) == pytest.approx(scores[:1], abs=1e-3)  # batch vs single
    assert scorer.scores([], []) == []
    with pytest.raises(ValueError, match="one prompt per image"):
        scorer.scores([pic], [])


def test_missing_weights_are_reported_not_hidden(tmp_path: object) -> None:
    scorer, note = load_clip(None)
    assert scorer is None and "not measured" in note
    scorer, note = load_clip(str(tmp_path))  # a folder without weights
    assert scorer is None and "could not be loaded" in note
