"""Install stamps: what was installed, and a cheap way to tell that it has not changed since.

A stamp (``<models_dir>/<name>/.edgeroute-stamp.json``) records every file's SHA-256 with the size and
modification time it had when hashed. A later check compares only size and mtime and re-hashes a file
only when those moved, so an up-to-date install is verified in microseconds, not seconds per GB.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from models.manifest import STAMP_NAME, ModelEntry

_CHUNK = 1 << 20


class FileRecord(msgspec.Struct, frozen=True):
    sha256: str
    size: int
    mtime_ns: int


class Derivation(msgspec.Struct, frozen=True):
    method: str
    input: str
    input_files: dict[str, str]
    options: dict[str, Any]
    libraries: dict[str, str]


class Stamp(msgspec.Struct, frozen=True):
    name: str
    spec: str
    files: dict[str, FileRecord]
    derived: Derivation | None = None
    # unpinned local sources: (size, mtime_ns) of each source file, so an edited original is re-copied
    origin: dict[str, tuple[int, int]] | None = None
    format: int = 1

    def digests(self) -> dict[str, str]:
        return {rel: rec.sha256 for rel, rec in self.files.items()}


def spec_digest(entry: ModelEntry) -> str:
    """Changes with anything that shapes the bytes (pins, source, options), not with the prose."""
    shape = entry.model_dump_json(exclude={"description", "license"})
    return hashlib.sha256(shape.encode()).hexdigest()


def sha256_file(path: Path, on_bytes: Callable[[int], None] | None = None) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            if on_bytes is not None:
                on_bytes(len(chunk))
    return h.hexdigest()


def record(path: Path, sha256: str) -> FileRecord:
    st = path.stat()
    return FileRecord(sha256=sha256, size=st.st_size, mtime_ns=st.st_mtime_ns)


def unchanged(path: Path, rec: FileRecord) -> bool:
    try:
        st = path.stat()
    except FileNotFoundError:
        return False
    return st.st_size == rec.size and st.st_mtime_ns == rec.mtime_ns


def list_files(folder: Path) -> list[str]:
    """Every regular file under ``folder`` as a sorted relative POSIX path, the stamp excluded."""
    out = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and not p.is_symlink()]
    return sorted(r for r in out if r != STAMP_NAME)


def read_stamp(folder: Path) -> Stamp | None:
    try:
        data = (folder / STAMP_NAME).read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        return msgspec.json.decode(data, type=Stamp)
    except msgspec.DecodeError:
        # a damaged stamp only costs a re-verification
        return None


def write_stamp(folder: Path, stamp: Stamp) -> None:
    tmp = folder / f"{STAMP_NAME}.tmp"
    tmp.write_bytes(msgspec.json.format(msgspec.json.encode(stamp)))
    os.replace(tmp, folder / STAMP_NAME)


def remove_stamp(folder: Path) -> None:
    (folder / STAMP_NAME).unlink(missing_ok=True)


def stamp_json(stamp: Stamp) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(msgspec.json.encode(stamp))
    return decoded
