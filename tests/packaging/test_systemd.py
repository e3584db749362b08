"""The systemd units, checked with systemd's own tools (Debian's ``systemd`` package): ``verify``
must print nothing, ``security --offline`` must rate them well hardened, and their commands must
parse with the real CLI parsers."""

from __future__ import annotations

import configparser
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cloud_hub.cli import build_parser as hub_parser
from edge_agent.cli import build_parser as edge_parser

ROOT = Path(__file__).resolve().parents[2]
UNITS = ("edgeroute-edge.service", "edgeroute-hub.service")
INSTALLED_BIN = "/opt/edgeroute/.venv/bin/"  # where the units expect the install; see below
MAX_EXPOSURE = 20  # `systemd-analyze security` tenths: 2.0 of 10, its "OK" band


@pytest.fixture(scope="module")
def analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", "systemd"], check=False, timeout=600
        )
        found = shutil.which("systemd-analyze")
    if found is None:
        pytest.skip("systemd-analyze is missing and cannot be installed here (needs root and apt-get)")
    return found


def _staged(tmp_path: Path, name: str, text: str | None = None) -> Path:
    """The unit with its install prefix replaced by this interpreter's bin (verify checks that the
    ExecStart program exists, and this checkout is not installed under /opt)."""
    text = text if text is not None else (ROOT / "packaging" / "systemd" / name).read_text()
    staged = tmp_path / name
    staged.write_text(text.replace(INSTALLED_BIN, f"{Path(sys.executable).parent}/"))
    return staged


def _service(name: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((ROOT / "packaging" / "systemd" / name).read_text())
    return parser["Service"]


@pytest.mark.parametrize("name", UNITS)
def test_unit_verifies_without_a_word(analyze: str, tmp_path: Path, name: str) -> None:
    done = subprocess.run([analyze, "verify", str(_staged(tmp_path, name))], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout + done.stderr == "", done.stderr


@pytest.mark.parametrize("name", UNITS)
def test_unit_is_hardened(analyze: str, tmp_path: Path, name: str) -> None:
    unit = _staged(tmp_path, name)
    done = subprocess.run(
        [analyze, "security", "--offline=yes", f"--threshold={MAX_EXPOSURE}", str(unit)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    service = _service(name)
    assert service["User"] == "edgeroute"
    for key, value in (
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("CapabilityBoundingSet", ""),
    ):
        assert service[key] == value, key
    home = shlex.split(service["ExecStart"])[shlex.split(service["ExecStart"]).index("--home") + 1]
    writable = service["ReadWritePaths"].split()
    assert any(home.startswith(path.rstrip("/") + "/") for path in writable)


def test_the_checks_fail_on_a_broken_or_bare_unit(analyze: str, tmp_path: Path) -> None:
    broken = "[Service]\nExecStart=/bin/true\nProtectSystem=sometimes\nNoSuchSetting=1\n"
    done = subprocess.run(
        [analyze, "verify", str(_staged(tmp_path, "broken.service", broken))], capture_output=True, text=True
    )
    assert "NoSuchSetting" in done.stderr and "protect system value" in done.stderr
    bare = _staged(tmp_path, "bare.service", "[Service]\nExecStart=/bin/true\n")
    rated = subprocess.run(
        [analyze, "security", "--offline=yes", f"--threshold={MAX_EXPOSURE}", str(bare)],
        capture_output=True,
        text=True,
    )
    assert rated.returncode != 0


@pytest.mark.parametrize("name", UNITS)
def test_exec_start_parses_with_the_real_cli(name: str) -> None:
    program, *argv = shlex.split(_service(name)["ExecStart"])
    assert program.startswith(INSTALLED_BIN)
    parser = {"edge-agent": edge_parser, "cloud-hub": hub_parser}[Path(program).name]()
    parser.parse_args(argv)
