"""``cloud-hub keys init --home DIR``: the hub's CURVE key pair and the dashboard's token
(``<home>/dashboard.token``, mode 0600); neither is ever overwritten."""

from __future__ import annotations

import argparse
from pathlib import Path

from cloud_hub.dashboard.token import TokenError, init_token
from shared.keys import KeyFileError, init_keys

HELP = "manage the hub's CURVE key pair"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    init = sub.add_parser(
        "init", help="create the key pair and the dashboard token unless they exist (never overwrites)"
    )
    init.add_argument("--home", type=Path, required=True, help="hub home directory")


def run(args: argparse.Namespace) -> int:
    try:
        public, secret = init_keys(args.home / "keys")
        token = init_token(args.home)
    except (KeyFileError, TokenError) as exc:
        print(f"error: {exc}")
        return 1
    print(f"public key: {public}\nsecret key: {secret}\ndashboard token: {token}")
    return 0
