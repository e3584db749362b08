"""Model backends, one per file, all behind ``cloud_hub.backends.base.Backend``.

``open_backend`` imports a backend module only when the registry uses it, so a hub that serves
only the echo, HTTP or replay backends never loads torch.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from cloud_hub.backends.base import Backend, BackendError, Completion, StreamItem
from shared import paths
from shared.config import HubModelEntry

__all__ = ["Backend", "BackendError", "Completion", "StreamItem", "open_backend"]


def _model_path(entry: HubModelEntry, models_dir: Path, *names: str) -> Path:
    """An explicit ``path`` wins; else the first of ``names`` the model manifest knows, installed."""
    if entry.path is not None:
        return entry.path
    from models.manifest import ManifestError, artifact_path, load_manifest

    manifest = load_manifest()
    for name in names:
        try:
            manifest.get(name)
        except ManifestError:
            continue
        return artifact_path(name, models_dir, manifest=manifest)
    return models_dir / names[0]


async def open_backend(entry: HubModelEntry, models_dir: Path) -> Backend:
    """Build the backend a registry entry names. Model loads block, so they run off the loop."""
    if entry.backend == "echo":
        from cloud_hub.backends.echo import EchoBackend

        return EchoBackend()
    if entry.backend == "openai_http":
        from cloud_hub.backends.openai_http import OpenAIHTTPBackend

        if not entry.base_url:
            raise ValueError(f"model {entry.name!r}: the openai_http backend needs base_url")
        key = entry.api_key.get_secret_value() if entry.api_key else None
        return OpenAIHTTPBackend(entry.base_url, entry.served_model or entry.name, api_key=key)
    if entry.backend == "llamacpp":
        from cloud_hub.backends.llamacpp import LlamaCppBackend

        path = _model_path(entry, models_dir, entry.name)
        return await asyncio.to_thread(LlamaCppBackend, path, n_ctx=entry.max_model_len)
    if entry.backend == "vllm":
        from cloud_hub.backends.vllm import VllmBackend

        # Installed HF folders carry a "-hf" suffix next to the GGUF of the same model.
        path = _model_path(entry, models_dir, f"{entry.name}-hf", entry.name)
        return VllmBackend.open(path, max_model_len=entry.max_model_len)
    if entry.backend == "replay":
        from cloud_hub.backends.replay import ReplayBackend

        if not entry.recorded:
            raise ValueError(f"model {entry.name!r}: the replay backend needs recorded (outcome files)")
        root = paths.data_dir()
        sources = [p if p.is_absolute() else root / p for p in entry.recorded]
        names = entry.recorded_models or [entry.served_model or entry.name]
        return await asyncio.to_thread(ReplayBackend.load, names, sources)
    raise ValueError(f"model {entry.name!r}: unknown backend {entry.backend!r}")
