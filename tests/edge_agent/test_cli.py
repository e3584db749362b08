"""``edge-agent`` as a user runs it: a subprocess, real keys, a real model, real HTTP."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from edge_agent.cli import build_parser, settings_from_args
from shared.keys import load_public
from shared.procs import ChildProcess

EDGE_CLI = Path(sys.executable).with_name("edge-agent")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(EDGE_CLI), *args], capture_output=True, text=True, timeout=120, check=False)


def test_keys_init_prints_public_key_and_is_idempotent(tmp_path: Path) -> None:
    first = _run("keys", "init", "--home", str(tmp_path))
    assert first.returncode == 0, first.stderr
    public = Path(first.stdout.strip())
    assert public.is_file() and public.parent == tmp_path / "keys"
    assert len(load_public(public)) == 40
    again = _run("keys", "init", "--home", str(tmp_path))
    assert again.stdout.strip() == str(public)
    assert load_public(public) == load_public(Path(again.stdout.strip()))


def test_serve_flags_override_config(tmp_path: Path) -> None:
    config = tmp_path / "edge.yaml"
    config.write_text("port: 9000\nconfidence_threshold: 0.4\nlocal_model:\n  n_ctx: 1024\n")
    args = build_parser().parse_args(
        ["serve", "--home", str(tmp_path), "--port", "9100", "--config", str(config), "--model", "/m/x.gguf"]
    )
    settings = settings_from_args(args)
    assert settings.port == 9100 and settings.confidence_threshold == 0.4
    assert settings.local_model.path == Path("/m/x.gguf") and settings.local_model.n_ctx == 1024
    assert settings.home == tmp_path


def test_serve_answers_and_stops_cleanly(tmp_path: Path, smollm_gguf: Path) -> None:
    argv = [str(EDGE_CLI), "serve", "--home", str(tmp_path), "--port", "0", "--model", str(smollm_gguf)]
    with ChildProcess("agent", argv, tmp_path / "agent.log", ready_prefix="edge agent ready on ") as proc:
        url = proc.start(timeout_s=120)
        assert url.startswith("http://127.0.0.1:"), proc.output()
        assert httpx.get(f"{url}/health").json()["model"] == smollm_gguf.stem
        body = {"model": "auto", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
        answer = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=120)
        assert answer.status_code == 200 and answer.headers["x-edgeroute-route"] == "edge_local"
        assert proc.stop(grace_s=60) == 0  # SIGTERM: a clean exit, not the SIGKILL after the grace


def test_serve_reports_a_missing_model(tmp_path: Path) -> None:
    result = _run("serve", "--home", str(tmp_path), "--port", "0", "--model", "no-such-model")
    assert result.returncode == 2
    assert "no-such-model" in result.stderr


def test_bench_gen_is_dispatched() -> None:
    result = _run("bench", "gen", "--help")
    assert result.returncode == 0, result.stderr
    assert "--max-tokens" in result.stdout
