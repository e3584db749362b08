"""Every ``cloud-hub``, ``edge-agent`` and ``edgeroute-models`` command in the operator documents is
one the programs accept: whole lines in code blocks parse with the real argument parsers, and
commands quoted in the prose name real subcommands and real flags. (Running them is what
``tests/test_readme.py`` does for the README's walk-through.)"""

from __future__ import annotations

import argparse
import functools
import re
import shlex
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cloud_hub.cli import build_parser as hub_parser
from edge_agent.cli import build_parser as edge_parser
from models.install import build_parser as models_parser

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = ("docs/operations.md", "docs/evaluation.md", "README.md")
PROGRAMS: dict[str, Callable[[], argparse.ArgumentParser]] = {
    "cloud-hub": hub_parser,
    "edge-agent": edge_parser,
    "edgeroute-models": models_parser,
}
_PROGRAM = re.compile(r"^(?:\S*/)?(cloud-hub|edge-agent|edgeroute-models)\s")


def _text(document: str) -> str:
    text = (ROOT / document).read_text()
    if document == "README.md":  # the operator part and the table of benchmark commands
        sections = []
        for title in ("## Using it", "## Benchmarks"):
            start = text.index(title)
            end = text.find("\n## ", start + 1)
            sections.append(text[start : end if end >= 0 else len(text)])
        text = "\n".join(sections)
    return text


def block_commands(text: str) -> Iterator[str]:
    for block in re.findall(r"```(?:bash|sh)\n(.*?)```", text, flags=re.DOTALL):
        pending = ""
        for line in block.splitlines():
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            line, pending = pending + line, ""
            line = re.sub(r"\s+#\s.*$", "", line).strip()
            assigned = re.fullmatch(r"\w+=\$\((.+)\)", line)
            if assigned is not None:
                line = assigned.group(1)
            if _PROGRAM.match(line + " "):
                yield line


def prose_commands(text: str) -> Iterator[str]:
    outside = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
    for span in re.findall(r"`([^`\n]+)`", outside):
        if _PROGRAM.match(span + " "):
            yield span


def _leaf(parser: argparse.ArgumentParser, words: list[str]) -> tuple[argparse.ArgumentParser, list[str]]:
    """The subcommand parser the leading words lead to, and the words left after them."""
    while words:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or words[0] not in subs[0].choices:
            break
        parser, words = subs[0].choices[words[0]], words[1:]
    return parser, words


def _cases() -> list[tuple[str, str, str]]:
    cases = []
    for document in DOCUMENTS:
        text = _text(document)
        cases += [(document, "block", c) for c in block_commands(text)]
        cases += [(document, "prose", c) for c in prose_commands(text)]
    return cases


CASES = _cases()


def test_the_documents_have_commands_to_check() -> None:
    kinds = {(doc, kind) for doc, kind, _ in CASES}
    assert {("docs/operations.md", "block"), ("docs/operations.md", "prose"), ("README.md", "block")} <= kinds
    assert any(" revoke " in c for _, _, c in CASES) and any(" canary " in c for _, _, c in CASES)


@functools.cache
def _parser(program: str) -> argparse.ArgumentParser:
    return PROGRAMS[program]()  # built once: cloud-hub's imports every subcommand's module


def problem(kind: str, command: str) -> str | None:
    """What is wrong with ``command`` as the documents use it; None when nothing is."""
    program, *words = shlex.split(command)
    parser = _parser(Path(program).name)
    if kind == "block":
        try:
            parser.parse_args(words)
        except SystemExit as exc:
            return f"does not parse (exit {exc.code})"
        return None
    leaf, rest = _leaf(parser, words)
    if leaf is parser and words and not words[0].startswith("-"):
        return f"no subcommand {words[0]!r}"
    known = {opt for action in leaf._actions for opt in action.option_strings}
    unknown = sorted({w.split("=", 1)[0] for w in rest if w.startswith("--")} - known)
    return f"unknown flags {unknown}" if unknown else None


@pytest.mark.parametrize(("document", "kind", "command"), CASES)
def test_command_is_real(document: str, kind: str, command: str, capsys: pytest.CaptureFixture[str]) -> None:
    found = problem(kind, command)
    assert found is None, f"{document}: {command!r} {found}\n{capsys.readouterr().err}"


def test_a_wrong_command_is_caught(capsys: pytest.CaptureFixture[str]) -> None:
    """Control: a misspelt subcommand and an unknown flag, in prose and in a block."""
    assert problem("prose", "cloud-hub revokee --home h") == "no subcommand 'revokee'"
    assert problem("prose", "cloud-hub invite --home h --ttl-hours 3") == "unknown flags ['--ttl-hours']"
    assert problem("block", "edge-agent join --home h") is not None  # the token is missing
    assert problem("block", "edge-agent join --home h TOKEN") is None
