"""``cloud-hub`` command line.

Each subcommand lives in its own module exposing ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``; adding one is one line in ``SUBCOMMANDS``. Modules are imported when the
parser is built, so they keep heavy imports (torch, vLLM) inside ``run``; when the command line
names a subcommand only that module is imported, so ``cloud-hub serve`` never pays for the
benchmarks' or the demo's imports.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from types import ModuleType

SUBCOMMANDS: tuple[tuple[str, str], ...] = (
    ("keys", "cloud_hub.commands.keys"),
    ("enroll", "cloud_hub.commands.enroll"),
    ("serve", "cloud_hub.commands.serve"),
    ("invite", "cloud_hub.commands.invite"),
    ("revoke", "cloud_hub.commands.revoke"),
    ("edges", "cloud_hub.commands.edges"),
    ("canary", "cloud_hub.commands.canary"),
    ("cache", "cloud_hub.commands.cache"),
    ("bench", "cloud_hub.bench.cli"),
    ("eval", "cloud_hub.evaluation.cli"),
    ("demo", "cloud_hub.demo.main"),
    ("calibrate", "cloud_hub.calibrate.cli"),
    ("data", "cloud_hub.data_download"),
)


def _load(module_path: str) -> ModuleType | None:
    try:
        return importlib.import_module(module_path)
    except ModuleNotFoundError as exc:
        # A subcommand whose module is not part of this installation is left out; a module
        # that exists but fails to import is a bug and surfaces.
        if exc.name is not None and module_path.startswith(exc.name):
            return None
        raise


def _named(argv: Sequence[str]) -> str | None:
    """The subcommand the command line names, if it names a known one."""
    names = {name for name, _ in SUBCOMMANDS}
    first = next((a for a in argv if not a.startswith("-")), None)
    return first if first in names else None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cloud-hub", description="edgeroute cloud hub")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    only = _named(argv) if argv is not None else None
    for name, module_path in SUBCOMMANDS:
        if only is not None and name != only:
            continue
        module = _load(module_path)
        if module is None:
            continue
        cmd = sub.add_parser(
            name, help=getattr(module, "HELP", None), description=getattr(module, "HELP", None)
        )
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    code: int = args._run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
