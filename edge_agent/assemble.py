"""Build a running agent's parts from settings: local model, hub link, app.

The CLI and the end-to-end tests use the same assembly, so what is tested is what is served.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from aiohttp import web

from edge_agent.app import create_app
from edge_agent.backends.llamacpp import LlamaCppBackend
from edge_agent.backends.text import resolve_gguf
from edge_agent.hub_link import HubLink
from models.manifest import ManifestError, artifact_path
from shared import paths
from shared.config import EdgeSettings
from shared.keys import init_keys, load_public


def model_dirs(settings: EdgeSettings) -> list[Path]:
    """Where installed models are looked up; ``EDGEROUTE_MODELS_DIR`` first when it is set."""
    dirs = [settings.models_dir]
    if os.environ.get("EDGEROUTE_MODELS_DIR"):
        dirs.insert(0, paths.models_dir())
    return dirs


def locate_local_model(settings: EdgeSettings) -> tuple[Path, str]:
    """(GGUF path, served model name) for ``settings.local_model``."""
    cfg = settings.local_model
    if cfg.path is not None:
        path = cfg.path.expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"local_model.path {path} is not a file")
        return path, cfg.name
    if cfg.name.endswith(".gguf"):
        path = resolve_gguf(cfg.name, [])
        return path, path.stem
    for base in model_dirs(settings):
        try:
            return artifact_path(cfg.name, base), cfg.name
        except ManifestError:
            break  # not a manifest model: look for a plain <dir>/<name>/*.gguf below
        except FileNotFoundError:
            continue
    return resolve_gguf(cfg.name, model_dirs(settings)), cfg.name


def load_backend(settings: EdgeSettings) -> LlamaCppBackend:
    path, name = locate_local_model(settings)
    cfg = settings.local_model
    return LlamaCppBackend(path, name=name, n_ctx=cfg.n_ctx, n_threads=cfg.n_threads)


def build_hub_link(settings: EdgeSettings) -> HubLink | None:
    if not settings.hub_url:
        return None
    if settings.hub_public_key_file is None:
        raise ValueError("a hub URL needs the hub's public key file (--hub-key / hub_public_key_file)")
    _, secret = init_keys(settings.keys_dir)
    return HubLink(
        settings.hub_url,
        load_public(settings.hub_public_key_file),
        secret,
        heartbeat_s=settings.heartbeat_s,
    )


async def build_app(settings: EdgeSettings) -> web.Application:
    """The app with its own backend and hub link; both close with the app."""
    backend = await asyncio.to_thread(load_backend, settings)
    try:
        hub = build_hub_link(settings)
    except Exception:
        await backend.close()
        raise
    return create_app(settings, backend, hub=hub, owns_backend=True)
