"""Where models and data live, overridable by environment for every entry point and test."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def models_dir() -> Path:
    """Installed model artifacts (``<dir>/<model name>/...``), shared by every checkout."""
    env = os.environ.get("EDGEROUTE_MODELS_DIR")
    return Path(env) if env else Path.home() / ".cache" / "edgeroute" / "models"


def data_dir() -> Path:
    """Public calibration and benchmark data (see ``cloud-hub data download``)."""
    env = os.environ.get("EDGEROUTE_DATA_DIR")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


def specs_dir() -> Path:
    """Specifications of systems edgeroute interoperates with (the OpenAI OpenAPI description)."""
    env = os.environ.get("EDGEROUTE_SPECS_DIR")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "specs"
