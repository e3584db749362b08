"""``cloud-hub revoke --home DIR EDGE``: take an edge off the allow-list.

EDGE is a name given at ``invite``, an edge id (``cloud-hub edges`` lists both), an enrolled file's
name or the edge's public key file. A running hub re-reads the list within a second (at once on
SIGHUP), then refuses the key's new handshakes and ignores every message on its live connections.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cloud_hub.enrolment.allowlist import RevokeError, revoke
from shared.config import HubSettings, load_settings
from shared.keys import KeyFileError

HELP = "remove an edge from the allow-list (new and existing connections)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--home", type=Path, help="hub home directory; default ~/.edgeroute/hub")
    parser.add_argument("edge", metavar="EDGE", help="name, edge id, enrolled file name or public key file")


def run(args: argparse.Namespace) -> int:
    settings = load_settings(HubSettings, home=args.home)
    try:
        removed = revoke(settings.enrolled_dir, args.edge)
    except (RevokeError, KeyFileError) as exc:
        print(f"error: {exc}")
        return 1
    edge = removed[0]
    label = f"{edge.name} ({edge.edge_id})" if edge.name else edge.edge_id
    files = ", ".join(str(e.path) for e in removed)
    print(f"revoked {label}: removed {files}")
    print("a running hub drops it within a second (`kill -HUP <hub pid>`: at once)")
    return 0
