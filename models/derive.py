"""Derivations: artifacts computed from another entry's verified files.

Each method lives in its own module behind ``Deriver``; imports of torch and transformers stay inside
those modules' functions so that listing or installing plain files never pays for them.
"""

from __future__ import annotations

import importlib
import logging
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol


class DeriveError(RuntimeError):
    """A conversion or export failed; the half-written output has been discarded."""


class Deriver(Protocol):
    def derive(self, input_path: Path, output_dir: Path, options: Mapping[str, Any]) -> None:
        """Write the artifact's files into the empty ``output_dir`` from ``input_path``."""
        ...

    def libraries(self) -> list[str]:
        """Distributions whose versions shape the output bytes (recorded in the stamp)."""
        ...


@contextmanager
def quiet_libraries() -> Iterator[None]:
    """Mute tracer warnings, tqdm bars and advice logs of torch/transformers/onnxruntime for one call.

    They would interleave with the installer's own progress display and are about the libraries'
    internals, not about anything a user of the installer can act on.
    """
    hf_logging: Any = importlib.import_module("transformers.utils.logging")
    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    root_level = logging.getLogger().level
    hf_logging.set_verbosity(logging.ERROR)
    hf_logging.disable_progress_bar()
    logging.getLogger().setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
        logging.getLogger().setLevel(root_level)


def library_versions(names: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "missing"
    return found


def deriver_for(method: str) -> Deriver:
    # imported lazily: both modules are cheap to import, but keeping this a plain dispatch lets a
    # new method be one new file plus one line here
    if method == "gguf_to_hf":
        from models.convert import GgufToHf

        return GgufToHf()
    if method == "onnx_export":
        from models.export_onnx import OnnxExport

        return OnnxExport()
    raise DeriveError(f"unknown derivation method {method!r}")
