"""Text plumbing for token streams: stop sequences and locating GGUF files.

Kept apart from the llama.cpp backend so the rules are testable without a model.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path


class StopScanner:
    """Cuts a token stream at the first stop sequence.

    Text that could be the start of a stop sequence is held back until the next piece decides it,
    so a client never sees the first half of a stop string.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = [s for s in stops if s]
        self._pending = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """Add ``text``; return what can be released now and whether a stop sequence was hit."""
        buf = self._pending + text
        if not self._stops:
            self._pending = ""
            return buf, False
        cut = self._first_stop(buf)
        if cut is not None:
            self._pending = ""
            return buf[:cut], True
        keep = self._partial_suffix(buf)
        self._pending = buf[len(buf) - keep :] if keep else ""
        return buf[: len(buf) - keep], False

    def flush(self, text: str = "") -> tuple[str, bool]:
        """Release everything held back (the stream ended)."""
        buf = self._pending + text
        self._pending = ""
        cut = self._first_stop(buf)
        if cut is not None:
            return buf[:cut], True
        return buf, False

    def _first_stop(self, buf: str) -> int | None:
        hits = [i for i in (buf.find(s) for s in self._stops) if i >= 0]
        return min(hits) if hits else None

    def _partial_suffix(self, buf: str) -> int:
        keep = 0
        for stop in self._stops:
            for k in range(min(len(stop) - 1, len(buf)), keep, -1):
                if buf.endswith(stop[:k]):
                    keep = k
                    break
        return keep


def resolve_gguf(name_or_path: str | Path, search_dirs: Iterable[Path]) -> Path:
    """Find a GGUF file from a path, or from a model name installed as ``<dir>/<name>/*.gguf``."""
    direct = Path(name_or_path).expanduser()
    if direct.is_file():
        return direct
    tried: list[str] = []
    for base in search_dirs:
        candidate = base / str(name_or_path)
        tried.append(str(candidate))
        if candidate.is_file():
            return candidate
        if candidate.is_dir():
            ggufs = sorted(candidate.rglob("*.gguf"))
            if len(ggufs) == 1:
                return ggufs[0]
            if len(ggufs) > 1:
                raise FileNotFoundError(
                    f"{candidate} holds several GGUF files ({', '.join(p.name for p in ggufs)}); "
                    "name one with local_model.path"
                )
    raise FileNotFoundError(
        f"no GGUF model {str(name_or_path)!r} (looked in {', '.join(tried) or 'no directories'}); "
        f"install it with `edgeroute-models install {name_or_path}` or pass a .gguf path"
    )
