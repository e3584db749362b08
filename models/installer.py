"""Install, verify and re-derive model artifacts in a models directory.

Every artifact is built in a staging folder beside its final place, verified, stamped and only then
renamed into ``<models_dir>/<name>``, so programs never see a half-written model. A per-model lock
file lets several installers (two ``make models`` at once) share one directory safely.
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from models.derive import DeriveError, deriver_for, library_versions, quiet_libraries
from models.fetch import FetchError, Reporter, fetcher_for
from models.fetch_local import origin_snapshot
from models.manifest import Manifest, ModelEntry
from models.stamp import (
    Derivation,
    FileRecord,
    Stamp,
    list_files,
    read_stamp,
    record,
    remove_stamp,
    sha256_file,
    spec_digest,
    unchanged,
    write_stamp,
)


class InstallError(RuntimeError):
    """An artifact could not be installed; nothing partial was left behind."""


class ChecksumMismatch(InstallError):
    pass


class Action(StrEnum):
    PRESENT = "present"  # stamp and files matched: no work
    ADOPTED = "adopted"  # files were already there without a stamp and hashed correctly
    INSTALLED = "installed"


@dataclass(frozen=True)
class Outcome:
    name: str
    action: Action
    path: Path


class SilentReporter:
    def status(self, text: str) -> None:
        pass

    def bytes(self, text: str, total: int) -> _Ignore:
        return _Ignore()


class _Ignore:
    def __call__(self, n: int) -> None:
        pass


class Installer:
    def __init__(
        self,
        manifest: Manifest,
        models_dir: Path,
        *,
        report: Reporter | None = None,
        hf_cache: Path | None = None,
        offline: bool = False,
        wheel_dir: Path | None = None,
        rehash: bool = False,
    ) -> None:
        self.manifest = manifest
        self.models_dir = models_dir
        self._report: Reporter = report if report is not None else SilentReporter()
        self._hf_cache = hf_cache
        self._offline = offline
        self._wheel_dir = wheel_dir
        # re-hash every file even when size and mtime match (catches in-place bit rot)
        self._rehash = rehash

    def expand(self, names: list[str]) -> list[str]:
        out: list[str] = []
        for n in names or ["default"]:
            picked = (
                self.manifest.default
                if n == "default"
                else sorted(self.manifest.models)
                if n == "all"
                else [self.manifest.get(n).name]
            )
            out.extend(p for p in picked if p not in out)
        return out

    def install(self, names: list[str]) -> list[Outcome]:
        return [self.ensure(entry) for entry in self.manifest.closure(self.expand(names))]

    def ensure(self, entry: ModelEntry) -> Outcome:
        """Make ``entry`` present and verified; derivation inputs must already be ensured."""
        folder = self.models_dir / entry.name
        with self._lock(entry.name):
            self._sweep(entry.name)
            expected = self._expected_derivation(entry)
            if self._verify(entry, folder, expected):
                return Outcome(entry.name, Action.PRESENT, folder)
            if self._adopt(entry, folder):
                return Outcome(entry.name, Action.ADOPTED, folder)
            # an install that no longer verifies must stop counting as installed before rebuilding
            remove_stamp(folder)
            self._build(entry, folder, expected)
            return Outcome(entry.name, Action.INSTALLED, folder)

    @contextmanager
    def _lock(self, name: str) -> Iterator[None]:
        self.models_dir.mkdir(parents=True, exist_ok=True)
        with (self.models_dir / f".{name}.lock").open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _sweep(self, name: str) -> None:
        """Remove what a killed installer of ``name`` left behind; safe because we hold its lock."""
        pattern = re.compile(rf"^\.(staging|trash)-{re.escape(name)}-[0-9a-f]{{8}}$")
        for leftover in self.models_dir.iterdir():
            if pattern.match(leftover.name):
                shutil.rmtree(leftover, ignore_errors=True)

    def _expected_derivation(self, entry: ModelEntry) -> Derivation | None:
        if entry.derive is None:
            return None
        src_stamp = read_stamp(self.models_dir / entry.derive.input)
        if src_stamp is None:
            raise InstallError(f"{entry.name}: input {entry.derive.input!r} is not installed")
        return Derivation(
            method=entry.derive.method,
            input=entry.derive.input,
            input_files=src_stamp.digests(),
            options=dict(entry.derive.options),
            libraries={},
        )

    def _verify(self, entry: ModelEntry, folder: Path, expected: Derivation | None) -> bool:
        stamp = read_stamp(folder)
        if stamp is None or stamp.spec != spec_digest(entry):
            return False
        if entry.pinned and set(stamp.files) != set(entry.files):
            return False
        if expected is not None and (
            stamp.derived is None or stamp.derived.input_files != expected.input_files
        ):
            return False
        if stamp.origin != origin_snapshot(entry):
            return False
        fresh: dict[str, FileRecord] = {}
        for rel, rec in stamp.files.items():
            path = folder / rel
            if not self._rehash and unchanged(path, rec):
                fresh[rel] = rec
                continue
            if not path.is_file():
                return False
            digest = self._hash(path)
            if digest != (entry.files.get(rel) or rec.sha256):
                return False
            fresh[rel] = record(path, digest)
        if fresh != stamp.files:
            write_stamp(folder, Stamp(stamp.name, stamp.spec, fresh, stamp.derived, stamp.origin))
        return True

    def _adopt(self, entry: ModelEntry, folder: Path) -> bool:
        """Accept pinned files that hash right although the stamp is missing or from another spec.

        Files put in place by hand, or an entry whose source moved (PyPI → HF) with the same pins,
        cost one hash instead of a download.
        """
        if entry.source is None or not entry.pinned:
            return False
        if not all((folder / rel).is_file() for rel in entry.files):
            return False
        records: dict[str, FileRecord] = {}
        for rel, want in entry.files.items():
            digest = self._hash(folder / rel)
            if digest != want:
                return False
            records[rel] = record(folder / rel, digest)
        write_stamp(folder, Stamp(entry.name, spec_digest(entry), records))
        return True

    def _hash(self, path: Path) -> str:
        return sha256_file(path, self._report.bytes(f"sha256 {path.name}", path.stat().st_size))

    def _build(self, entry: ModelEntry, folder: Path, expected: Derivation | None) -> None:
        staging = self.models_dir / f".staging-{entry.name}-{secrets.token_hex(4)}"
        staging.mkdir()
        try:
            origin = origin_snapshot(entry)  # before copying: an edit during the copy shows up next time
            derived = self._produce(entry, staging, expected)
            records = self._check(entry, staging)
            write_stamp(staging, Stamp(entry.name, spec_digest(entry), records, derived, origin))
            self._swap(staging, folder)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def _produce(self, entry: ModelEntry, staging: Path, expected: Derivation | None) -> Derivation | None:
        if entry.derive is None:
            self._report.status(f"fetch {entry.name}")
            fetch = fetcher_for(
                entry, hf_cache=self._hf_cache, offline=self._offline, wheel_dir=self._wheel_dir
            )
            try:
                fetch.fetch(entry, staging, self._report)
            except OSError as exc:
                raise FetchError(f"{entry.name}: {exc}") from exc
            return None
        assert expected is not None
        deriver = deriver_for(entry.derive.method)
        src = self.manifest.get(entry.derive.input).artifact(self.models_dir)
        self._report.status(f"{entry.derive.method}: {entry.derive.input} → {entry.name}")
        try:
            with quiet_libraries():
                deriver.derive(src, staging, entry.derive.options)
        except DeriveError:
            raise
        except Exception as exc:
            raise DeriveError(f"{entry.name}: {entry.derive.method} failed: {exc}") from exc
        return Derivation(
            method=expected.method,
            input=expected.input,
            input_files=expected.input_files,
            options=expected.options,
            libraries=library_versions(deriver.libraries()),
        )

    def _check(self, entry: ModelEntry, staging: Path) -> dict[str, FileRecord]:
        present = list_files(staging)
        missing = [rel for rel in entry.files if rel not in present]
        if missing:
            raise InstallError(f"{entry.name}: source did not produce {', '.join(missing)}")
        records: dict[str, FileRecord] = {}
        for rel in present:
            digest = self._hash(staging / rel)
            want = entry.files.get(rel)
            if want is not None and digest != want:
                raise ChecksumMismatch(
                    f"{entry.name}/{rel}: sha256 {digest} does not match the pinned {want};"
                    " the download was discarded"
                )
            records[rel] = record(staging / rel, digest)
        return records

    def _swap(self, staging: Path, folder: Path) -> None:
        if not folder.exists():
            os.rename(staging, folder)
            return
        trash = self.models_dir / f".trash-{folder.name}-{secrets.token_hex(4)}"
        os.rename(folder, trash)
        os.rename(staging, folder)
        # a running program may still map the old files: unlinking them is safe on POSIX
        shutil.rmtree(trash, ignore_errors=True)
