"""Building image serving from ``HubSettings.images``: the backend table, the policy file, off by default."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args, get_origin

import pytest
from pydantic import ValidationError

from cloud_hub.images.hosting import load_policy, open_images
from cloud_hub.images.reuse import ReusePolicy, SkipTable
from shared.backends import IMAGE_BACKENDS, load_class
from shared.config import HubSettings, ImageModelConfig


def test_images_are_off_by_default_and_then_nothing_is_built(tmp_path: Path) -> None:
    settings = HubSettings(home=tmp_path)
    assert not settings.images.enabled
    assert open_images(settings) is None
    assert not (tmp_path / "assets.db").exists()


def test_the_backend_names_are_the_table_and_each_class_builds_both_ways() -> None:
    annotation = ImageModelConfig.model_fields["backend"].annotation
    assert get_origin(annotation) is Literal and get_args(annotation) == tuple(IMAGE_BACKENDS)
    for name in IMAGE_BACKENDS:
        cls = load_class(IMAGE_BACKENDS, name)
        assert callable(getattr(cls, "tiny", None)) and callable(getattr(cls, "from_pretrained", None))
    with pytest.raises(ValidationError):
        ImageModelConfig(backend="sdxl")


def test_a_saved_policy_is_served_and_a_missing_one_falls_back_to_the_default(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    settings = HubSettings(home=tmp_path, images={"enabled": True, "policy_path": path})
    assert load_policy(settings) == ReusePolicy()
    tuned = ReusePolicy(threshold=0.031, table=SkipTable.scaled(0.5))
    tuned.save(path, source="test")
    assert load_policy(settings) == tuned


def test_the_environment_turns_images_on(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HUB_IMAGES__ENABLED", "true")
    monkeypatch.setenv("HUB_IMAGES__IMAGE__DEFAULT_STEPS", "4")
    settings = HubSettings(home=tmp_path)
    assert settings.images.enabled and settings.images.image is not None
    assert settings.images.image.default_steps == 4 and settings.images.image.model == "tiny"
