from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_manifest(path: Path, body: str) -> Path:
    path.write_text(body, encoding="utf-8")
    return path


def make_wheel(folder: Path, dist: str, version: str, members: dict[str, bytes]) -> Path:
    """A real wheel file (a zip with the wheel naming convention) holding ``members``."""
    norm = dist.replace("-", "_")
    path = folder / f"{norm}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        zf.writestr(f"{norm}-{version}.dist-info/METADATA", f"Name: {dist}\nVersion: {version}\n")
    return path


@pytest.fixture
def models_tmp(tmp_path: Path) -> Path:
    d = tmp_path / "models"
    d.mkdir()
    return d
