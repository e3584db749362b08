"""``cloud-hub enroll --home DIR EDGE.key``: allow an edge's public key to connect.

A running hub notices the new file within a second (or at once on SIGHUP); no restart.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from shared.keys import KeyFileError, enroll_public_key

HELP = "add an edge's public key to the hub's allow-list"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--home", type=Path, required=True, help="hub home directory")
    parser.add_argument("public_key_file", type=Path, metavar="EDGE_PUBLIC_KEY_FILE")


def run(args: argparse.Namespace) -> int:
    try:
        target = enroll_public_key(args.public_key_file, args.home / "enrolled")
    except KeyFileError as exc:
        print(f"error: {exc}")
        return 1
    print(f"enrolled {args.public_key_file} as {target}")
    return 0
