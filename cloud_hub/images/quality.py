"""Quality hooks for generated pictures: CLIP score against the prompt.

CLIP score (Hessel et al., 2021) is 100 × max(cos(image embedding, text embedding), 0) under a
CLIP model; with ``openai/clip-vit-large-patch14`` it is the figure diffusion papers report
(typical SD 1.5 pictures of COCO captions score about 26–32). ``ClipScorer.from_pretrained``
takes a hub id or a local folder; the benchmark takes ``--clip PATH`` and says plainly when no
weights are there, as on the CPU machines this project is developed on, where no CLIP weights
can be installed. The tests exercise the scoring path with a random-weight CLIP built from a
config, whose scores mean nothing.

Distance to the source (the variation guarantee) needs no model: ``features.ThumbnailDistance``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import torch

from cloud_hub.images.base import U8, lib


class PromptScorer(Protocol):
    @property
    def name(self) -> str: ...

    def scores(self, images: Sequence[U8], prompts: Sequence[str]) -> list[float]:
        """One score per (image, prompt) pair, higher is better."""
        ...


class ClipScorer:
    def __init__(self, model: Any, processor: Any, *, name: str, device: str = "cpu") -> None:
        self._model = model.to(device).eval()
        self._processor = processor
        self._device = device
        self._name = name

    @classmethod
    def from_pretrained(cls, model: str, *, device: str = "cuda") -> ClipScorer:
        mod = lib("transformers")
        CLIPModel, CLIPProcessor = mod.CLIPModel, mod.CLIPProcessor

        return cls(
            CLIPModel.from_pretrained(model), CLIPProcessor.from_pretrained(model), name=model, device=device
        )

    @property
    def name(self) -> str:
        return self._name

    def scores(self, images: Sequence[U8], prompts: Sequence[str]) -> list[float]:
        if len(images) != len(prompts):
            raise ValueError("one prompt per image")
        if not images:
            return []
        # a video scores as its middle frame
        frames = [img[len(img) // 2] if img.ndim == 4 else img for img in images]
        batch = self._processor(
            text=list(prompts), images=frames, return_tensors="pt", padding=True, truncation=True
        )
        batch = {k: v.to(self._device) for k, v in batch.items()}
        with torch.inference_mode():
            img = self._model.get_image_features(pixel_values=batch["pixel_values"])
            txt = self._model.get_text_features(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
            )
        img = _unit(_tensor(img))
        txt = _unit(_tensor(txt))
        cos = (img * txt).sum(dim=-1).to("cpu", torch.float32).numpy()
        return [float(100.0 * max(c, 0.0)) for c in np.asarray(cos)]


def _tensor(out: Any) -> torch.Tensor:
    # transformers 5 may hand back a model output instead of a bare tensor
    if isinstance(out, torch.Tensor):
        return out
    for attr in ("image_embeds", "text_embeds", "pooler_output"):
        value = getattr(out, attr, None)
        if isinstance(value, torch.Tensor):
            return value
    raise TypeError(f"unexpected CLIP output {type(out).__name__}")


def _unit(x: torch.Tensor) -> torch.Tensor:
    out: torch.Tensor = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return out


def load_clip(path: str | None, device: str = "cpu") -> tuple[ClipScorer | None, str]:
    """A scorer and ``""``, or ``None`` and why quality cannot be measured."""
    if not path:
        return None, "no CLIP weights given (--clip): CLIP score not measured"
    try:
        return ClipScorer.from_pretrained(path, device=device), ""
    except (OSError, ValueError) as exc:
        return None, f"CLIP weights at {path!r} could not be loaded ({type(exc).__name__}): not measured"
