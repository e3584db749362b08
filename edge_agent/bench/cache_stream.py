"""``edge-agent bench cache stream``: a stream of questions with paraphrase repeats through a live edge.

A ``cloud-hub serve`` (echo backend, its global cache judging grey-zone candidates with
``--hub-judge``) and an ``edge-agent serve`` with the default caches, both as their own processes; a
client asks over HTTP, one request at a time, with the client's default sampling (no temperature),
every request routed to the hub on a miss.
The stream is built from labelled pairs (QQP eval by default, or ``--pairs``): for each pair its
first question, later its second, later the second again, pairs interleaved at random. The echo
backend answers a question with its own text, so each served answer names the question it was
stored for, and every hit can be graded against the pair labels:

* a hit whose answer is the asked question's own (exact or same-form) is right by construction;
* one whose answer belongs to the pair's other question is right when the pair is labelled a
  paraphrase, wrong otherwise; any other stored question's answer is wrong (no label vouches).

``true_repeats`` counts the repeats of a labelled paraphrase; ``served_true_repeats_after_first``
those served the other question's answer, i.e. through an alias the hub's judge approved after the
paraphrase's first, judged occurrence. Before a repeat the bench waits (up to ``--settle-s``) until
the edge has no candidate waiting for a verdict: what is measured is the judge's quality, not a race
between its latency and the traffic. The same stream goes through a GPTCache-style cache (one
cosine threshold of 0.8 over the same embeddings, its own store, served at once), whose latencies
are its in-process lookups (no HTTP, no hub). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from edge_agent.bench.link import _spawn, _wait_line
from edge_agent.bench.procs import free_port
from edge_agent.cache.db import connect
from edge_agent.cache.embedding import load_embedder
from edge_agent.cache.keys import CacheRequest, semantic_eligibility
from shared import paths
from shared.cache_text import question_form
from shared.keys import enroll_public_key, init_keys
from shared.paraphrase import Pair, qqp_split, read_jsonl
from shared.wire import ChatMessage

BASELINE_COSINE = 0.8
CACHE_ROUTES = ("exact_cache", "semantic_cache")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stream-pairs", type=int, default=300, help="stream: pairs in the stream")
    parser.add_argument("--seed", type=int, default=0, help="stream: which pairs, in which order")
    parser.add_argument(
        "--hub-judge", choices=("head", "llm", "both", "off"), default="head", help="stream: the hub's judge"
    )
    parser.add_argument(
        "--hub-judge-model", default="qwen2.5-coder-0.5b-instruct", help="stream: llm judge model"
    )
    parser.add_argument("--settle-s", type=float, default=120.0, help="stream: most to wait for a verdict")
    parser.add_argument(
        "--hub-judge-thresholds", type=Path,
        help="stream: the hub's judge_thresholds.json ({judge: {domain or *: threshold}})",
    )  # fmt: skip


@dataclass(frozen=True)
class Event:
    pair: int
    text: str
    role: str  # "first" | "second" | "repeat"


def build_stream(pairs: list[Pair], n: int, seed: int) -> tuple[list[Pair], list[Event]]:
    """``n`` pairs with no question shared between two of them, and their interleaved events."""
    rng = random.Random(seed)
    order = list(range(len(pairs)))
    rng.shuffle(order)
    chosen: list[Pair] = []
    seen: set[str] = set()
    for i in order:
        p = pairs[i]
        fa, fb = question_form(p.a), question_form(p.b)
        if fa == fb or fa in seen or fb in seen:
            continue
        seen |= {fa, fb}
        chosen.append(p)
        if len(chosen) == n:
            break
    timed: list[tuple[float, Event]] = []
    for k, p in enumerate(chosen):
        t = rng.random()
        t2 = t + rng.uniform(0.01, 0.2)
        timed += [(t, Event(k, p.a, "first")), (t2, Event(k, p.b, "second"))]
        timed.append((t2 + rng.uniform(0.01, 0.2), Event(k, p.b, "repeat")))
    timed.sort(key=lambda te: te[0])
    return chosen, [e for _, e in timed]


def grade(answer: str, event: Event, pairs: list[Pair]) -> str:
    """own | paraphrase (the pair's other question, labelled reusable) | wrong."""
    form = question_form(answer)
    if form == question_form(event.text):
        return "own"
    p = pairs[event.pair]
    other = p.a if event.text == p.b else p.b
    if form == question_form(other) and p.label == 1:
        return "paraphrase"
    return "wrong"


class Client:
    def __init__(self, port: int, model: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.model = model

    def ask(self, text: str) -> tuple[str, str, float]:
        """(route, answer, seconds) for one question at the client's default sampling."""
        body = json.dumps(
            {"model": self.model, "messages": [{"role": "user", "content": text}], "max_tokens": 256}
        )
        t0 = time.perf_counter()
        # misses go to the hub's echo model, so an answer names the question it was stored for
        headers = {"content-type": "application/json", "x-edgeroute-route": "hub"}
        self.conn.request("POST", "/v1/chat/completions", body, headers)
        resp = self.conn.getresponse()
        raw = resp.read()
        elapsed = time.perf_counter() - t0
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {raw[:200]!r}")
        out = json.loads(raw)
        return str(out["edgeroute"]["route"]), str(out["choices"][0]["message"]["content"]), elapsed


def _counts(db: Path) -> tuple[int, int, int]:
    """(pairs waiting for a verdict, approvals, aliases held) in the edge's cache file."""
    try:
        conn = connect(db, readonly=True)
    except Exception:
        return 0, 0, 0
    try:
        states = dict(conn.execute("SELECT state, count(*) FROM sem_judged GROUP BY state").fetchall())
        (aliases,) = conn.execute("SELECT count(*) FROM sem_aliases").fetchone()
        return int(states.get("sent", 0)), int(states.get("approved", 0)), int(aliases)
    except Exception:  # tables not created yet
        return 0, 0, 0
    finally:
        conn.close()


def _eligible(text: str) -> bool:
    """Whether the edge's semantic stage takes this question at all (personal, dated: never)."""
    return semantic_eligibility(CacheRequest(tenant="", model="", messages=(ChatMessage("user", text),))).ok


def _settle(db: Path, text: str, timeout_s: float) -> None:
    """Until the question is indexed, no candidate waits for a verdict and every approval arrived."""
    if not _eligible(text):
        return  # never indexed, never judged
    end = time.monotonic() + timeout_s
    form = question_form(text)
    while time.monotonic() < end:
        sent, approved, aliases = _counts(db)
        try:
            conn = connect(db, readonly=True)
            try:
                indexed = (
                    conn.execute("SELECT 1 FROM sem_entries WHERE qform = ?", (form,)).fetchone() is not None
                )
            finally:
                conn.close()
        except Exception:
            indexed = False
        if indexed and sent == 0 and aliases >= approved:
            return
        time.sleep(0.02)


def _ms(xs: list[float], q: float) -> float | None:
    return round(float(np.percentile(xs, q)) * 1000, 3) if xs else None


def _summary(rows: list[tuple[Event, bool, str, float]], pairs: list[Pair]) -> dict[str, Any]:
    """rows: (event, hit, grade, seconds)."""
    true_repeats = [r for r in rows if r[0].role == "repeat" and pairs[r[0].pair].label == 1]
    served_par = [r for r in true_repeats if r[1] and r[2] == "paraphrase"]
    hits = [r for r in rows if r[1]]
    buckets = np.array_split(np.arange(len(rows)), 10)
    return {
        "questions": len(rows),
        "true_repeats": len(true_repeats),
        "served_true_repeats_after_first": len(served_par),
        "served_true_repeat_rate": round(len(served_par) / max(len(true_repeats), 1), 4),
        "served_hits": len(hits),
        "paraphrase_hits": sum(1 for r in hits if r[2] == "paraphrase"),
        "own_answer_hits": sum(1 for r in hits if r[2] == "own"),
        "wrong_hits": sum(1 for r in hits if r[2] == "wrong"),
        "wrong_hit_rate": round(sum(1 for r in hits if r[2] == "wrong") / max(len(hits), 1), 4),
        "hit_rate_over_time": [round(float(np.mean([rows[i][1] for i in b])), 3) for b in buckets if len(b)],
        "hit_p50_ms": _ms([r[3] for r in hits], 50),
        "hit_p99_ms": _ms([r[3] for r in hits], 99),
        "miss_p50_ms": _ms([r[3] for r in rows if not r[1]], 50),
        "miss_p99_ms": _ms([r[3] for r in rows if not r[1]], 99),
    }


def baseline(events: list[Event], pairs: list[Pair]) -> dict[str, Any]:
    """GPTCache-style: embed, serve the nearest stored question at cosine ≥ 0.8, else store it."""
    embedder = load_embedder(paths.models_dir())
    stored: list[str] = []
    vecs: list[np.ndarray[Any, Any]] = []
    rows: list[tuple[Event, bool, str, float]] = []
    for e in events:
        t0 = time.perf_counter()
        v = embedder.embed([e.text])[0]
        best = -1.0
        found = ""
        if vecs:
            sims = np.stack(vecs) @ v
            k = int(np.argmax(sims))
            best, found = float(sims[k]), stored[k]
        elapsed = time.perf_counter() - t0
        if best >= BASELINE_COSINE:
            rows.append((e, True, grade(found, e, pairs), elapsed))
        else:
            stored.append(e.text)
            vecs.append(v)
            rows.append((e, False, "", elapsed))
    return _summary(rows, pairs)


def _hub_judged(db: Path) -> tuple[int, list[tuple[str, str, bool]]]:
    conn = connect(db, readonly=True)
    try:
        rows = conn.execute("SELECT cached, query, approved FROM gc_judged").fetchall()
    finally:
        conn.close()
    return len(rows), [(str(c), str(q), bool(a)) for c, q, a in rows]


def _judge_figures(judged: list[tuple[str, str, bool]], pairs: list[Pair]) -> dict[str, Any]:
    """The hub judge's precision and recall on the stream's candidates, by the pair labels."""
    label = {(question_form(p.a), question_form(p.b)): p.label for p in pairs}
    graded = [(a, label.get((question_form(c), question_form(q)), 0)) for c, q, a in judged]
    approved = [y for a, y in graded if a]
    positives = sum(y for _, y in graded)
    return {
        "candidates": len(graded),
        "reusable": positives,
        "approved": len(approved),
        "precision": round(sum(approved) / len(approved), 4) if approved else None,
        "recall": round(sum(approved) / positives, 4) if positives else None,
    }


def stream(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    if args.pairs:
        pool = [
            Pair(str(r["text_a"]), str(r["text_b"]), int(str(r["label"])))
            for p in args.pairs
            for r in read_jsonl(p)
        ]
    else:
        pool = qqp_split("eval")
    pairs, events = build_stream(pool, args.stream_pairs, args.seed)
    console.print(
        f"stream: {len(pairs)} pairs ({sum(p.label for p in pairs)} paraphrases), {len(events)} questions"
    )
    with tempfile.TemporaryDirectory(prefix="edgeroute-bench-stream-") as td:
        tmp = Path(td)
        hub_pub, _ = init_keys(tmp / "hub" / "keys")
        edge_pub, _ = init_keys(tmp / "edge" / "keys")
        enroll_public_key(edge_pub, tmp / "hub" / "enrolled")
        if args.hub_judge_thresholds is not None:  # what `cloud-hub cache judge fit` would have written
            (tmp / "hub").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(args.hub_judge_thresholds, tmp / "hub" / "judge_thresholds.json")
        hub_yaml = tmp / "hub.yaml"
        hub_yaml.write_text(
            "models:\n  - name: echo\n    backend: echo\ndefault_model: echo\nheartbeat_s: 1.0\n"
            f"global_cache:\n  judge: {args.hub_judge}\n  judge_model: {args.hub_judge_model}\n"
        )
        port = free_port()
        hub_port = free_port()
        hub_cmd = [str(Path(sys.executable).with_name("cloud-hub")), "serve", "--home", str(tmp / "hub")]
        hub = _spawn([*hub_cmd, "--bind", f"tcp://127.0.0.1:{hub_port}", "--config", str(hub_yaml)])
        edge: subprocess.Popen[bytes] | None = None
        try:
            endpoint = _wait_line(hub, "hub ready on ", timeout_s=300)
            cmd = [sys.executable, "-c", "from edge_agent.cli import main; raise SystemExit(main())"]
            cmd += ["serve", "--home", str(tmp / "edge"), "--port", str(port), "--model", args.model]
            cmd += ["--hub", endpoint, "--hub-key", str(hub_pub)]
            # the stream replays questions as fast as the echo model answers them, faster than a
            # client asks: the indexing rate cap (a CPU budget) would leave first occurrences out
            (tmp / "edge.yaml").write_text("cache:\n  index_max_per_s: null\n")
            cmd += ["--config", str(tmp / "edge.yaml")]
            edge = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            client = _wait_client(edge, port, args.model)
            db = tmp / "edge" / "cache.db"
            rows: list[tuple[Event, bool, str, float]] = []
            for n, e in enumerate(events):
                if e.role == "repeat":
                    _settle(db, e.text, args.settle_s)
                route, answer, elapsed = client.ask(e.text)
                hit = route in CACHE_ROUTES
                rows.append((e, hit, grade(answer, e, pairs) if hit else "", elapsed))
                if (n + 1) % 100 == 0:
                    console.print(f"  {n + 1}/{len(events)}: {sum(r[1] for r in rows)} hits")
            result = _summary(rows, pairs)
            judge_calls, judged = _hub_judged(tmp / "hub" / "global_cache.db")
        finally:
            if edge is not None:
                edge.terminate()
                edge.wait(timeout=30)
            hub.terminate()
            hub.wait(timeout=30)
    result["judge"] = args.hub_judge
    result["judge_calls"] = judge_calls
    result["judge_calls_per_hit"] = round(judge_calls / max(result["paraphrase_hits"], 1), 3)
    result["judge_on_stream"] = _judge_figures(judged, pairs)
    console.print("baseline: GPTCache-style cosine ≥ 0.8 on the same stream")
    result["baseline"] = baseline(events, pairs)
    return result


def _wait_client(proc: subprocess.Popen[bytes], port: int, model: str) -> Client:
    """The edge up and connected to the hub (a bypassed warm-up question comes back from it)."""
    deadline = time.monotonic() + 300
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "warm-up"}], "max_tokens": 8})
    headers = {"content-type": "application/json", "x-edgeroute-route": "hub", "x-edgeroute-cache": "bypass"}
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("POST", "/v1/chat/completions", body, headers)
            resp = conn.getresponse()
            if resp.status == 200 and resp.getheader("x-edgeroute-route", "").startswith("hub"):
                return Client(port, model)
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError("the edge did not come up connected to the hub")


def report(result: dict[str, Any], console: Console) -> None:
    base = result["baseline"]
    for name, r in (("edge + hub judge", result), ("cosine 0.8 baseline", base)):
        console.print(
            f"{name}: {r['served_hits']} hits of {r['questions']}, {r['wrong_hits']} wrong "
            f"({r['wrong_hit_rate']:.1%}); true repeats served {r['served_true_repeats_after_first']}"
            f"/{r['true_repeats']}; hit p50 {r['hit_p50_ms']} ms, miss p50 {r['miss_p50_ms']} ms"
        )
    console.print(f"judge on the stream: {result['judge_on_stream']}")
