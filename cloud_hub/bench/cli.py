"""``cloud-hub bench <name>``: the hub's offline benchmarks, one module per benchmark.

Each module exposes ``add_arguments(parser)`` and ``run(args) -> int`` (and optionally ``HELP``);
adding a benchmark is one line in ``BENCHES``.
"""

from __future__ import annotations

import argparse
import importlib

HELP = "offline benchmarks that print figures and write JSON + PNG reports"
BENCHES: tuple[tuple[str, str], ...] = (
    ("routing", "cloud_hub.bench.routing"),
    ("images", "cloud_hub.bench.images"),
    ("judge", "cloud_hub.bench.judge"),
    ("reliability", "cloud_hub.bench.reliability"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bench", required=True, metavar="BENCH")
    for name, module_path in BENCHES:
        module = importlib.import_module(module_path)
        cmd = sub.add_parser(name, help=getattr(module, "HELP", None), description=module.__doc__)
        module.add_arguments(cmd)
        cmd.set_defaults(_bench_run=module.run)


def run(args: argparse.Namespace) -> int:
    code: int = args._bench_run(args)
    return code
