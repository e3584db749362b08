"""T32 (streaming failover never splices two answers) and T34 (client disconnects cancel hub work).

T32 streams answers from a hub whose upstream fails on cue: before the first token (HTTP 500),
with a 200 that carries an error event before any token, after some tokens (the connection cut),
and with an error event after some tokens. A failure before the first token must give one clean
local stream; a failure after it must end the stream with one in-band error after exactly the
tokens the hub sent, with no local text added and no ``[DONE]``. The upstream's answers start
with "<model> says:", which the local echo never writes, so any splice shows.

T34 sends escalations (streamed and not) to a slow upstream and hangs up each client after a
moment. The hang-up must travel all the way: the agent cancels its escalation, the hub cancels
its backend call, and the upstream sees its caller go; nothing is left running afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from pathlib import Path

import aiohttp

from edge_agent.reliability.harness import (
    EchoModel,
    EdgeOptions,
    HubAccess,
    chat,
    post_chat,
    post_stream,
    settle,
    start_edge,
    wait_connected,
)
from shared.hubproc import HubServer, LinkKeys
from shared.reliability import Report, Result, Size, pick, wait_for
from shared.upstream import ScriptedUpstream, model_entries

T32_NAME = "streaming failover never splices two answers"
T34_NAME = "client disconnects cancel hub work"

# behaviour → what the client must see: "local" (a clean local stream), "hub" (the hub's whole
# answer), or the number of hub words before one in-band error
TRIALS: tuple[tuple[str, str | int], ...] = (
    ("status:500", "local"),
    ("ok", "hub"),
    ("cut:3", 3),
    ("ok", "hub"),
    ("inband:0", "local"),
    ("ok", "hub"),
    ("inband:2", 2),
    ("ok", "hub"),
)


async def _t32(size: Size, work: Path, r: Report) -> None:
    rounds = pick(size, 5, 40, 125)  # x 8 trials: 40 / 320 / 1,000 streams
    upstream = ScriptedUpstream()
    await upstream.start()
    keys = LinkKeys.make(work / "keys")
    hub = HubServer(keys, models=model_entries(upstream.base_url, ["a"]), default_model="a")
    await asyncio.to_thread(hub.start)
    edge = await start_edge(
        work / "edge", EchoModel(), EdgeOptions(hub=HubAccess(hub.endpoint, keys), cache=False)
    )
    counts = {"clean_local": 0, "clean_hub": 0, "cut_cleanly": 0, "mixed": 0, "two_endings": 0, "other": 0}
    rng = random.Random(32)
    try:
        await wait_connected(edge)
        async with aiohttp.ClientSession() as http:
            for k in range(rounds):
                for behaviour, expect in TRIALS:
                    upstream.script("a", behaviour)
                    words = [f"w{k}", *(f"{rng.getrandbits(24):06x}" for _ in range(6))]
                    prompt = " ".join(words)
                    got = await post_stream(http, edge.base_url, chat(prompt), {"x-edgeroute-route": "hub"})
                    hub_answer = ["a", "says:", *words]
                    if got.status != 200:
                        counts["other"] += 1
                    elif got.done + len(got.errors) != 1:
                        counts["two_endings"] += 1
                    elif expect == "local":
                        ok = got.text == prompt and not got.errors
                        counts["clean_local" if ok else "mixed"] += 1
                    elif expect == "hub":
                        ok = got.text == " ".join(hub_answer) and not got.errors
                        counts["clean_hub" if ok else "mixed"] += 1
                    else:
                        assert isinstance(expect, int)
                        ok = got.text == " ".join(hub_answer[:expect]) and got.errors == [
                            "stream_interrupted"
                        ]
                        counts["cut_cleanly" if ok else "mixed"] += 1
    finally:
        await edge.close()
        await asyncio.to_thread(hub.stop)
        await upstream.close()
    total = rounds * len(TRIALS)
    r.figure(streams=total, **counts)
    r.require(counts["mixed"] == 0, f"{counts['mixed']} streams mixed two answers or lost part of one")
    r.require(counts["two_endings"] == 0, f"{counts['two_endings']} streams ended more than once (or never)")
    r.require(counts["other"] == 0, f"{counts['other']} streams did not start")
    r.require(
        counts["clean_local"] == 2 * rounds and counts["cut_cleanly"] == 2 * rounds,
        "a failure case went untested",
    )


def t32_failover(size: Size, work: Path) -> Result:
    r = Report("T32", T32_NAME)
    asyncio.run(_t32(size, work, r))
    return r.result()


# --- T34 --------------------------------------------------------------------------------------


async def _hang_up(http: aiohttp.ClientSession, url: str, n: int, stream: bool, after_s: float) -> None:
    headers = {"x-edgeroute-route": "hub"}
    body = chat(f"a slow question number {n}")
    call = post_stream(http, url, body, headers) if stream else post_chat(http, url, body, headers)
    task = asyncio.ensure_future(call)
    await asyncio.sleep(after_s)
    task.cancel()  # the client goes away: aiohttp closes its connection
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


async def _t34(size: Size, work: Path, r: Report) -> None:
    n = pick(size, 40, 300, 1000)
    upstream = ScriptedUpstream()
    await upstream.start()
    upstream.script("slow", "slow:20")
    keys = LinkKeys.make(work / "keys")
    hub = HubServer(keys, models=model_entries(upstream.base_url, ["slow"]), default_model="slow")
    await asyncio.to_thread(hub.start)
    opts = EdgeOptions(hub=HubAccess(hub.endpoint, keys), cache=False, hub_timeout_s=60.0)
    edge = await start_edge(work / "edge", EchoModel(), opts)
    try:
        await wait_connected(edge)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            batch = 20
            for start in range(0, n, batch):
                await asyncio.gather(
                    *(
                        _hang_up(http, edge.base_url, i, i % 2 == 0, 0.4)
                        for i in range(start, min(n, start + batch))
                    )
                )
        # every upstream call must end within a few seconds of its client leaving
        await asyncio.to_thread(wait_for, lambda: upstream.in_flight == 0, 15.0, 0.05)
        running = upstream.in_flight
        await settle(edge)
        assert edge.link is not None
        link_calls = len(edge.link._calls) + len(edge.link._streams)
    finally:
        await edge.close()
        await asyncio.to_thread(hub.stop)
        await upstream.close()
    calls = upstream.calls_to("slow")
    abandoned = sum(c.abandoned for c in calls)
    r.figure(
        cancels=n,
        upstream_calls=len(calls),
        upstream_calls_abandoned=abandoned,
        upstream_still_running=running,
        upstream_finished=sum(c.finished for c in calls),
        edge_link_calls_left=link_calls,
    )
    r.require(len(calls) == n, f"{len(calls)} of {n} escalations reached the upstream before the hang-up")
    r.require(abandoned == n, f"{n - abandoned} hub calls kept running after their client left")
    r.require(running == 0 and link_calls == 0, "orphan work left behind")


def t34_cancel(size: Size, work: Path) -> Result:
    r = Report("T34", T34_NAME)
    asyncio.run(_t34(size, work, r))
    return r.result()
