"""Child programs the crash scenarios kill: each reports every commit on stdout after it happened.

``writer`` alternates cache stores (exact and semantic, one transaction each) and spool appends,
printing ``c <i>`` after a store returned and ``s <i>`` after an append returned. Whatever the
parent read from the pipe was acknowledged: the child only says so once SQLite committed, so a
``kill -9`` at any instant may lose only work it never reported.

``deliver`` spools events and delivers them to a hub over the real link, printing ``acked <n>``
after each batch the hub acknowledged, so the parent can kill it between a send and its ack.

Run as ``python -m edge_agent.reliability.crash_child writer|deliver ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from edge_agent.cache.keys import CacheRequest
from edge_agent.cache.service import CacheService
from edge_agent.reliability.harness import HashEmbedder
from edge_agent.telemetry.spool import TelemetrySpool
from shared.config import CacheSettings
from shared.telemetry import TelemetryEvent
from shared.wire import ChatMessage, SamplingParams

GREEDY = SamplingParams(temperature=0.0, max_tokens=64)


def question(i: int) -> str:
    return f"How many legs does creature number {i} have?"


def answer(i: int) -> str:
    return f"Creature {i} has " + "many legs, " * (i % 40 + 1)


def cache_request(i: int) -> CacheRequest:
    msgs = (ChatMessage(role="user", content=question(i)),)
    return CacheRequest(tenant=f"t{i % 3}", model="m", messages=msgs, params=GREEDY)


def event_id(i: int) -> str:
    return f"crash-{i:07d}"


def open_cache(path: Path) -> CacheService:
    # no eviction within a run: every acknowledged row must still be there when checked
    cfg = CacheSettings(max_entries=10_000_000, max_bytes=1 << 40)
    return CacheService(path, cfg, embedder=HashEmbedder())


def writer(cache_db: Path, spool_db: Path, start: int, count: int) -> None:
    cache = open_cache(cache_db)
    spool = TelemetrySpool(spool_db)
    out = sys.stdout
    print("ready", flush=True)
    for i in range(start, start + count):
        req = cache_request(i)
        cache.exact.put(req, answer(i), "m")
        assert cache.semantic is not None
        cache.semantic.put(req, answer(i), "m")
        out.write(f"c {i}\n")
        out.flush()
        spool.append(TelemetryEvent(event_id=event_id(i), route="edge_local"))
        out.write(f"s {i}\n")
        out.flush()
    print("done", flush=True)


async def deliver(
    spool_db: Path, endpoint: str, hub_key: Path, secret: Path, events: int, batch: int
) -> None:
    from edge_agent.hub_link import HubLink
    from edge_agent.telemetry.delivery import TelemetryDeliverer
    from shared.keys import load_public
    from shared.reliability import wait_for_async

    spool = TelemetrySpool(spool_db)
    if spool.stats().pending_events == 0:
        for i in range(events):
            spool.append(TelemetryEvent(event_id=event_id(i), route="edge_local"))
    link = HubLink(endpoint, load_public(hub_key), secret, heartbeat_s=0.3)
    await link.start()
    if not await wait_for_async(lambda: link.connected, 30):
        # exit rather than wait for ever: the parent reads this child's lines with a timeout only
        raise RuntimeError("the hub link did not connect within 30 s")
    deliverer = TelemetryDeliverer(spool, link, timeout_s=3.0, max_events=batch)
    print("ready", flush=True)
    acked = 0
    while True:
        try:
            n = await deliverer.deliver_once()
        except Exception as exc:  # the parent's faults make sends fail: back off and resend
            print(f"retry {type(exc).__name__}", flush=True)
            await asyncio.sleep(0.1)
            continue
        if n == 0:
            break
        acked += n
        print(f"acked {acked}", flush=True)
    print("done", flush=True)
    await link.close()
    spool.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("writer")
    w.add_argument("cache_db", type=Path)
    w.add_argument("spool_db", type=Path)
    w.add_argument("--start", type=int, default=0)
    w.add_argument("--count", type=int, default=1000)
    d = sub.add_parser("deliver")
    d.add_argument("spool_db", type=Path)
    d.add_argument("endpoint")
    d.add_argument("hub_key", type=Path)
    d.add_argument("secret", type=Path)
    d.add_argument("--events", type=int, default=500)
    d.add_argument("--batch", type=int, default=50)
    args = parser.parse_args()
    if args.cmd == "writer":
        writer(args.cache_db, args.spool_db, args.start, args.count)
    else:
        asyncio.run(deliver(args.spool_db, args.endpoint, args.hub_key, args.secret, args.events, args.batch))
    return 0


if __name__ == "__main__":
    sys.exit(main())
