"""Where the edge's model files are: the models directories, and the GGUF ``local_model`` names.

Apart from the llama.cpp backend so the agent's other models (the embedder) are found in the same
directories, and so locating a model is testable without loading one.
"""

from __future__ import annotations

import os
from pathlib import Path

from edge_agent.backends.text import resolve_gguf
from models.manifest import ManifestError, artifact_path
from shared import paths
from shared.config import EdgeSettings


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
