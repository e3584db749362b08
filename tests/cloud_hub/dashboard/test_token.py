"""The dashboard token: written once by ``cloud-hub keys init``, private, required by ``serve``."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from cloud_hub.cli import build_parser, main
from cloud_hub.dashboard.serving import dashboard_options
from cloud_hub.dashboard.token import TokenError, bearer_matches, load_token, token_path


def test_keys_init_writes_a_private_token_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "hub"
    assert main(["keys", "init", "--home", str(home)]) == 0
    path = token_path(home)
    assert f"dashboard token: {path}" in capsys.readouterr().out
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = load_token(home)
    assert len(token) >= 32
    assert main(["keys", "init", "--home", str(home)]) == 0
    assert load_token(home) == token  # bookmarked URLs keep working
    other = tmp_path / "other"
    assert main(["keys", "init", "--home", str(other)]) == 0
    assert load_token(other) != token
    assert not list(home.glob(".dashboard.token.*"))  # no scratch file left behind


def test_a_token_others_can_read_or_an_empty_one_is_refused(tmp_path: Path) -> None:
    path = token_path(tmp_path)
    with pytest.raises(TokenError, match="cannot read"):
        load_token(tmp_path)
    path.write_text("a" * 40)
    path.chmod(0o644)
    with pytest.raises(TokenError, match="readable by other users"):
        load_token(tmp_path)
    path.chmod(0o600)
    assert load_token(tmp_path) == "a" * 40
    path.write_text("short\n")
    with pytest.raises(TokenError, match="no usable token"):
        load_token(tmp_path)
    # keys init will not paper over a broken token file either
    assert main(["keys", "init", "--home", str(tmp_path)]) == 1


def test_bearer_header_matching() -> None:
    token = "s3cret-token-value-0123456789"
    assert bearer_matches(f"Bearer {token}", token)
    assert bearer_matches(f"bearer {token}", token)
    for header in (None, "", token, f"Basic {token}", f"Bearer {token}x", f"Bearer {token[:-1]}", "Bearer "):
        assert not bearer_matches(header, token), header


def test_serve_refuses_a_dashboard_without_a_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "hub"
    assert main(["keys", "init", "--home", str(home)]) == 0
    token_path(home).unlink()
    args = ["serve", "--home", str(home), "--bind", "tcp://127.0.0.1:0", "--dashboard-port", "0"]
    assert main(args) == 2
    assert "dashboard.token" in capsys.readouterr().out
    assert main(["keys", "init", "--home", str(home)]) == 0  # writes a fresh one
    assert main([*args[:-1], "70000"]) == 2
    assert "not a TCP port" in capsys.readouterr().out


def test_dashboard_flags(tmp_path: Path) -> None:
    assert main(["keys", "init", "--home", str(tmp_path)]) == 0
    parser = build_parser()
    assert dashboard_options(parser.parse_args(["serve", "--home", str(tmp_path)]), tmp_path) is None
    opts = dashboard_options(parser.parse_args(["serve", "--dashboard-port", "0"]), tmp_path)
    assert opts is not None and (opts.host, opts.port) == ("127.0.0.1", 0)
    assert opts.token == load_token(tmp_path)
    wide = parser.parse_args(["serve", "--dashboard-port", "8081", "--dashboard-host", "0.0.0.0"])
    opts = dashboard_options(wide, tmp_path)
    assert opts is not None and (opts.host, opts.port) == ("0.0.0.0", 8081)
