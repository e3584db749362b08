"""A small Dockerfile checker for what hadolint would catch and this repo cares about.

It parses instructions (continuation lines, comments, ``ARG`` defaults in ``FROM``) and reports
problems as strings: an unpinned base image, a final stage running as root, ``ADD`` of a URL, no
``HEALTHCHECK``, a ``COPY`` of a path that is not in the build context, a mount from a stage that
does not exist, ``apt-get install`` without ``--no-install-recommends``.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

_VAR = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}|\$(\w+)")


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int

    def words(self) -> list[str]:
        """The arguments as a list: exec form (JSON) when written so, else shell words."""
        text = self.args.strip()
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError:
                pass
            else:
                return [str(w) for w in parsed]
        return shlex.split(text, comments=False, posix=True)


@dataclass
class Stage:
    image: str
    name: str
    line: int
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """(global ARG defaults, stages) of a Dockerfile."""
    logical: list[tuple[int, str]] = []
    buffer, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if buffer and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        logical.append((start, buffer + stripped))
        buffer = ""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for number, line in logical:
        keyword, _, args = line.partition(" ")
        inst = Instruction(keyword.upper(), args.strip(), number)
        if inst.keyword == "FROM":
            words = [w for w in inst.args.split() if not w.startswith("--")]
            image = expand(words[0], global_args)
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else ""
            stages.append(Stage(image, name, number))
        elif not stages:
            if inst.keyword == "ARG":
                key, _, default = inst.args.partition("=")
                global_args[key.strip()] = default.strip()
        else:
            stages[-1].instructions.append(inst)
    return global_args, stages


def expand(value: str, variables: dict[str, str]) -> str:
    def sub(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3)
        return variables.get(name) or match.group(2) or ""

    return _VAR.sub(sub, value)


def _pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    last = image.rsplit("/", 1)[-1]
    return ":" in last and not last.endswith(":latest")


def lint(path: Path, context: Path) -> list[str]:
    """Problems found in the Dockerfile at ``path`` built with ``context`` as its build context."""
    _, stages = parse(path.read_text())
    if not stages:
        return [f"{path.name}: no FROM"]
    problems: list[str] = []
    ignored = _dockerignore(context)
    names: set[str] = set()  # stages defined so far: a reference to a later one is an error too
    for stage in stages:
        problems += _check_stage(path.name, stage, context, ignored, names)
        if stage.name:
            names.add(stage.name)
    return problems + _check_final(path.name, stages[-1])


def _check_stage(file: str, stage: Stage, context: Path, ignored: set[str], names: set[str]) -> list[str]:
    problems = []
    if stage.image not in names and not _pinned(stage.image):
        problems.append(f"{file}:{stage.line}: base image {stage.image!r} is not pinned by tag or digest")
    for inst in stage.instructions:
        where = f"{file}:{inst.line}"
        if inst.keyword == "ADD" and re.search(r"\bhttps?://", inst.args):
            problems.append(f"{where}: ADD of a URL (download in RUN and verify a checksum instead)")
        if inst.keyword == "COPY":
            problems += _check_copy(inst, where, context, ignored, names)
        if inst.keyword == "RUN":
            problems += _check_run(inst, where, names)
    return problems


def _check_run(inst: Instruction, where: str, stages: set[str]) -> list[str]:
    problems = []
    for mount in re.findall(r"--mount=(\S+)", inst.args):
        opts = dict(kv.split("=", 1) for kv in mount.split(",") if "=" in kv)
        if "from" in opts and opts["from"] not in stages:
            problems.append(f"{where}: mount from unknown stage {opts['from']!r}")
    if "apt-get install" in inst.args and "--no-install-recommends" not in inst.args:
        problems.append(f"{where}: apt-get install without --no-install-recommends")
    if "apt-get install" in inst.args and "rm -rf /var/lib/apt/lists" not in inst.args:
        problems.append(f"{where}: apt lists left in the layer")
    return problems


def _check_final(file: str, final: Stage) -> list[str]:
    """What the stage that ships must have: a non-root user and a health check."""
    problems = []
    users = final.all("USER")
    if not users or users[-1].args.split(":")[0] in ("root", "0"):
        problems.append(f"{file}: the final stage runs as root (no non-root USER)")
    checks = final.all("HEALTHCHECK")
    if not checks or checks[-1].args.upper().startswith("NONE"):
        problems.append(f"{file}: the final stage has no HEALTHCHECK")
    return problems


def _check_copy(
    inst: Instruction, where: str, context: Path, ignored: set[str], stages: set[str]
) -> list[str]:
    words = inst.words()
    flags = [w for w in words if w.startswith("--")]
    sources = [w for w in words if not w.startswith("--")][:-1]
    source_stage = next((f.split("=", 1)[1] for f in flags if f.startswith("--from=")), None)
    if source_stage is not None:
        return [] if source_stage in stages else [f"{where}: COPY --from unknown stage {source_stage!r}"]
    problems = []
    for source in sources:
        if not (context / source).exists():
            problems.append(f"{where}: COPY source {source!r} is not in the build context")
        elif Path(source).parts[0] in ignored:
            problems.append(f"{where}: COPY source {source!r} is excluded by .dockerignore")
    return problems


def _dockerignore(context: Path) -> set[str]:
    path = context / ".dockerignore"
    if not path.is_file():
        return set()
    lines = (line.strip() for line in path.read_text().splitlines())
    return {line.rstrip("/") for line in lines if line and not line.startswith(("#", "!", "*"))}
