"""``edge-agent``: key set-up, serving, benchmarks.

``edge-agent keys init --home DIR`` prints the public key file to enrol at the hub;
``edge-agent join --home DIR --hub tcp://HOST:PORT TOKEN`` enrols it with a ``cloud-hub invite`` token;
``edge-agent serve ...`` prints ``edge agent ready on http://HOST:PORT`` once it accepts requests;
``edge-agent cache audit sample --out FILE`` writes logged semantic hits for a reviewer to mark
``"correct": true|false``; ``edge-agent cache audit apply FILE`` raises each audited domain's
threshold until the reviewed hits meet ``--max-false-rate`` (stored in the cache; only ever up);
``edge-agent bench NAME`` runs ``edge_agent.bench.NAME`` (each module: ``add_arguments``, ``run``).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from edge_agent import join as join_cmd
from edge_agent.cache.audit import AuditError, HitAudit, read_jsonl, write_jsonl
from edge_agent.cache.db import Database
from edge_agent.cache.verifier import load_verifier
from edge_agent.join import apply_joined
from shared.config import EdgeSettings, load_settings
from shared.keys import init_keys

BENCHES = ("gen", "link", "cache", "answer")
READY_LINE = "edge agent ready on http://{host}:{port}"


def _bench_module(name: str) -> ModuleType | None:
    path = f"edge_agent.bench.{name}"
    try:
        return importlib.import_module(path)
    except ModuleNotFoundError as exc:
        # a benchmark missing from this build is left out; one that fails to import is a bug
        if exc.name is not None and path.startswith(exc.name):
            return None
        raise


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-agent", description=__doc__.splitlines()[0] if __doc__ else None
    )
    sub = parser.add_subparsers(dest="command", required=True)

    keys = sub.add_parser("keys", help="CURVE key pair of this edge")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    init = keys_sub.add_parser(
        "init", help="create the key pair (kept if present); print the public key file"
    )
    init.add_argument("--home", type=Path, required=True)

    join_cmd.add_arguments(sub.add_parser("join", help="enrol with a hub using a `cloud-hub invite` token"))

    serve = sub.add_parser("serve", help="serve the OpenAI-compatible API")
    serve.add_argument("--home", type=Path, required=True)
    serve.add_argument("--port", type=int)
    serve.add_argument("--host", help="listen address (default 127.0.0.1)")
    serve.add_argument("--hub", dest="hub_url", help="hub endpoint, e.g. tcp://127.0.0.1:5555")
    serve.add_argument(
        "--hub-key", type=Path, help="the hub's public key file (default after `join`: <home>/keys/hub.key)"
    )
    serve.add_argument("--config", type=Path, help="YAML settings file")
    serve.add_argument("--model", help="local model: installed name or path to a .gguf file")
    serve.add_argument("--log-level", default="WARNING")

    cache = sub.add_parser("cache", help="semantic-cache maintenance")
    cache_sub = cache.add_subparsers(dest="cache_command", required=True)
    _add_audit_arguments(cache_sub.add_parser("audit", help="review hits, tighten thresholds"))

    bench = sub.add_parser("bench", help="benchmarks that print figures")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    for name in BENCHES:
        module = _bench_module(name)
        if module is None:
            bench_sub.add_parser(name, help="(not installed in this build)")
            continue
        doc = (module.__doc__ or "").strip().splitlines()
        p = bench_sub.add_parser(name, help=doc[0] if doc else None)
        module.add_arguments(p)
    return parser


def settings_from_args(args: argparse.Namespace) -> EdgeSettings:
    settings = load_settings(
        EdgeSettings,
        args.config,
        home=args.home,
        port=args.port,
        host=args.host,
        hub_url=args.hub_url,
        hub_public_key_file=args.hub_key,
    )
    if args.model:
        model = Path(args.model).expanduser()
        if model.suffix == ".gguf" or model.is_file():
            update: dict[str, object] = {"path": model, "name": model.stem}
        else:
            update = {"name": args.model, "path": None}
        settings.local_model = settings.local_model.model_copy(update=update)
    return apply_joined(settings)  # the hub `join` recorded, unless told otherwise


def _add_audit_arguments(parser: argparse.ArgumentParser) -> None:
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


def _run_audit(args: argparse.Namespace) -> int:
    """``sample`` writes hits to review; ``apply`` raises thresholds from the reviewed file."""
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
        verifier = load_verifier(settings.cache)
        audit.load_into(verifier)
        try:
            raised = audit.apply(verifier, read_jsonl(args.file), args.max_false_rate)
        except (AuditError, OSError) as exc:
            print(f"edge-agent: {exc}", file=sys.stderr)
            return 2
    print(json.dumps({"thresholds": raised, "max_false_rate": args.max_false_rate}))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "keys":
        public, _ = init_keys(args.home / "keys")
        print(public)
        return 0
    if args.command == "serve":
        logging.basicConfig(
            level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        try:
            settings = settings_from_args(args)
            from edge_agent.serving import serve  # loads llama.cpp: only for `serve`

            asyncio.run(serve(settings, READY_LINE))
        except (FileNotFoundError, ValueError) as exc:
            print(f"edge-agent: {exc}", file=sys.stderr)
            return 2
        return 0
    if args.command == "cache":
        return _run_audit(args)
    if args.command == "join":
        return join_cmd.run(args)
    module = _bench_module(args.bench)
    if module is None:
        print(f"edge-agent: benchmark {args.bench!r} is not available in this build", file=sys.stderr)
        return 2
    return int(module.run(args))


if __name__ == "__main__":
    sys.exit(main())
