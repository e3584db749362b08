"""The sentence embedder the semantic cache uses: the installed ``minilm-l6-v2-onnx`` artifact."""

from __future__ import annotations

from pathlib import Path

from shared.embedding import Embedder, OnnxEmbedder

ARTIFACT = "minilm-l6-v2-onnx"


def load_embedder(models_dir: Path, threads: int = 2) -> Embedder:
    """Raises ``FileNotFoundError`` naming the install command when the artifact is missing."""
    return OnnxEmbedder(models_dir / ARTIFACT, threads=threads)
