"""A file or folder already on this machine (a fine-tune, a model copied in by hand).

It is copied, not linked, so the installed artifact stays verifiable when the original is edited.
"""

from __future__ import annotations

from pathlib import Path

from models.fetch import FetchError, Reporter, copy_stream
from models.manifest import ModelEntry
from models.stamp import list_files


def origin_snapshot(entry: ModelEntry) -> dict[str, tuple[int, int]] | None:
    """Size and mtime of an unpinned local source's files; ``None`` when the pins already decide."""
    if entry.source is None or entry.source.local is None or entry.pinned:
        return None
    src = entry.source.local.path
    if src.is_file():
        files = {src.name: src}
    elif src.is_dir():
        files = {rel: src / rel for rel in (list(entry.files) or list_files(src))}
    else:
        return {}
    snap: dict[str, tuple[int, int]] = {}
    for rel, path in files.items():
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        snap[rel] = (st.st_size, st.st_mtime_ns)
    return snap


class LocalFetcher:
    def fetch(self, entry: ModelEntry, staging: Path, report: Reporter) -> None:
        assert entry.source is not None and entry.source.local is not None
        src = entry.source.local.path
        plan: list[tuple[Path, str]]
        if src.is_file():
            if len(entry.files) > 1:
                raise FetchError(f"{entry.name}: {src} is one file but the entry lists {len(entry.files)}")
            plan = [(src, next(iter(entry.files), src.name))]
        elif src.is_dir():
            names = list(entry.files) or list_files(src)
            missing = [n for n in names if not (src / n).is_file()]
            if missing:
                raise FetchError(f"{entry.name}: missing in {src}: {', '.join(missing)}")
            if not names:
                raise FetchError(f"{entry.name}: {src} is empty")
            plan = [(src / n, n) for n in names]
        else:
            raise FetchError(f"{entry.name}: local path {src} does not exist")
        advance = report.bytes(f"copy {entry.name}", sum(p.stat().st_size for p, _ in plan))
        for path, rel in plan:
            copy_stream(path, staging / rel, advance)
