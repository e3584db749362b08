"""``cloud-hub edges --home DIR``: the enrolled edges (id, name, file) and the invites still open."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from cloud_hub.enrolment.allowlist import enrolled_edges
from cloud_hub.enrolment.invites import INVITES_FILE, InviteStore
from shared.config import HubSettings, load_settings

HELP = "list enrolled edges and pending invites"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--home", type=Path, help="hub home directory; default ~/.edgeroute/hub")


def run(args: argparse.Namespace) -> int:
    settings = load_settings(HubSettings, home=args.home)
    edges = enrolled_edges(settings.enrolled_dir)
    print(f"{len(edges)} enrolled edge(s) in {settings.enrolled_dir}")
    for edge in edges:
        print(f"  {edge.edge_id}  {edge.name or '-':<24} {edge.path.name}")
    if (settings.home / INVITES_FILE).is_file():
        store = InviteStore.open(settings.home)
        try:
            pending = store.pending()
        finally:
            store.close()
        print(f"{len(pending)} unused invite(s)")
        for invite in pending:
            until = time.strftime("%Y-%m-%d %H:%M", time.localtime(invite.expires_at))
            print(f"  {invite.invite_id}  {invite.name or '-':<24} until {until}")
    return 0
