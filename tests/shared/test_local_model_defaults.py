"""The edge's default local model, and the thread count of llama.cpp models on edge and hub."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from models.manifest import Kind, load_manifest
from shared.config import EdgeSettings, HubModelEntry, HubSettings, LocalModelConfig, default_threads


def test_the_default_edge_model_is_an_installable_gguf_unlike_the_hub_default() -> None:
    name = LocalModelConfig().name
    assert name == "smollm2-135m-instruct"
    assert load_manifest().get(name).kind is Kind.GGUF
    assert name != HubSettings().default_model
    assert EdgeSettings().local_model.name == name


@pytest.mark.parametrize(("cores", "threads"), [(1, 1), (2, 1), (3, 1), (8, 4), (16, 8)])
def test_threads_default_to_half_the_cores_this_process_may_use(
    monkeypatch: pytest.MonkeyPatch, cores: int, threads: int
) -> None:
    monkeypatch.setattr("shared.config.os.sched_getaffinity", lambda _pid: set(range(cores)))
    monkeypatch.setattr("shared.config.os.cpu_count", lambda: 64)  # the machine's count is not ours
    assert default_threads() == threads
    assert LocalModelConfig().n_threads == threads
    assert HubModelEntry(name="m", backend="llamacpp").n_threads == threads
    assert LocalModelConfig(n_threads=3).n_threads == 3  # an explicit setting still wins
    assert HubModelEntry(name="m", backend="llamacpp", n_threads=3).n_threads == 3


@pytest.mark.parametrize(("cores", "threads"), [(None, 1), (1, 1), (2, 1), (8, 4)])
def test_without_an_affinity_api_the_machine_count_is_used(
    monkeypatch: pytest.MonkeyPatch, cores: int | None, threads: int
) -> None:
    monkeypatch.delattr("shared.config.os.sched_getaffinity")
    monkeypatch.setattr("shared.config.os.cpu_count", lambda: cores)
    assert default_threads() == threads


@pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2, reason="one core"
)
def test_a_process_pinned_to_one_core_counts_one() -> None:
    """As under ``taskset -c 0`` or a container's CPU set: the machine has more cores than we get."""
    script = (
        "import os\n"
        "os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"
        "from shared.config import available_cores\n"
        "print(available_cores(), os.cpu_count())\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    available, machine = (int(v) for v in out.stdout.split())
    assert available == 1 and machine >= 2
