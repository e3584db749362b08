"""The README's "Using it" commands, run in the order a newcomer runs them.

Every fenced block that follows the marker ``<!-- tests/test_readme.py runs this block -->`` is
run as written, with exactly the substitutions in ``SUBSTITUTIONS`` below (home directories into
a temporary folder, fixed ports into free ones, ``.venv/bin`` into this interpreter's bin): shell
lines through ``bash``, ``NAME=$(...)`` lines into the environment of the lines after them,
``serve`` lines as background programs awaited on their ready lines, Python blocks with this
interpreter. Then one request goes through the ``openai`` client to the edge the last block
started. It needs the default models (llama.cpp on hub and edge), hence ``slow``.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import openai
import pytest

from shared.procs import ChildProcess

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- tests/test_readme.py runs this block -->"
READY = {"cloud-hub": "hub ready on ", "edge-agent": "edge agent ready on "}
ASSIGNMENT = re.compile(r"^(\w+)=\$\((.+)\)$")


def _free_block(size: int) -> int:
    """A port p with p .. p+size-1 free (the hub uses its link port and the next three)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        held: list[socket.socket] = []
        try:
            for port in range(base, base + size):
                s = socket.socket()
                held.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError("no block of free ports")


def substitutions(tmp: Path) -> list[tuple[str, str]]:
    """Everything the test changes in the README's commands, and nothing else."""
    hub, edge, edge2 = _free_block(4), _free_block(1), _free_block(1)
    return [
        ("~/.edgeroute/", f"{tmp}/"),
        (".venv/bin/", f"{Path(sys.executable).parent}/"),
        ("5555", str(hub)),
        ("8080", str(edge)),
        ("8081", str(edge2)),
    ]


@dataclass
class Block:
    language: str
    text: str


def readme_blocks() -> list[Block]:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Using it") :]
    section = section[: section.index("\n## ", 1)]
    blocks = []
    for part in section.split(MARKER)[1:]:
        match = re.match(r"\s*```(\w+)\n(.*?)\n```", part, flags=re.DOTALL)
        assert match is not None, "a marker must sit right above a fenced block"
        blocks.append(Block(match.group(1), match.group(2)))
    return blocks


def shell_commands(text: str) -> list[str]:
    """Logical lines: continuations joined, comment-only and blank lines dropped."""
    commands, pending = [], ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        commands.append(pending + line)
        pending = ""
    return commands


def apply(text: str, subs: list[tuple[str, str]]) -> str:
    for old, new in subs:
        text = (
            re.sub(rf"(?<!\d){re.escape(old)}(?!\d)", new, text) if old.isdigit() else text.replace(old, new)
        )
    return text


@dataclass
class Session:
    root: Path
    env: dict[str, str] = field(default_factory=dict)
    programs: list[ChildProcess] = field(default_factory=list)
    outputs: list[tuple[str, str]] = field(default_factory=list)  # (command, stdout)

    def run(self, command: str) -> None:
        assigned = ASSIGNMENT.match(command)
        if assigned is not None:
            self.env[assigned.group(1)] = self._shell(assigned.group(2)).strip()
        elif re.search(r"/(cloud-hub|edge-agent) serve ", command):
            self._background(command)
        else:
            self.outputs.append((command, self._shell(command)))

    def _shell(self, command: str) -> str:
        done = subprocess.run(
            ["bash", "-c", command],
            cwd=ROOT,
            env=self._environ(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, f"{command}\nexit {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def _background(self, command: str) -> None:
        program = re.search(r"/(cloud-hub|edge-agent) serve ", command)
        assert program is not None
        name = f"{program.group(1)}-{len(self.programs)}"
        proc = ChildProcess(
            name,
            ["bash", "-c", f"exec {command}"],
            self.root / f"{name}.log",
            ready_prefix=READY[program.group(1)],
            env=self.env,
            grace_s=30,
        )
        self.programs.append(proc)
        address = proc.start(timeout_s=300)
        if program.group(1) == "edge-agent":
            # a reader sees the link come up before typing the next line; the test waits for it
            _wait(lambda: httpx.get(f"{address}/health", timeout=5).json().get("hub") == "connected", 60)

    def _environ(self) -> dict[str, str]:
        import os

        return {**os.environ, **self.env}


def _wait(check: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if check():
                return
        except (httpx.HTTPError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"not ready within {timeout_s} s")
        time.sleep(0.5)


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    s = Session(tmp_path)
    try:
        yield s
    finally:
        for proc in reversed(s.programs):
            proc.stop()


def test_the_blocks_are_there() -> None:
    blocks = readme_blocks()
    assert [b.language for b in blocks] == ["bash", "python", "bash"]
    first = shell_commands(blocks[0].text)
    assert any(" invite " in c for c in first) and any(" join " in c for c in first)
    assert not any("<" in c and ">" in c for b in blocks for c in shell_commands(b.text)), "no placeholders"


def test_using_it_runs_as_written(session: Session, tmp_path: Path) -> None:
    subs = substitutions(tmp_path)
    python_out = ""
    for block in readme_blocks():
        text = apply(block.text, subs)
        if block.language == "bash":
            for command in shell_commands(text):
                session.run(command)
        else:
            done = subprocess.run(
                [sys.executable, "-c", text], cwd=ROOT, capture_output=True, text=True, timeout=300
            )
            assert done.returncode == 0, done.stderr
            python_out = done.stdout
    outputs = dict(session.outputs)
    health = next(json.loads(out) for cmd, out in outputs.items() if "/health" in cmd)
    assert health["hub"] == "connected"
    chat = next(json.loads(out) for cmd, out in outputs.items() if "chat/completions" in cmd)
    assert chat["choices"][0]["message"]["content"]
    # the README's Python asked for the hub: the answer came over the joined link
    assert python_out.split()[0] == "hub_oss", python_out
    keys = next(out for cmd, out in outputs.items() if "cloud-hub keys init" in cmd)
    assert f"{tmp_path}/hub/keys/curve.key" in keys  # the file names the README's comments give

    edge2 = dict(subs)["8081"]
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{edge2}/v1", api_key="unused", timeout=300)
    raw = client.chat.completions.with_raw_response.create(
        model="hub", max_tokens=32, messages=[{"role": "user", "content": "Say hello."}]
    )
    assert raw.headers["x-edgeroute-route"] == "hub_oss"  # the edge enrolled with `cloud-hub enroll`
    assert raw.parse().choices[0].message.content
