"""Image distances for the variation guarantee, and image features for the cascade gate.

The variation distance is the mean absolute difference of two 32×32 RGB thumbnails in [0, 1]
(a video: averaged over aligned frames). It needs no model, so the guarantee holds wherever the
hub runs; its threshold is calibrated per model (``calibrate.py``), because what counts as
"different" depends on how much of a picture a model fixes in its first steps. With real
weights a perceptual embedding (DINO, CLIP image tower) can replace it behind ``ImageDistance``
without touching the policy.

Gate features are cheap statistics that track what a small model gets wrong (flat or noisy
pictures, washed-out colour, missing detail): colour moments, gradient energy, high-frequency
share, colourfulness, luminance entropy and a 4×4 luminance layout. On a GPU hub the same head
can read CLIP image embeddings instead (``FeatureFn``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
import numpy.typing as npt
from PIL import Image

F32 = npt.NDArray[np.float32]
F16 = npt.NDArray[np.float16]
THUMB = 32
MAX_VIDEO_THUMBS = 8

FeatureFn = Callable[[npt.NDArray[np.uint8]], F32]


class ImageDistance(Protocol):
    def thumb(self, pixels: npt.NDArray[np.uint8]) -> F16: ...

    def distance(self, a: F16, b: F16) -> float: ...


def _thumb_frame(frame: npt.NDArray[np.uint8]) -> F32:
    img = Image.fromarray(frame).convert("RGB").resize((THUMB, THUMB), Image.Resampling.BOX)
    out: F32 = np.asarray(img, dtype=np.float32) / 255.0
    return out


class ThumbnailDistance:
    """Images: H×W×3 uint8 → 32×32×3; videos: F×H×W×3 → up to 8 evenly spaced frame thumbnails."""

    def thumb(self, pixels: npt.NDArray[np.uint8]) -> F16:
        if pixels.ndim == 3:
            return _thumb_frame(pixels).astype(np.float16)
        if pixels.ndim != 4:
            raise ValueError(f"expected H×W×3 or F×H×W×3 pixels, got shape {pixels.shape}")
        idx = np.unique(
            np.linspace(0, len(pixels) - 1, min(len(pixels), MAX_VIDEO_THUMBS)).round().astype(int)
        )
        return np.stack([_thumb_frame(pixels[i]) for i in idx]).astype(np.float16)

    def distance(self, a: F16, b: F16) -> float:
        if a.shape != b.shape:
            # an image against a video, or videos of other lengths: compare first frames only
            a, b = (x if x.ndim == 3 else x[0] for x in (a, b))
        return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())

    def nearest(self, query: F16, others: list[F16]) -> float:
        """Distance to the closest of ``others`` (``inf`` when there are none)."""
        return min((self.distance(query, o) for o in others), default=float("inf"))


def gate_features(pixels: npt.NDArray[np.uint8]) -> F32:
    """26 statistics of an H×W×3 image (a video: of its middle frame)."""
    if pixels.ndim == 4:
        pixels = pixels[len(pixels) // 2]
    rgb = pixels.astype(np.float32) / 255.0
    lum = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    gy, gx = np.gradient(lum)
    grad = float(np.sqrt(gx * gx + gy * gy).mean())
    spectrum = np.abs(np.fft.rfft2(lum - lum.mean()))
    h, w = spectrum.shape
    total = float(spectrum.sum()) or 1.0
    high = float(spectrum[h // 4 : h - h // 4, w // 2 :].sum()) / total
    rg = rgb[..., 0] - rgb[..., 1]
    yb = 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
    colourful = float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))
    hist, _ = np.histogram(lum, bins=32, range=(0.0, 1.0))
    p = hist[hist > 0] / hist.sum()
    entropy = float(-(p * np.log2(p)).sum() / 5.0)  # / log2(32): in [0, 1]
    layout = np.asarray(Image.fromarray((lum * 255).astype(np.uint8)).resize((4, 4), Image.Resampling.BOX))
    parts = [
        rgb.reshape(-1, 3).mean(0),
        rgb.reshape(-1, 3).std(0),
        np.array([grad, high, colourful, entropy], dtype=np.float32),
        layout.reshape(-1).astype(np.float32) / 255.0,
    ]
    out: F32 = np.concatenate(parts).astype(np.float32)
    return out


GATE_FEATURES = 26
