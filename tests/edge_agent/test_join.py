"""What ``edge-agent join`` leaves behind is what ``edge-agent serve`` uses, unless told otherwise."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from edge_agent.cli import build_parser, settings_from_args
from edge_agent.join import JOINED_FILE, Joined, JoinError, join
from shared.config import EdgeSettings
from shared.invite import InviteToken, encode_token, new_secret


def _joined(home: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    record = Joined("tcp://hub.example:5555", "keys/hub.key", "abc", name="till")
    (home / JOINED_FILE).write_bytes(msgspec.json.encode(record))


def _serve(*argv: str) -> EdgeSettings:
    return settings_from_args(build_parser().parse_args(["serve", *argv]))


def test_serve_takes_the_joined_hub_when_given_none(tmp_path: Path) -> None:
    _joined(tmp_path)
    settings = _serve("--home", str(tmp_path))
    assert settings.hub_url == "tcp://hub.example:5555"
    assert settings.hub_public_key_file == tmp_path / "keys" / "hub.key"


def test_flags_win_over_what_join_recorded(tmp_path: Path) -> None:
    _joined(tmp_path)
    settings = _serve("--home", str(tmp_path), "--hub", "tcp://10.0.0.9:6000", "--hub-key", "/k/hub.key")
    assert settings.hub_url == "tcp://10.0.0.9:6000" and settings.hub_public_key_file == Path("/k/hub.key")


def test_without_a_join_nothing_changes(tmp_path: Path) -> None:
    settings = _serve("--home", str(tmp_path))
    assert settings.hub_url is None and settings.hub_public_key_file is None


def test_a_damaged_record_is_reported(tmp_path: Path) -> None:
    (tmp_path / JOINED_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="join"):
        _serve("--home", str(tmp_path))


def test_join_needs_a_hub_endpoint_and_a_live_token(tmp_path: Path) -> None:
    key = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"  # any valid Z85 key
    no_hub = encode_token(InviteToken(key, "id", new_secret(), 4e9))
    with pytest.raises(JoinError, match="--hub"):
        join(tmp_path, no_hub)
    stale = encode_token(InviteToken(key, "id", new_secret(), 1.0, hub="tcp://127.0.0.1:9"))
    with pytest.raises(JoinError, match="expired"):
        join(tmp_path, stale)
    assert not (tmp_path / JOINED_FILE).exists()
