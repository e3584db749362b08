"""``cloud-hub invite --home DIR [--ttl 1h] [--name NAME]``: a one-time token for ``edge-agent join``.

The token is printed once, alone on stdout (``TOKEN=$(cloud-hub invite ...)`` works); the hub
keeps only its digest, in ``<home>/invites.db``. What to run on the edge goes to stderr.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from cloud_hub.enrolment.invites import InviteStore, parse_ttl
from shared.config import HubSettings, load_settings
from shared.keys import KeyFileError, key_paths, load_public

HELP = "issue a one-time, expiring invite token for `edge-agent join`"
_WILDCARDS = ("0.0.0.0", "*", "[::]", "::")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--home", type=Path, help="hub home directory; default ~/.edgeroute/hub")
    parser.add_argument("--config", type=Path, help="the hub's YAML settings (for its bind address)")
    parser.add_argument("--ttl", default="1h", help="how long the token stays valid: 600, 30m, 1h, 7d")
    parser.add_argument("--name", default="", help="name the edge gets on the allow-list (for revoke)")
    parser.add_argument(
        "--endpoint",
        help="the link endpoint edges should dial, put in the token (default: the bind address, "
        "unless it is a wildcard such as 0.0.0.0)",
    )


def advertised(bind: str) -> str:
    host = bind.partition("://")[2].rpartition(":")[0]
    return "" if host in _WILDCARDS or bind.endswith(":0") else bind


def run(args: argparse.Namespace) -> int:
    settings = load_settings(HubSettings, yaml_file=args.config, home=args.home)
    try:
        ttl_s = parse_ttl(args.ttl)
        hub_key = load_public(key_paths(settings.keys_dir)[0])
    except ValueError as exc:  # KeyFileError is one
        hint = f"; run `cloud-hub keys init --home {settings.home}`" if isinstance(exc, KeyFileError) else ""
        print(f"error: {exc}{hint}", file=sys.stderr)
        return 2
    # only a bind someone chose (config, HUB_BIND) is worth putting in a token: the default may not
    # be where this hub runs, and --hub at join time names it anyway
    chosen = "bind" in settings.model_fields_set
    endpoint = args.endpoint or (advertised(settings.bind) if chosen else "")
    store = InviteStore.open(settings.home)
    try:
        token, invite = store.issue(hub_key=hub_key, ttl_s=ttl_s, name=args.name, hub_endpoint=endpoint)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()
    expires = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(invite.expires_at))
    label = f" for {invite.name!r}" if invite.name else ""
    print(f"invite {invite.invite_id}{label}: single use, valid until {expires}", file=sys.stderr)
    dial = endpoint or "tcp://HUB-HOST:PORT"
    print(f"on the edge: edge-agent join --home EDGE_HOME --hub {dial} TOKEN", file=sys.stderr)
    print(token, flush=True)
    return 0
