"""What a client waits for, with the pipeline's bookkeeping before the answer or after it.

The agent is the one ``edge-agent serve`` assembles (``build_app``: the local model, the SQLite
cache with its semantic stage and the installed embedder, the telemetry spool, the hub link), its
hub a ``cloud-hub serve`` with the echo backend. Requests go straight into the pipeline, so the
figures leave out the HTTP layer, which is the same in both arms. Two kinds of request, each a
question neither cache stage has seen:

local          forced to the local model, then stored (exact and semantic entries)
semantic miss  forced to the hub, then stored: the answer is quick, so bookkeeping weighs most

Each kind alternates between the two arms, request by request. ``inline`` books each answer
(telemetry, cache stores) before releasing it, as the pipeline did before; ``background`` releases
it first and books it in a task, drained untimed before the next request (its time is reported
as ``bookkeeping``). The ratio is background/inline at p50.

``pipeline share``: forced-hub requests with caches and telemetry off, interleaved with the bare
``HubLink`` round trip for the same request; the difference of the p50s is the pipeline's own
work on a request (goal: at most 1 ms).

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from aiohttp import web
from rich.console import Console
from rich.table import Table

from edge_agent.api.state import STATE
from edge_agent.assemble import build_app
from edge_agent.bench.link import ECHO_CONFIG, _spawn, _until_connected, _wait_line
from edge_agent.cache.stage import CacheStage
from edge_agent.pipeline import Pipeline
from edge_agent.policies import ThresholdPolicy
from edge_agent.request import ForcedRoute, InferenceRequest
from edge_agent.tenancy import RequestContext
from shared.cache_text import model_family
from shared.config import EdgeSettings, LocalModelConfig
from shared.keys import enroll_public_key, init_keys
from shared.wire import ChatMessage, Escalate, SamplingParams

GOAL_SHARE_MS = 1.0
TOPICS = ("volcanoes", "glaciers", "tides", "comets", "coral reefs", "deserts", "auroras", "monsoons")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    edge_model = LocalModelConfig.model_fields["name"].default
    parser.add_argument("--model", default=edge_model, help="installed name or .gguf path")
    parser.add_argument("--runs", type=int, default=30, help="timed requests per arm and kind")
    parser.add_argument("--share-runs", type=int, default=500, help="timed pairs for the pipeline share")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)


def _question(i: int) -> str:
    return f"Tell me one surprising fact about {TOPICS[i % len(TOPICS)]}, in short, as fact {i}."


def _request(i: int, force: ForcedRoute, max_tokens: int, question: str | None = None) -> InferenceRequest:
    return InferenceRequest(
        ctx=RequestContext(request_id=f"bench-{force}-{i}"),
        model="auto",
        messages=(ChatMessage("user", question or _question(i)),),
        params=SamplingParams(max_tokens=max_tokens, temperature=0.0),
        force=force,
        force_source="header",
    )


def _p50(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 3)


async def _arms(
    pipeline: Pipeline, force: ForcedRoute, args: argparse.Namespace, first: int
) -> dict[str, Any]:
    """Pairs of new questions, one per arm, in alternating order; p50 latencies in ms."""
    times: dict[str, list[float]] = {"inline": [], "background": []}
    drains: list[float] = []
    semantic_misses = 0
    for k in range(args.runs):
        arms = ("inline", "background") if k % 2 == 0 else ("background", "inline")
        for n, arm in enumerate(arms):
            pipeline.bookkeeping.background = arm == "background"
            req = _request(first + 2 * k + n, force, args.max_tokens)
            t0 = time.perf_counter()
            answer = await pipeline.answer(req)
            times[arm].append(time.perf_counter() - t0)
            t1 = time.perf_counter()
            await pipeline.drain()
            if arm == "background":
                drains.append(time.perf_counter() - t1)
            semantic_misses += any(s.stage == "semantic_cache" and s.decision == "miss" for s in answer.trace)
    pipeline.bookkeeping.background = True
    inline, background = _p50(times["inline"]), _p50(times["background"])
    # each background request against the inline one next to it: robust to load that drifts
    pairs = list(zip(times["inline"], times["background"], strict=True))
    return {
        "inline_p50_ms": inline,
        "background_p50_ms": background,
        "ratio": round(background / inline, 3) if inline else 0.0,
        "paired_ratio": round(statistics.median(b / i for i, b in pairs), 3),
        "saved_p50_ms": _p50([i - b for i, b in pairs]),
        "bookkeeping_p50_ms": _p50(drains),
        "semantic_misses": f"{semantic_misses}/{2 * args.runs}",
    }


async def _share(pipeline: Pipeline, args: argparse.Namespace) -> dict[str, Any]:
    """The same forced-hub request through the whole pipeline and through the bare link, paired."""
    hub = pipeline.hub
    assert hub is not None
    bare = Pipeline(pipeline.backend, ThresholdPolicy(1.0), hub=hub, hub_timeout_s=30)
    through: list[float] = []
    link: list[float] = []

    async def timed(call: Awaitable[object], into: list[float] | None) -> None:
        t0 = time.perf_counter()
        await call
        if into is not None:
            into.append(time.perf_counter() - t0)

    question = "alpha beta gamma delta"
    for i in range(args.share_runs + 50):  # the first 50 pairs warm up
        req = _request(i, "hub", args.max_tokens, question)
        # what the pipeline sends for ``req``, under an id of its own
        esc = Escalate(
            f"{req.ctx.request_id}-bare",
            "",
            req.hub_messages,
            req.params,
            time.time() + 30,
            tenant=req.ctx.tenant_hash,
            cache_family=model_family(req.model),
        )
        keep = i >= 50
        if i % 2:  # both orders, so neither path always runs first
            await timed(bare.answer(req), through if keep else None)
            await timed(hub.escalate(esc), link if keep else None)
        else:
            await timed(hub.escalate(esc), link if keep else None)
            await timed(bare.answer(req), through if keep else None)
    diffs = [t - b for t, b in zip(through, link, strict=True)]
    share = _p50(through) - _p50(link)
    return {
        "pipeline_p50_ms": _p50(through),
        "link_p50_ms": _p50(link),
        "share_p50_ms": round(share, 3),
        "paired_share_p50_ms": _p50(diffs),
        "within_goal": share <= GOAL_SHARE_MS,
    }


def _homes(args: argparse.Namespace, tmp: Path) -> tuple[LocalModelConfig, Path, Path]:
    """(the local model, the hub's public key file, the edge's home), keys made and enrolled."""
    hub_pub, _ = init_keys(tmp / "hub" / "keys")
    model = Path(args.model).expanduser()
    local = (
        LocalModelConfig(name=model.stem, path=model, n_threads=args.threads, n_ctx=2048)
        if model.suffix == ".gguf"
        else LocalModelConfig(name=args.model, n_threads=args.threads, n_ctx=2048)
    )
    edge_home = tmp / "edge"
    edge_pub, _ = init_keys(edge_home / "keys")
    enroll_public_key(edge_pub, tmp / "hub" / "enrolled")
    (tmp / "hub.yaml").write_text(ECHO_CONFIG)
    return local, hub_pub, edge_home


async def _measure(args: argparse.Namespace, tmp: Path, console: Console) -> dict[str, Any]:
    local, hub_pub, edge_home = await asyncio.to_thread(_homes, args, tmp)
    hub_cli = str(Path(sys.executable).with_name("cloud-hub"))
    hub_cmd = [hub_cli, "serve", "--home", str(tmp / "hub"), "--bind", "tcp://127.0.0.1:0"]
    hub = _spawn([*hub_cmd, "--config", str(tmp / "hub.yaml")])
    try:
        endpoint = await asyncio.to_thread(_wait_line, hub, "hub ready on ")
        settings = EdgeSettings(
            home=edge_home, local_model=local, hub_url=endpoint, hub_public_key_file=hub_pub
        )
        console.print(f"loading [bold]{local.name}[/] ({args.threads} threads) and the cache")
        runner = web.AppRunner(await build_app(settings))
        await runner.setup()  # starts the hub link and the app's resources, serves nothing
        try:
            pipeline = runner.app[STATE].pipeline
            if not any(isinstance(c, CacheStage) and c.service.semantic for c in pipeline.caches):
                raise RuntimeError("the semantic cache is off (embedding model not installed?)")
            if pipeline.hub is None:
                raise RuntimeError("the agent was built without its hub link")
            await _until_connected(pipeline.hub)
            for i in range(4):  # warm-up: model pages, prompt cache, embedder, first writes
                await pipeline.answer(_request(-1 - i, "edge_local", args.max_tokens))
                await pipeline.answer(_request(-10 - i, "hub", args.max_tokens))
            await pipeline.drain()
            console.print("timing: local answers")
            local_figures = await _arms(pipeline, "edge_local", args, 0)
            console.print("timing: semantic misses answered by the hub")
            miss_figures = await _arms(pipeline, "hub", args, 10_000)
            console.print("timing: the pipeline's own share of a forced-hub request")
            share = await _share(pipeline, args)
        finally:
            await runner.cleanup()
    finally:
        hub.terminate()
        await asyncio.to_thread(hub.wait, 30)
    return {"local": local_figures, "semantic_miss": miss_figures, "pipeline_share": share}


def run(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    with tempfile.TemporaryDirectory(prefix="edgeroute-bench-answer-") as tmp:
        result = asyncio.run(_measure(args, Path(tmp), console))
    table = Table(title=f"time to the answer, p50 of {args.runs} per arm (ms)")
    for col in ("request", "inline", "background", "ratio", "paired", "saved", "bookkeeping"):
        table.add_column(col, justify="right" if col != "request" else "left")
    for name in ("local", "semantic_miss"):
        f = result[name]
        table.add_row(
            name.replace("_", " "),
            *(f"{f[k]:.2f}" for k in ("inline_p50_ms", "background_p50_ms")),
            *(f"{f[k]:.3f}" for k in ("ratio", "paired_ratio")),
            *(f"{f[k]:.2f}" for k in ("saved_p50_ms", "bookkeeping_p50_ms")),
        )
    console.print(table)
    local, missed = result["local"]["semantic_misses"], result["semantic_miss"]["semantic_misses"]
    console.print(f"requests that missed the semantic stage: local {local}, semantic miss {missed}")
    s = result["pipeline_share"]
    verdict = "within" if s["within_goal"] else "OVER"
    console.print(
        f"pipeline share of a forced-hub request (caches and telemetry off): p50 {s['share_p50_ms']:.3f} ms "
        f"(paired {s['paired_share_p50_ms']:.3f} ms; pipeline {s['pipeline_p50_ms']:.3f}, "
        f"link {s['link_p50_ms']:.3f}) — {verdict} the {GOAL_SHARE_MS} ms goal"
    )
    print(json.dumps(result))
    return 0
