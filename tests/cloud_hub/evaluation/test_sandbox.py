from __future__ import annotations

import pytest

from cloud_hub.evaluation.sandbox import CodeSandbox


@pytest.fixture(scope="module")
def sandbox() -> CodeSandbox:
    return CodeSandbox(cpu_s=2, wall_s=5, memory_mb=256)


def test_passing_and_failing_code(sandbox: CodeSandbox) -> None:
    assert sandbox.run("def f(x):\n    return x * 2\nassert f(2) == 4").passed
    failed = sandbox.run("assert 1 + 1 == 3")
    assert failed.status == "failed" and "AssertionError" in failed.stderr_tail


def test_infinite_loop_is_stopped(sandbox: CodeSandbox) -> None:
    result = sandbox.run("while True:\n    pass")
    assert result.status == "timeout"
    assert result.seconds < 8


def test_sleeping_code_hits_the_wall_clock(sandbox: CodeSandbox) -> None:
    assert sandbox.run("import time\ntime.sleep(30)").status == "timeout"


def test_memory_is_capped(sandbox: CodeSandbox) -> None:
    assert sandbox.run("x = bytearray(2 * 1024 ** 3)").status == "memory"


@pytest.mark.parametrize(
    "code",
    [
        "import socket\nsocket.create_connection(('127.0.0.1', 9))",
        "import subprocess\nsubprocess.run(['true'])",
        "import os\nos.system('true')",
    ],
)
def test_network_and_processes_are_refused(sandbox: CodeSandbox, code: str) -> None:
    result = sandbox.run(code)
    assert result.status == "blocked", result
    assert "sandbox:" in result.stderr_tail


def test_runs_in_a_private_temporary_directory(sandbox: CodeSandbox) -> None:
    result = sandbox.run("import os\nprint(os.getcwd())\nopen('scratch.txt', 'w').write('x')")
    assert result.passed
    assert "edgeroute-sandbox-" in result.stdout_tail


def test_environment_is_not_inherited(sandbox: CodeSandbox) -> None:
    result = sandbox.run(
        "import os\nassert 'EDGEROUTE_MODELS_DIR' not in os.environ\nassert 'VIRTUAL_ENV' not in os.environ"
    )
    assert result.passed, result.stderr_tail
