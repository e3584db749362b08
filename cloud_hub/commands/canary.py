"""``cloud-hub canary status|promote|rollback --home DIR``: the routing policy's canary by hand.

``cloud-hub eval run --recalibrate`` starts a canary and later promotes or rolls it back on the
evidence; these commands are for an operator who will not wait (a bad dashboard figure, an
incident). They rewrite ``<home>/policy.json`` the way the controller does, and a running hub
sends the result to every connected edge within a second.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cloud_hub.evaluation.canary import CanaryController
from shared.config import HubSettings, load_settings

HELP = "show, promote or roll back the routing-policy canary"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="canary_command", required=True, metavar="ACTION")
    for name, text in (
        ("status", "the policy in force and the canary, as JSON"),
        ("promote", "make the canary's threshold the policy now"),
        ("rollback", "end the canary and keep the current policy"),
    ):
        action = sub.add_parser(name, help=text)
        action.add_argument("--home", type=Path, help="hub home directory; default ~/.edgeroute/hub")


def run(args: argparse.Namespace) -> int:
    settings = load_settings(HubSettings, home=args.home)
    path = settings.home / "policy.json"
    if args.canary_command == "status":
        if not path.is_file():
            print(f"no policy at {path}: edges use their own confidence_threshold")
            return 0
        print(path.read_text().strip())
        return 0
    controller = CanaryController(path)
    running = controller.state.canary_version
    try:
        controller.finish(args.canary_command)
    except RuntimeError as exc:
        print(f"error: {exc} (`cloud-hub canary status --home {settings.home}`)")
        return 1
    state = controller.state
    print(json.dumps({"canary": running, "decision": args.canary_command, "version": state.version,
                      "threshold": state.threshold}))  # fmt: skip
    return 0
