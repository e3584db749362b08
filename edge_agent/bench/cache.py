"""``edge-agent bench cache``: semantic-cache quality, vector lookup speed, exact-hit HTTP throughput.

quality     false-hit rate and recall on held-out paraphrase pairs (QQP eval split, MRPC val, or
            ``--pairs``) for the edge's verifier alone and with the hub's judge on its grey zone,
            at the shipped points and at the best point with ≤2% false hits, against a single
            cosine threshold of 0.8 on the same embeddings (see ``cache_quality``)
lookup      top-10 latency and recall@10 of the cache's bit-prefilter + float rescoring search at
            several sizes, against brute-force float search in numpy
throughput  requests/s and p99 of the agent's exact-hit HTTP path under a loopback load generator
passthrough caches off / exact only / defaults side by side on forced-hub misses, concurrency 1
            and 32, plus the exact-hit path (see ``cache_passthrough``)
stream      a question stream with paraphrase repeats through a live edge and hub judge, against a
            cosine-0.8 cache on the same stream (see ``cache_stream``)

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import Progress

from edge_agent.bench import cache_passthrough, cache_stream
from edge_agent.bench.cache_hub_judge import llm_quality
from edge_agent.bench.cache_quality import PairSet, judge_probabilities, load_set, score_pairs
from edge_agent.cache.db import Database
from edge_agent.cache.embedding import load_embedder
from edge_agent.cache.keys import semantic_scope
from edge_agent.cache.semantic import SemanticCache
from edge_agent.cache.training import label_noise
from edge_agent.cache.verifier import Verifier, load_verifier
from shared import paths
from shared.cache_judge import JudgeHead
from shared.config import CacheSettings
from shared.pair_vectors import pair_vectors
from shared.paraphrase import Pair, mrpc, qqp_split


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parts = ("quality", "lookup", "throughput", "passthrough", "stream")
    parser.add_argument("part", nargs="?", choices=parts, default="quality")
    parser.add_argument("--pairs", type=Path, action="append", help="JSONL(.gz) of text_a/text_b/label pairs")
    parser.add_argument("--verifier", type=Path, help="verifier weights (default: the shipped ones)")
    parser.add_argument("--min-probability", type=float, help="quality: stricter verifier threshold")
    parser.add_argument("--judge", type=Path, help="quality: hub judge head weights (default: shipped)")
    parser.add_argument("--no-judge", action="store_true", help="quality: the edge's verifier alone")
    parser.add_argument(
        "--judge-pairs", type=int, default=150,
        help="quality, --hub-judge llm|both: grey pairs per set the LLM judges (as many to fit on)",
    )  # fmt: skip
    parser.add_argument("--judge-threads", type=int, default=1, help="quality: the LLM judge's threads")
    parser.add_argument("--hub-judge-prompt", help="quality: the LLM judge's prompt (default: the hub's)")
    parser.add_argument("--sizes", default="10000,100000", help="lookup: comma-separated index sizes")
    parser.add_argument("--queries", type=int, default=200, help="lookup: queries per size")
    parser.add_argument(
        "--db-dir", type=Path, help="lookup: where to build the indexes (default: a temp dir)"
    )
    parser.add_argument("--requests", type=int, default=20000, help="throughput: total requests")
    parser.add_argument("--concurrency", type=int, default=32, help="throughput: connections in flight")
    parser.add_argument(
        "--duration", type=float, default=30.0, help="throughput: stop after this many seconds"
    )
    parser.add_argument("--model", default="smollm2-135m-instruct", help="throughput: the local model")
    cache_passthrough.add_arguments(parser)
    cache_stream.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    if args.part == "quality":
        result = quality(args, console)
    elif args.part == "lookup":
        result = lookup(args, console)
    elif args.part == "passthrough":
        result = cache_passthrough.passthrough(args, console)
        cache_passthrough.report(result, console)
    elif args.part == "stream":
        result = cache_stream.stream(args, console)
        cache_stream.report(result, console)
    else:
        result = throughput(args, console)
    print(json.dumps(result))
    return 0


# --- quality ------------------------------------------------------------------------------------


def quality(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    settings = CacheSettings(verifier_file=args.verifier, min_verifier_probability=args.min_probability)
    verifier = load_verifier(settings)
    head = None if args.no_judge else JudgeHead.load(args.judge)
    embedder = load_embedder(paths.models_dir())
    if args.pairs:
        sets = {str(p): load_set(p) for p in args.pairs}
    else:
        sets = {"qqp_eval": PairSet(qqp_split("eval")), "mrpc_val": PairSet(mrpc("val"))}
    per_set: dict[str, Any] = {}
    with_cos: dict[str, tuple[list[Pair], np.ndarray[Any, Any]]] = {}
    every: list[Pair] = []
    cos_parts: list[np.ndarray[Any, Any]] = []
    judge_parts: list[np.ndarray[Any, Any]] = []
    categories: list[str] | None = [] if all(s.categories is not None for s in sets.values()) else None
    for name, ps in sets.items():
        console.print(f"[bold]{name}[/]: {len(ps.pairs)} pairs")
        va, vb = pair_vectors(embedder, ps.pairs)
        cos = np.einsum("ij,ij->i", va, vb)
        with_cos[name] = (ps.pairs, cos)
        judged = judge_probabilities(head, va, vb, ps.pairs) if head is not None else None
        per_set[name] = score_pairs(verifier, ps.pairs, cos, judged, _judge_threshold(head), ps.categories)
        per_set[name]["label_noise"] = label_noise(ps.pairs)
        console.print(per_set[name])
        every += ps.pairs
        cos_parts.append(cos)
        if judged is not None:
            judge_parts.append(judged)
        if categories is not None and ps.categories is not None:
            categories += ps.categories
    judged_all = np.concatenate(judge_parts) if head is not None else None
    if args.hub_judge in ("llm", "both") and args.judge_pairs > 0:
        with tempfile.TemporaryDirectory(prefix="edgeroute-bench-judge-") as td:
            by_llm = llm_quality(args, verifier, embedder, with_cos, Path(td))
        console.print(by_llm)
    result = score_pairs(
        verifier, every, np.concatenate(cos_parts), judged_all, _judge_threshold(head), categories
    )
    result["threshold"] = verifier.default_threshold
    result["grey_floor"] = verifier.grey_floor
    result["min_cosine"] = verifier.min_cosine
    if head is not None:
        result["judge"] = {"name": f"pair-head:{head.identity}", "threshold": head.threshold}
    result["sets"] = per_set
    if args.hub_judge in ("llm", "both") and args.judge_pairs > 0:
        result["edge_llm_judge"] = by_llm
    return result


def _judge_threshold(head: JudgeHead | None) -> float:
    return head.threshold if head is not None else 1.0


# --- lookup -------------------------------------------------------------------------------------


def _base_vectors(console: Console) -> np.ndarray[Any, Any]:
    """Real MiniLM vectors of the training questions (the verifier's fit already cached them)."""
    from shared.pair_vectors import embed_texts

    pairs = qqp_split("train") + mrpc("train")
    texts = sorted({p.a for p in pairs} | {p.b for p in pairs})
    console.print(f"base: {len(texts)} real question embeddings")
    return embed_texts(load_embedder(paths.models_dir()), texts)


def _grow(base: np.ndarray[Any, Any], n: int, rng: np.random.Generator) -> np.ndarray[Any, Any]:
    """``n`` vectors: the real ones, then normalised blends of two real ones (same distribution shape)."""
    if n <= len(base):
        return base[rng.permutation(len(base))[:n]]
    extra = n - len(base)
    i, j = rng.integers(0, len(base), extra), rng.integers(0, len(base), extra)
    w = rng.uniform(0.55, 0.9, (extra, 1)).astype(np.float32)
    mixed = w * base[i] + (1 - w) * base[j]
    mixed /= np.linalg.norm(mixed, axis=1, keepdims=True)
    return np.concatenate([base, mixed.astype(np.float32)])


def _fill(cache: SemanticCache, scope: str, vecs: np.ndarray[Any, Any], console: Console) -> None:
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"building {len(vecs)} rows", total=len(vecs))
        for start in range(0, len(vecs), 5000):
            chunk = vecs[start : start + 5000]
            with cache.db.tx() as conn:
                for k, v in enumerate(chunk):
                    blob = v.tobytes()
                    q = f"q{start + k}"
                    cur = conn.execute(
                        "INSERT INTO sem_entries(scope, tenant, family, domain, question, qform, emb, model,"
                        " origin, created, expires, last_used) VALUES (?, 't', 'f', 'general', ?, ?, ?, 'm',"
                        " 'local', 0, 1e18, 0)",
                        (scope, q, q, blob),
                    )
                    conn.execute(
                        "INSERT INTO sem_vec(rowid, scope, bits) VALUES (?, ?, vec_quantize_binary(?))",
                        (cur.lastrowid, scope, blob),
                    )
            progress.advance(task, len(chunk))
    with cache.db.read() as conn:
        cache.mirror.load(conn)  # rows written behind the cache's back: rebuild its in-memory index


def lookup(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    import tempfile

    rng = np.random.default_rng(0)
    base = _base_vectors(console)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    embedder = load_embedder(paths.models_dir())
    out: dict[str, Any] = {"sizes": {}}
    with tempfile.TemporaryDirectory(dir=args.db_dir) as tmp:
        for n in sizes:
            vecs = _grow(base, n, rng)
            scope = semantic_scope("bench", "f", "s")
            with Database(Path(tmp) / f"lookup-{n}.db") as db:
                cache = SemanticCache(db, embedder, Verifier.load(args.verifier), CacheSettings())
                _fill(cache, scope, vecs, console)
                picks = rng.integers(0, n, args.queries)
                noise = rng.standard_normal((args.queries, vecs.shape[1])).astype(np.float32) * 0.02
                queries = vecs[picks] + noise
                queries /= np.linalg.norm(queries, axis=1, keepdims=True)
                lat, brute, recalls = [], [], []
                for q in queries:
                    t0 = time.perf_counter()
                    got = cache.search([scope], q, k=10, now=1.0)
                    lat.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    truth = np.argpartition(-(vecs @ q), 10)[:10]
                    brute.append(time.perf_counter() - t0)
                    recalls.append(len({c.entry_id - 1 for c in got} & set(truth.tolist())) / 10)
            row = {
                "p50_ms": round(float(np.percentile(lat, 50)) * 1000, 3),
                "p99_ms": round(float(np.percentile(lat, 99)) * 1000, 3),
                "recall_at_10": round(float(np.mean(recalls)), 4),
                "brute_force_p50_ms": round(float(np.percentile(brute, 50)) * 1000, 3),
            }
            console.print(f"{n}: {row}")
            out["sizes"][str(n)] = row
    return out


# --- throughput ---------------------------------------------------------------------------------

CHAT_BODY = {
    "messages": [{"role": "user", "content": "What is the capital of France?"}],
    "temperature": 0,
    "max_tokens": 16,
}


def _load_worker(url: str, body: dict[str, Any] | None, n: int, conc: int, duration: float, out: Any) -> None:
    """Runs in its own process so the load generator does not share the agent's CPU time slices."""
    import asyncio

    import aiohttp

    async def main() -> list[float]:
        lat: list[float] = []
        left = n
        stop_at = time.monotonic() + duration
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=conc)) as session:

            async def one() -> None:
                nonlocal left
                while left > 0 and time.monotonic() < stop_at:
                    left -= 1
                    t0 = time.perf_counter()
                    if body is None:
                        resp = await session.get(url)
                    else:
                        resp = await session.post(url, json=body)
                    await resp.read()
                    if resp.status != 200:
                        raise RuntimeError(f"HTTP {resp.status}")
                    lat.append(time.perf_counter() - t0)

            await asyncio.gather(*(one() for _ in range(conc)))
        return lat

    t0 = time.perf_counter()
    lat = asyncio.run(main())
    out.put((lat, time.perf_counter() - t0))


def _measure(url: str, body: dict[str, Any] | None, args: argparse.Namespace) -> dict[str, float]:
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(
        target=_load_worker, args=(url, body, args.requests, args.concurrency, args.duration, queue)
    )
    proc.start()
    lat, wall = queue.get(timeout=args.duration + 120)
    proc.join(timeout=30)
    arr = np.asarray(lat)
    return {
        "requests": len(lat),
        "req_per_s": round(len(lat) / wall, 1),
        "p50_ms": round(float(np.percentile(arr, 50)) * 1000, 2),
        "p99_ms": round(float(np.percentile(arr, 99)) * 1000, 2),
    }


def throughput(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    """Start a real agent on loopback, make one answer cacheable, then hammer it with that request."""
    import socket
    import subprocess
    import sys
    import tempfile
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    # the answer is forced local so it is stored even without a hub to confirm it
    body = {**CHAT_BODY, "model": args.model, "edgeroute": {"route": "edge_local"}}
    with tempfile.TemporaryDirectory() as home:
        cmd = [sys.executable, "-c", "from edge_agent.cli import main; raise SystemExit(main())"]
        cmd += ["serve", "--home", home, "--port", str(port), "--model", args.model]
        agent = subprocess.Popen(cmd)
        try:
            deadline = time.monotonic() + 180
            while True:
                try:
                    urllib.request.urlopen(f"{base}/health", timeout=2).read()
                    break
                except OSError:
                    if agent.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("the agent did not come up") from None
                    time.sleep(0.5)
            routes = []
            for _ in range(2):  # the first request fills the cache, the second must hit it
                req = urllib.request.Request(
                    f"{base}/v1/chat/completions",
                    data=json.dumps(body).encode(),
                    headers={"content-type": "application/json"},
                )
                with urllib.request.urlopen(req, timeout=120) as resp:
                    routes.append(resp.headers.get("x-edgeroute-route", ""))
            console.print(f"warm-up routes: {routes}")
            if routes[-1] != "exact_cache":
                raise RuntimeError(f"the repeated request was not an exact hit: {routes}")
            console.print("load: /health (HTTP floor)")
            floor = _measure(f"{base}/health", None, args)
            console.print(floor)
            console.print("load: exact-hit chat completions")
            hits = _measure(f"{base}/v1/chat/completions", body, args)
            console.print(hits)
        finally:
            agent.terminate()
            agent.wait(timeout=30)
    return {
        "exact_hit": hits,
        "health_baseline": floor,
        "ratio_to_baseline": round(hits["req_per_s"] / max(floor["req_per_s"], 1e-9), 3),
        "concurrency": args.concurrency,
    }
