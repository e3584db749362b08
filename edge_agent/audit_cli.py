"""``edge-agent cache audit``: review served semantic hits and tighten thresholds from the verdicts.

``sample --out FILE`` writes logged hits (the same share from every domain) as JSONL with
``"correct": null``; after a reviewer sets each to true or false, ``apply FILE`` raises every
audited domain's threshold until the labelled hits above it meet ``--max-false-rate`` and stores
it in the cache database, where a restarted agent picks it up. Thresholds only ever go up.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edge_agent.cache.audit import AuditError, HitAudit, read_jsonl, write_jsonl
from edge_agent.cache.db import Database
from shared.config import EdgeSettings, load_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="audit_command", required=True)
    sample = sub.add_parser("sample", help="write logged semantic hits to review as JSONL")
    sample.add_argument("--out", type=Path, required=True)
    sample.add_argument("-n", type=int, default=200, help="hits to sample (default 200)")
    sample.add_argument("--seed", type=int, default=0)
    apply = sub.add_parser("apply", help="raise per-domain thresholds from a reviewed JSONL")
    apply.add_argument("file", type=Path)
    apply.add_argument("--max-false-rate", type=float, default=0.02)
    for p in (sample, apply):
        p.add_argument("--home", type=Path, required=True)
        p.add_argument("--config", type=Path, help="YAML settings file")


def run(args: argparse.Namespace) -> int:
    settings = load_settings(EdgeSettings, args.config, home=args.home)
    path = settings.cache.path or settings.home / "cache.db"
    if not Path(path).is_file():
        print(f"edge-agent: no cache database at {path}", file=sys.stderr)
        return 2
    with Database(path) as db:
        audit = HitAudit(db)
        if args.audit_command == "sample":
            if args.n < 1:
                print("edge-agent: -n must be at least 1", file=sys.stderr)
                return 2
            rows = audit.sample(args.n, seed=args.seed)
            write_jsonl(rows, args.out)
            print(json.dumps({"sampled": len(rows), "out": str(args.out)}))
            return 0
        if not 0.0 <= args.max_false_rate < 1.0:
            print("edge-agent: --max-false-rate must be in [0, 1)", file=sys.stderr)
            return 2
        from edge_agent.assemble import model_dirs  # loads the serving stack: only for `apply`
        from edge_agent.cache.cross_verifier import load_verifier

        verifier = load_verifier(settings.cache, model_dirs(settings))
        audit.load_into(verifier)
        try:
            raised = audit.apply(verifier, read_jsonl(args.file), args.max_false_rate)
        except (AuditError, OSError) as exc:
            print(f"edge-agent: {exc}", file=sys.stderr)
            return 2
    print(json.dumps({"thresholds": raised, "max_false_rate": args.max_false_rate}))
    return 0
