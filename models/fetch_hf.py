"""Files from a Hugging Face repository, taken from the local HF cache when they are already there.

Resolution follows the hub cache layout (``models--org--name/refs/<rev>`` holds a commit,
``snapshots/<commit>/<file>`` the file), so a cache filled on another machine and copied here works
without ``huggingface_hub`` or a network. Only a miss calls ``huggingface_hub.hf_hub_download``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from models.fetch import FetchError, Reporter, copy_stream
from models.manifest import HfSource, ModelEntry

_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def default_cache() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME")
    return (Path(home) if home else Path.home() / ".cache" / "huggingface") / "hub"


def resolve_cached(cache: Path, repo: str, revision: str, filename: str) -> Path | None:
    """The cached file for ``repo@revision``, or ``None`` when it is not in ``cache``."""
    root = cache / ("models--" + repo.replace("/", "--"))
    commit = revision
    if not _COMMIT.fullmatch(revision):
        ref = root / "refs" / revision
        if not ref.is_file():
            return None
        commit = ref.read_text(encoding="utf-8").strip()
    candidate = root / "snapshots" / commit / filename
    return candidate if candidate.is_file() else None


class HfFetcher:
    def __init__(self, *, cache_dir: Path | None = None, offline: bool = False) -> None:
        self._cache = cache_dir
        self._offline = offline

    def _locate(self, source: HfSource, filename: str, report: Reporter) -> Path:
        cache = self._cache or default_cache()
        hit = resolve_cached(cache, source.repo, source.revision, filename)
        if hit is not None:
            return hit
        where = f"{source.repo}@{source.revision}/{filename}"
        if self._offline:
            raise FetchError(f"offline and {where} is not in the Hugging Face cache {cache}")
        try:
            from huggingface_hub import hf_hub_download
        except ImportError:
            raise FetchError(
                f"{where} is not cached in {cache} and huggingface_hub is not installed"
            ) from None
        report.status(f"download {where}")
        try:
            got = hf_hub_download(
                repo_id=source.repo, filename=filename, revision=source.revision, cache_dir=cache
            )
        except Exception as exc:  # the hub client raises many unrelated types for one failure
            raise FetchError(f"could not download {where}: {exc}") from exc
        return Path(got)

    def fetch(self, entry: ModelEntry, staging: Path, report: Reporter) -> None:
        assert entry.source is not None and entry.source.hf is not None
        located = {rel: self._locate(entry.source.hf, rel, report) for rel in entry.files}
        advance = report.bytes(f"copy {entry.name}", sum(p.stat().st_size for p in located.values()))
        for rel, path in located.items():
            # cache entries are symlinks into blobs/: copy the bytes, not the link
            copy_stream(path.resolve(), staging / rel, advance)
