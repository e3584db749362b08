"""Hugging Face sources, resolved from a cache folder laid out as huggingface_hub lays it out.

The hub itself cannot be reached here, so only cache resolution is exercised; a cache miss is
tested offline, where it must fail with a clear message instead of trying the network.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from models.fetch import FetchError
from models.fetch_hf import resolve_cached
from models.installer import Installer
from models.manifest import artifact_path, load_manifest
from tests.models.conftest import sha, write_manifest

COMMIT = "0123456789abcdef0123456789abcdef01234567"
DATA = b"GGUF from the hub cache"


def _hf_cache(root: Path) -> Path:
    repo = root / "models--acme--tiny-coder"
    (repo / "blobs").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "snapshots" / COMMIT).mkdir(parents=True)
    blob = repo / "blobs" / sha(DATA)
    blob.write_bytes(DATA)
    (repo / "snapshots" / COMMIT / "tiny.Q4.gguf").symlink_to(blob)
    (repo / "refs" / "main").write_text(COMMIT)
    return root


def _manifest(tmp_path: Path, revision: str, filename: str = "tiny.Q4.gguf") -> Path:
    return write_manifest(
        tmp_path / "hf.yaml",
        f"""
models:
  - name: tiny-coder
    kind: gguf
    source: {{hf: {{repo: acme/tiny-coder, revision: "{revision}"}}}}
    files: {{"{filename}": {sha(DATA)}}}
""",
    )


def test_resolution_follows_refs_and_commits(tmp_path: Path) -> None:
    cache = _hf_cache(tmp_path / "hub")
    by_ref = resolve_cached(cache, "acme/tiny-coder", "main", "tiny.Q4.gguf")
    by_commit = resolve_cached(cache, "acme/tiny-coder", COMMIT, "tiny.Q4.gguf")
    assert by_ref is not None and by_ref == by_commit
    assert resolve_cached(cache, "acme/tiny-coder", "v2", "tiny.Q4.gguf") is None
    assert resolve_cached(cache, "acme/other", "main", "tiny.Q4.gguf") is None


@pytest.mark.parametrize("revision", ["main", COMMIT])
def test_install_from_hf_cache_copies_the_blob(tmp_path: Path, models_tmp: Path, revision: str) -> None:
    cache = _hf_cache(tmp_path / "hub")
    m = load_manifest(_manifest(tmp_path, revision))
    Installer(m, models_tmp, hf_cache=cache, offline=True).install(["tiny-coder"])
    path = artifact_path("tiny-coder", models_tmp, manifest=m)
    assert not path.is_symlink() and path.read_bytes() == DATA


def test_cache_miss_offline_is_a_clear_error(tmp_path: Path, models_tmp: Path) -> None:
    cache = _hf_cache(tmp_path / "hub")
    m = load_manifest(_manifest(tmp_path, "main", filename="absent.gguf"))
    with pytest.raises(FetchError, match=r"acme/tiny-coder@main/absent\.gguf is not in the Hugging Face"):
        Installer(m, models_tmp, hf_cache=cache, offline=True).install(["tiny-coder"])
    assert [p.name for p in models_tmp.iterdir() if not p.name.endswith(".lock")] == []
