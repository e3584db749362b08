from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.backends.text import StopScanner, resolve_gguf


def _run(stops: list[str], pieces: list[str]) -> tuple[list[str], bool]:
    scanner = StopScanner(stops)
    out: list[str] = []
    for piece in pieces:
        text, hit = scanner.feed(piece)
        out.append(text)
        if hit:
            return out, True
    tail, hit = scanner.flush()
    out.append(tail)
    return out, hit


def test_stop_split_across_pieces_is_never_released() -> None:
    out, hit = _run(["END"], ["abc E", "N", "D tail"])
    assert hit
    assert "".join(out) == "abc "
    assert out[0] == "abc "  # "E" was held back until the next piece decided it


def test_false_alarm_is_released_later() -> None:
    out, hit = _run(["END"], ["abc E", "x"])
    assert not hit
    assert out == ["abc ", "Ex", ""]


def test_earliest_of_several_stops_wins() -> None:
    out, hit = _run(["world", "lo w"], ["hello world"])
    assert hit and "".join(out) == "hel"


def test_held_back_text_is_flushed_at_the_end() -> None:
    out, hit = _run(["</s>"], ["done </"])
    assert not hit and "".join(out) == "done </"


def test_no_stops_passes_everything() -> None:
    out, hit = _run([], ["a", "b"])
    assert not hit and "".join(out) == "ab"


def test_resolve_gguf_from_dir_and_path(tmp_path: Path) -> None:
    model = tmp_path / "tiny" / "weights.gguf"
    model.parent.mkdir()
    model.write_bytes(b"GGUF")
    assert resolve_gguf("tiny", [tmp_path]) == model
    assert resolve_gguf(model, []) == model
    with pytest.raises(FileNotFoundError, match="edgeroute-models install missing"):
        resolve_gguf("missing", [tmp_path])
    (tmp_path / "tiny" / "other.gguf").write_bytes(b"GGUF")
    with pytest.raises(FileNotFoundError, match="several GGUF files"):
        resolve_gguf("tiny", [tmp_path])
