from __future__ import annotations

from pathlib import Path

import pytest

from cloud_hub.cli import SUBCOMMANDS, build_parser, main
from shared.keys import init_keys, key_paths


def test_subcommands_resolve_to_their_modules() -> None:
    from cloud_hub.commands import enroll, keys, serve

    parser = build_parser()
    assert parser.parse_args(["serve", "--home", "h"])._run is serve.run
    assert parser.parse_args(["keys", "init", "--home", "h"])._run is keys.run
    assert parser.parse_args(["enroll", "--home", "h", "k.key"])._run is enroll.run
    assert [name for name, _ in SUBCOMMANDS[:3]] == ["keys", "enroll", "serve"]


def test_keys_init_is_idempotent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "init", "--home", str(tmp_path)]) == 0
    public, secret = key_paths(tmp_path / "keys")
    before = secret.read_bytes()
    assert main(["keys", "init", "--home", str(tmp_path)]) == 0
    assert secret.read_bytes() == before
    assert str(public) in capsys.readouterr().out


def test_enroll(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    edge_public, _ = init_keys(tmp_path / "edge")
    assert main(["enroll", "--home", str(tmp_path / "hub"), str(edge_public)]) == 0
    assert len(list((tmp_path / "hub" / "enrolled").glob("*.key"))) == 1
    assert main(["enroll", "--home", str(tmp_path / "hub"), str(tmp_path / "nope.key")]) == 1
    assert "cannot read public key" in capsys.readouterr().out


def test_serve_refuses_without_keys_or_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--home", str(tmp_path), "--bind", "tcp://127.0.0.1:0"]) == 2
    assert "cloud-hub keys init" in capsys.readouterr().out
    assert main(["serve", "--home", str(tmp_path), "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "not found" in capsys.readouterr().out
    init_keys(tmp_path / "keys")
    assert main(["serve", "--home", str(tmp_path), "--telemetry-sink", "no_such_module:factory"]) == 2
    assert "telemetry sink" in capsys.readouterr().out
