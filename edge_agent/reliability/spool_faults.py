"""T3 (disk full), T5 (corrupt and poison spool records), T8 (an outage longer than the spool's cap).

T3 puts an agent's home (cache and spool) on a disk that fills up while requests flow: a 4 MiB
tmpfs when this process may mount one, else each file capped with ``PRAGMA max_page_count`` (the
figures say which). Requests must keep being answered, every skipped cache write and every event
the spool could not take must be counted, and both must work again once space is back.

T5 flips bits in stored events, plants an undecodable row and an event too large for any frame,
then delivers to a real hub: the damaged rows are set aside and counted, the poison event is
quarantined after its tries, and every other event arrives. T8 spools three times the cap with
no hub: the spool never outgrows it, drops oldest first, and says how many it dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import msgspec

from edge_agent.api.state import STATE
from edge_agent.reliability.harness import EchoModel, EdgeOptions, HashEmbedder, chat, post_chat, start_edge
from edge_agent.telemetry.delivery import TelemetryDeliverer
from edge_agent.telemetry.spool import TelemetrySpool
from shared.hubproc import HubServer, LinkKeys
from shared.reliability import Report, Result, Size, pick, rss_bytes
from shared.telemetry import TelemetryEvent

T3_NAME = "disk full during cache writes and spool appends"
T5_NAME = "corrupt and poison spool records"
T8_NAME = "outage longer than the spool's capacity"


@contextlib.contextmanager
def small_disk(path: Path, size: str = "4m") -> Iterator[str]:
    """A tiny filesystem at ``path`` ("tmpfs"), or nothing ("max_page_count") where mounting fails."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = False
    if os.geteuid() == 0 and shutil.which("mount"):
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
            capture_output=True,
            check=False,
        )
        mounted = done.returncode == 0
    try:
        yield "tmpfs" if mounted else "max_page_count"
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def _fill(disk: Path, leave_bytes: int) -> Path:
    filler = disk / "filler"
    st = os.statvfs(disk)
    free = st.f_bavail * st.f_frsize
    with filler.open("wb") as f:
        f.write(b"\0" * max(free - leave_bytes, 0))
    return filler


def _cap_pages(conn: sqlite3.Connection, extra: int) -> None:
    (pages,) = conn.execute("PRAGMA page_count").fetchone()
    conn.execute(f"PRAGMA max_page_count = {int(pages) + extra}")


async def _t3(size: Size, work: Path, r: Report) -> None:
    disk = work / "disk"
    n = pick(size, 120, 300, 600)
    with small_disk(disk) as method:
        r.figure(method=method)
        home = disk / "edge"
        backend = EchoModel()
        edge = await start_edge(home, backend, EdgeOptions(embedder=HashEmbedder()))
        assert edge.cache is not None
        filler: Path | None = None
        try:
            if method == "tmpfs":
                filler = _fill(disk, leave_bytes=160 * 1024)
            else:
                _cap_pages(edge.cache.db.conn, 40)
                _cap_pages(edge.spool._conn, 40)
            served = errors = 0
            async with aiohttp.ClientSession() as http:
                for i in range(n):
                    # long enough that each answer is one exact-cache row of ~2 KB and nothing else
                    prompt = f"request {i} " + "lorem ipsum dolor sit amet " * 30
                    got = await post_chat(http, edge.base_url, chat(prompt, max_tokens=400))
                    served += got.status == 200
                    errors += got.status != 200
                await edge.app[STATE].pipeline.drain()
                full_stats = edge.spool.stats()
                skipped = edge.cache.store_failures
                rows_full = edge.cache.exact.stats()[0]
                # space comes back: both must write again without a restart
                if filler is not None:
                    filler.unlink()
                else:
                    _cap_pages(edge.cache.db.conn, 100_000)
                    _cap_pages(edge.spool._conn, 100_000)
                again = 0
                for i in range(20):
                    prompt = f"after {i} " + "lorem ipsum dolor sit amet " * 30
                    got = await post_chat(http, edge.base_url, chat(prompt, max_tokens=400))
                    again += got.status == 200
                await edge.app[STATE].pipeline.drain()
            after = edge.spool.stats()
            rows_after = edge.cache.exact.stats()[0]
        finally:
            await edge.close()
    spooled = full_stats.pending_events
    dropped = full_stats.dropped_events
    r.figure(
        requests=n,
        served=served,
        errors=errors,
        cache_rows=rows_full,
        cache_writes_skipped=skipped,
        events_spooled=spooled,
        events_dropped_counted=dropped,
        events_unaccounted=served - spooled - dropped,
        served_after_space_back=again,
        cache_rows_after=rows_after - rows_full,
        events_after=after.pending_events - spooled,
    )
    r.require(errors == 0, f"{errors} requests failed while the disk was full")
    r.require(skipped > 0, "no cache write was skipped: the disk never filled")
    r.require(rows_full + skipped >= served, "cache writes that neither stored nor counted")
    r.require(dropped > 0, "the spool counted no dropped event while the disk was full")
    r.require(served - spooled - dropped == 0, f"{served - spooled - dropped} events lost without a count")
    r.require(again == 20, "requests failed after space came back")
    r.require(rows_after > rows_full, "the cache did not write again once space was back")
    r.require(after.pending_events > spooled, "the spool did not write again once space was back")


def t3_disk_full(size: Size, work: Path) -> Result:
    r = Report("T3", T3_NAME)
    asyncio.run(_t3(size, work, r))
    return r.result()


# --- T5 ---------------------------------------------------------------------------------------


def _flip_last_byte(db_path: Path, seqs: list[int]) -> int:
    """Flip one bit in each row's payload; returns how many flipped payloads still decode."""
    decoder = msgspec.msgpack.Decoder(dict[str, object])
    still_decodes = 0
    conn = sqlite3.connect(db_path)
    try:
        for seq in seqs:
            (payload,) = conn.execute("SELECT payload FROM events WHERE seq = ?", (seq,)).fetchone()
            flipped = payload[:-1] + bytes([payload[-1] ^ 0x01])
            with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
                decoder.decode(flipped)
                still_decodes += 1
            conn.execute("UPDATE events SET payload = ? WHERE seq = ?", (flipped, seq))
        conn.commit()
    finally:
        conn.close()
    return still_decodes


async def _deliver_all(spool: TelemetrySpool, hub: HubServer, keys: LinkKeys, timeout_s: float) -> bool:
    from edge_agent.hub_link import HubLink
    from shared.keys import load_public

    link = HubLink(hub.endpoint, load_public(keys.hub_public_file), keys.edge_secret_file, heartbeat_s=0.3)
    await link.start()
    deliverer = TelemetryDeliverer(spool, link, interval_s=0.1, timeout_s=3.0, max_backoff_s=0.2)
    deliverer.start()
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    try:
        while loop.time() < end:
            st = spool.stats()
            if st.pending_events == 0:
                return True
            deliverer.nudge()
            await asyncio.sleep(0.1)
        return False
    finally:
        await deliverer.close()
        await link.close()


def t5_poison(size: Size, work: Path) -> Result:
    r = Report("T5", T5_NAME)
    n = pick(size, 200, 1000, 5000)
    path = work / "spool.db"
    spool = TelemetrySpool(path)
    for i in range(n):
        spool.append(TelemetryEvent(event_id=f"ok-{i:06d}", route="edge_local"))
    # poison: a valid event no frame can carry, so every send of it throws before it leaves
    spool.append(TelemetryEvent(event_id="poison", route="edge_local", completion="x" * 6_000_000))
    spool.close()
    conn = sqlite3.connect(path)
    seqs = [int(s) for (s,) in conn.execute("SELECT seq FROM events ORDER BY seq LIMIT 10 OFFSET 3")]
    flipped_ids = {str(e) for (e,) in conn.execute(
        f"SELECT event_id FROM events WHERE seq IN ({','.join('?' * 5)})", seqs[:5]
    )}  # fmt: skip
    conn.execute(
        "INSERT INTO events(event_id, payload, size) VALUES ('garbage', ?, 4)", (b"\x93\x01\x02\x03",)
    )
    conn.commit()
    conn.close()
    still_decode = _flip_last_byte(path, seqs[:5])
    keys = LinkKeys.make(work / "keys")
    hub = HubServer(keys)
    hub.start()
    try:
        spool = TelemetrySpool(path)
        drained = asyncio.run(_deliver_all(spool, hub, keys, pick(size, 60.0, 120.0, 300.0)))
        stats = spool.stats()
        spool.close()
        ids = set(hub.stored_event_ids())
    finally:
        hub.stop()
    expected = {f"ok-{i:06d}" for i in range(n)} - flipped_ids
    r.figure(
        events_sent=n,
        corrupt_planted=6,
        corrupt_counted=stats.corrupt_events,
        poison_quarantined=stats.quarantined_events,
        delivered=len(ids & expected),
        lost=len(expected - ids),
        damaged_delivered=len(ids & (flipped_ids | {"garbage", "poison"})),
        flipped_that_still_decode=still_decode,
        drained=drained,
    )
    r.require(drained, "the spool never drained: a bad record blocks delivery")
    r.require(stats.corrupt_events == 6, f"{stats.corrupt_events} of 6 damaged records counted")
    r.require(stats.quarantined_events == 1, f"{stats.quarantined_events} poison records quarantined, not 1")
    r.require(not expected - ids, f"{len(expected - ids)} good events never reached the hub")
    r.require(not ids & (flipped_ids | {"garbage", "poison"}), "a damaged record was delivered")
    # the checksum is what caught the flips: most of them still decode as valid msgpack
    r.control(still_decode > 0, "the record checksum (flipped payloads that still decode)")
    return r.result()


# --- T8 ---------------------------------------------------------------------------------------


def t8_capacity(size: Size, work: Path) -> Result:
    r = Report("T8", T8_NAME)
    cap = pick(size, 1, 4, 10) * 1024 * 1024
    spool = TelemetrySpool(work / "spool.db", max_bytes=cap)
    rss0 = rss_bytes()
    sent = 0
    biggest = 0
    pad = "p" * 400
    while sent * 500 < 3 * cap:
        event = TelemetryEvent(event_id=f"e{sent:08d}", route="edge_local", escalation_reason=pad)
        spool.append(event)
        biggest = max(biggest, spool.stats().pending_bytes) if sent % 200 == 0 else biggest
        sent += 1
    stats = spool.stats()
    conn = sqlite3.connect(work / "spool.db")
    (oldest,) = conn.execute("SELECT min(event_id) FROM events").fetchone()
    conn.close()
    spool.close()
    growth = (rss_bytes() - rss0) / 1e6
    kept = stats.pending_events
    r.figure(
        cap_bytes=cap,
        events_sent=sent,
        events_kept=kept,
        events_dropped=stats.dropped_events,
        unaccounted=sent - kept - stats.dropped_events,
        max_bytes_seen=max(biggest, stats.pending_bytes),
        rss_growth_mb=growth,
    )
    r.require(max(biggest, stats.pending_bytes) <= cap, "the spool outgrew its cap")
    r.require(stats.dropped_events > 0, "no drop was counted past the cap")
    r.require(sent == kept + stats.dropped_events, "events neither kept nor counted as dropped")
    r.require(oldest == f"e{sent - kept:08d}", f"not oldest-first: the oldest kept is {oldest}")
    r.require(growth < 50, f"RSS grew {growth:.0f} MB")
    return r.result()
