"""T19/T20 (tenant isolation, exact and semantic, with spoofing) and T21 (cancellation cross-talk).

T19: tenant A's answers are cached (the exact and the semantic stage, the real ONNX embedder);
tenant B then asks A's questions word for word, in every spelling the semantic stage treats as the
same question, in rephrasings, and with every way of claiming to be A that does not involve A's
key (body ``user``/``metadata``, tenant and OpenAI organisation headers, query strings, key
tricks). B must never get A's answer. The paired control shows the caches were there to leak: A's
own repeat hits the exact stage and A's respelled question hits the semantic one. A changed
system prompt or sampling must miss for A too (the key covers them).

T21: hundreds of concurrent requests from 50 tenants, half answered locally and half by the hub,
a fifth of them cancelled by their clients mid-flight, each carrying a nonce the echo models give
back. Every answer must carry its own request's nonce and tenant, and once the dust settles the
tasks, file descriptors, admission places and link calls in flight must be back where they were.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import aiohttp

from edge_agent.api.state import STATE
from edge_agent.cache.embedding import load_embedder
from edge_agent.reliability.harness import (
    Answered,
    EchoModel,
    EdgeOptions,
    HubAccess,
    Streamed,
    chat,
    post_chat,
    post_stream,
    settle,
    start_edge,
    wait_connected,
)
from shared.hubproc import HubServer, LinkKeys
from shared.paths import models_dir
from shared.reliability import Report, Result, Size, open_fds, pick

T19_NAME = "tenant isolation, exact and semantic, with spoofing"
T21_NAME = "cancellation cross-talk with per-request nonces"
CACHE_ROUTES = ("exact_cache", "semantic_cache")

QUESTIONS = (
    "What is the capital of France?",
    "How do I reverse a list in Python?",
    "Why is the sky blue?",
    "What does HTTP status 418 mean?",
    "How many bones are in the human body?",
)


def spellings(q: str) -> list[str]:
    """The same question as the semantic stage sees it (case, spacing, punctuation)."""
    bare = q.rstrip("?")
    return [q.lower(), q.upper(), f"  {q}  ", bare, f"{bare} ?", bare.lower() + "??", q.replace(" ", "  ")]


def rephrasings(q: str) -> list[str]:
    bare = q.rstrip("?")
    return [
        f"Please tell me: {bare.lower()}?",
        f"Quick question - {bare.lower()}?",
        f"I was wondering, {bare.lower()}?",
    ]


def spoofs(base_url: str, a_key: str, b_key: str) -> list[tuple[str, dict[str, str], dict[str, object]]]:
    """(url, headers, extra body fields): B's key on every request, A claimed every other way."""
    b = {"Authorization": f"Bearer {b_key}"}
    url = base_url
    return [
        (url, b, {"user": "tenant-a"}),
        (url, b, {"metadata": {"tenant": "tenant-a", "user": "tenant-a"}}),
        (url, b, {"safety_identifier": "tenant-a"}),
        (url, {**b, "x-tenant": "tenant-a", "x-edgeroute-tenant": "tenant-a"}, {}),
        (url, {**b, "OpenAI-Organization": "tenant-a", "OpenAI-Project": "tenant-a"}, {}),
        (url + "/v1/chat/completions?tenant=tenant-a&api_key=" + a_key, b, {}),
        (url, {"Authorization": f"Bearer {b_key} {a_key}"}, {}),
        (url, {"Authorization": f"Bearer {a_key[:-1]}"}, {}),
        (url, {"Authorization": f"bearer  {b_key}", "X-Api-Key": a_key}, {}),
        (url, {**b, "Cookie": f"api_key={a_key}"}, {}),
    ]


async def _post(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str], body: dict[str, object]
) -> tuple[int, str, str]:
    target = url if "/v1/" in url else url + "/v1/chat/completions"
    async with http.post(target, json=body, headers=headers, timeout=aiohttp.ClientTimeout(total=30)) as resp:
        data = await resp.json(content_type=None)
        text = data["choices"][0]["message"]["content"] if resp.status == 200 else ""
        return resp.status, resp.headers.get("x-edgeroute-route", ""), str(text)


async def _t19(size: Size, work: Path, r: Report) -> None:
    keys = {"tenant-a": "sk-tenant-a-0001", "tenant-b": "sk-tenant-b-0002"}
    a = {"Authorization": f"Bearer {keys['tenant-a']}"}
    b = {"Authorization": f"Bearer {keys['tenant-b']}"}
    embedder = load_embedder(models_dir())
    edge = await start_edge(work / "edge", EchoModel(tag=True), EdgeOptions(tenants=keys, embedder=embedder))
    attempts = leaks = 0
    control_exact = control_semantic = 0
    key_misses = key_checks = sampling_hits = 0
    try:
        async with aiohttp.ClientSession() as http:
            answers_a: set[str] = set()
            for q in QUESTIONS:
                status, route, text = await _post(http, edge.base_url, a, chat(q))
                assert status == 200 and route not in CACHE_ROUTES, (status, route)
                answers_a.add(text)  # tagged with its generation number: no other answer is equal
            await settle(edge)
            for q in QUESTIONS:
                # B first, so that nothing of B's own can be in the cache to hit
                probes = [(edge.base_url, b, chat(q))]
                probes += [(edge.base_url, b, chat(v)) for v in spellings(q) + rephrasings(q)]
                probes += [
                    (u, h, chat(q, **extra))
                    for u, h, extra in spoofs(edge.base_url, keys["tenant-a"], keys["tenant-b"])
                ]
                for url, headers, body in probes:
                    status, route, text = await _post(http, url, headers, body)
                    attempts += 1
                    leaks += status == 200 and text in answers_a
                await settle(edge)
                _, route, _ = await _post(http, edge.base_url, a, chat(q))
                control_exact += route == "exact_cache"
                _, route, _ = await _post(http, edge.base_url, a, chat(spellings(q)[0]))
                control_semantic += route == "semantic_cache"
                system = [{"role": "system", "content": "Answer in French."}, {"role": "user", "content": q}]
                _, route, _ = await _post(http, edge.base_url, a, chat(q, messages=system))
                key_checks += 1
                key_misses += route not in CACHE_ROUTES
                for variant in ({"temperature": 0.7, "seed": 7}, {"max_tokens": 7}, {"stop": ["#"]}):
                    _, route, _ = await _post(http, edge.base_url, a, chat(q, **variant))
                    sampling_hits += route in CACHE_ROUTES
    finally:
        await edge.close()
    r.figure(
        questions=len(QUESTIONS),
        attempts=attempts,
        leaks=leaks,
        control_exact_hits=control_exact,
        control_semantic_hits=control_semantic,
        system_prompt_variants_missed=key_misses,
        system_prompt_variants=key_checks,
        # a length limit, a stop sequence or another seed is another answer: both stages key on it
        sampling_variants_served_from_cache=sampling_hits,
    )
    r.require(leaks == 0, f"{leaks} of {attempts} probes got tenant A's cached answer")
    r.control(control_exact == len(QUESTIONS), "tenant scoping (A's own exact repeat)")
    r.control(control_semantic == len(QUESTIONS), "tenant scoping (A's own respelled question)")
    r.require(key_misses == key_checks, "a changed system prompt reused the cached answer")
    r.require(sampling_hits == 0, f"{sampling_hits} sampling variants were served a cached answer")


def t19_tenants(size: Size, work: Path) -> Result:
    r = Report("T19", T19_NAME)
    asyncio.run(_t19(size, work, r))
    return r.result()


# --- T21 --------------------------------------------------------------------------------------


async def _one(
    http: aiohttp.ClientSession,
    url: str,
    key: str,
    tenant: str,
    nonce: str,
    *,
    hub: bool,
    stream: bool,
    cancel_after: float | None,
) -> str:
    """'ok', 'crossed' (someone else's answer), 'cancelled', 'refused' or 'error'."""
    prompt = f"tenant {tenant} nonce {nonce} asks a question"
    headers = {"Authorization": f"Bearer {key}"}
    if hub:
        headers["x-edgeroute-route"] = "hub"
    call: Coroutine[Any, Any, Answered | Streamed] = (
        post_stream(http, url, chat(prompt), headers)
        if stream
        else post_chat(http, url, chat(prompt), headers)
    )
    task = asyncio.ensure_future(call)
    if cancel_after is not None:
        await asyncio.sleep(cancel_after)
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            return "cancelled"
    try:
        got = await task
    except (TimeoutError, aiohttp.ClientError):
        return "error"
    if got.status in (429, 503):
        return "refused"
    if got.status != 200:
        return "error"
    return "ok" if got.text == prompt else "crossed"


async def _t21(size: Size, work: Path, r: Report) -> None:
    n = pick(size, 200, 600, 1000)
    tenants = {f"t{i:02d}": f"sk-cross-{i:02d}-{random.Random(i).getrandbits(40):x}" for i in range(50)}
    keys = LinkKeys.make(work / "keys")
    hub = HubServer(keys)
    await asyncio.to_thread(hub.start)
    backend = EchoModel(token_delay_s=0.004, workers=8)
    opts = EdgeOptions(
        tenants=tenants,
        hub=HubAccess(hub.endpoint, keys),
        cache=False,
        settings={"admission": {"local_queue": 4 * n}},
    )
    edge = await start_edge(work / "edge", backend, opts)
    rng = random.Random(21)
    try:
        await wait_connected(edge)
        assert edge.link is not None
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            await post_chat(http, edge.base_url, chat("warm up"), edge.headers(next(iter(tenants.values()))))
            await settle(edge)
            tasks0, fds0 = len(asyncio.all_tasks()), open_fds()
            jobs = []
            for i in range(n):
                name = rng.choice(list(tenants))
                jobs.append(
                    _one(
                        http,
                        edge.base_url,
                        tenants[name],
                        name,
                        f"{i:05d}-{rng.getrandbits(32):08x}",
                        hub=i % 2 == 0,
                        stream=i % 3 == 0,
                        cancel_after=rng.uniform(0.005, 0.08) if rng.random() < 0.2 else None,
                    )
                )
            outcomes = await asyncio.gather(*jobs)
        await asyncio.sleep(1.0)  # cancelled requests' cleanup runs after their clients left
        await settle(edge)
        gates = edge.app[STATE].pipeline.admission
        held = sum(g.held for g in (gates.local_gate, gates.hub_gate) if g is not None)
        link_calls = len(edge.link._calls) + len(edge.link._streams)
        tasks1, fds1 = len(asyncio.all_tasks()), open_fds()
    finally:
        await edge.close()
        await asyncio.to_thread(hub.stop)
    counts = {k: outcomes.count(k) for k in ("ok", "crossed", "cancelled", "refused", "error")}
    r.figure(
        requests=n,
        tenants=len(tenants),
        answered=counts["ok"],
        cancelled=counts["cancelled"],
        crossed=counts["crossed"],
        refused=counts["refused"],
        errors=counts["error"],
        tasks_before=tasks0,
        tasks_after=tasks1,
        fds_before=fds0,
        fds_after=fds1,
        admission_places_held=held,
        link_calls_in_flight=link_calls,
        local_runs_active=backend.active,
    )
    r.require(
        counts["crossed"] == 0, f"{counts['crossed']} answers carried another request's nonce or tenant"
    )
    r.require(
        counts["error"] == 0 and counts["refused"] == 0,
        f"{counts['error'] + counts['refused']} requests failed",
    )
    r.require(counts["cancelled"] > 0, "no request was cancelled mid-flight")
    r.require(tasks1 <= tasks0, f"{tasks1 - tasks0} tasks left behind")
    r.require(fds1 <= fds0 + 2, f"{fds1 - fds0} file descriptors left open")
    r.require(
        held == 0 and link_calls == 0 and backend.active == 0, "admission places, link calls or runs leaked"
    )


def t21_crosstalk(size: Size, work: Path) -> Result:
    r = Report("T21", T21_NAME)
    asyncio.run(_t21(size, work, r))
    return r.result()
