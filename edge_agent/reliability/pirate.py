"""T10 (Lazy Pirate chaos) and T11 (heartbeats: a dead hub noticed in time, a busy one never).

T10 sends numbered requests that all escalate, half of them streamed, while the hub process is
stopped (SIGSTOP: an overloaded host) or killed and restarted at random. Each request must get
exactly one answer, its own: the hub's, or the local model's within the deadline, or (for a
stream the hub broke mid-answer) one in-band error; never another request's text, never two
answers run together, never two endings.

T11 measures how long the link takes to call a SIGKILLed or SIGSTOPped hub dead while idle, and
saturates the link through a bandwidth-limited fault proxy with large answers to show that a
busy hub is never called dead (any frame counts as a sign of life).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from edge_agent.hub_link import HubLink
from edge_agent.reliability.delivery import wait_link
from edge_agent.reliability.harness import (
    EchoModel,
    EdgeOptions,
    HubAccess,
    chat,
    post_chat,
    post_stream,
    start_edge,
    wait_connected,
)
from shared.faultproxy import FaultProxy
from shared.hubproc import HubServer, LinkKeys
from shared.keys import load_public
from shared.reliability import Report, Result, Size, percentile, pick
from shared.wire import ChatMessage, Escalate, SamplingParams

T10_NAME = "Lazy Pirate chaos: numbered requests, hub stalls and crashes"
T11_NAME = "dead hub detected within the heartbeat budget"
HUB_TIMEOUT_S = 2.5


@dataclass
class Tally:
    sent: int = 0
    once: int = 0  # exactly one answer, the request's own
    by_hub: int = 0
    local: int = 0
    interrupted: int = 0  # a stream the hub broke: one in-band error, nothing spliced
    lost: int = 0  # no answer (error status, timeout)
    twice: int = 0  # two endings, or the text twice
    wrong: int = 0  # another request's text, or text spliced from two answers
    late: int = 0  # answered after the deadline allows
    refused: int = 0  # 429/503 with Retry-After, asked again
    why_lost: dict[str, int] = field(default_factory=dict)

    def lose(self, why: str) -> None:
        self.lost += 1
        self.why_lost[why] = self.why_lost.get(why, 0) + 1


async def _chaos(hub: HubServer, stop: asyncio.Event, rng: random.Random, counts: dict[str, int]) -> None:
    while not stop.is_set():
        await asyncio.sleep(rng.uniform(0.5, 2.0))
        if stop.is_set():
            break
        if rng.random() < 0.5:
            hub.pause()
            counts["stalls"] += 1
            await asyncio.sleep(rng.uniform(0.5, 3.0))
            hub.resume()
        else:
            await asyncio.to_thread(hub.kill)
            counts["crashes"] += 1
            await asyncio.sleep(rng.uniform(0.3, 1.5))
            await asyncio.to_thread(hub.start)


@dataclass
class _Answer:
    """One reply as T10 grades it, from the JSON endpoint or a stream."""

    ok: bool
    text: str
    endings: int
    errors: list[str]
    status: str
    retry_after: str
    route: str
    seconds: float


async def _ask(http: aiohttp.ClientSession, url: str, prompt: str, *, streamed: bool) -> _Answer:
    if not streamed:
        got = await post_chat(http, url, chat(prompt), timeout_s=30)
        status = f"{got.status} {got.body.get('error', {}).get('code', '')}"
        retry_after = got.headers.get("Retry-After", "")
        return _Answer(got.status == 200, got.text, 1, [], status, retry_after, got.route, got.seconds)
    s = await post_stream(http, url, chat(prompt), timeout_s=30)
    route = "edge_local" if "edge_local" in s.routes else "hub"
    return _Answer(s.status == 200, s.text, s.done, s.errors, str(s.status), s.retry_after, route, s.seconds)


def _grade(t: Tally, prompt: str, a: _Answer) -> None:
    if not a.ok:
        t.lose(f"status {a.status}")
    elif a.errors:
        # a broken stream: one error and no more, and what came before it is this answer's start
        if len(a.errors) == 1 and a.endings == 0 and prompt.startswith(a.text):
            t.interrupted += 1
            t.once += 1
        else:
            t.wrong += 1
    elif a.endings > 1 or a.text == prompt + prompt:
        t.twice += 1
    elif a.text != prompt:
        t.wrong += 1
    else:
        t.once += 1
        t.by_hub += a.route != "edge_local"
        t.local += a.route == "edge_local"
    t.late += a.seconds > HUB_TIMEOUT_S + 3.0  # the hub's deadline, then the local answer


async def _worker(
    http: aiohttp.ClientSession, url: str, worker: int, stop: asyncio.Event, t: Tally, rng: random.Random
) -> None:
    n = 0
    retry = False
    prompt = ""
    while not stop.is_set() or retry:  # a refused request is asked again even after the stop
        if not retry:
            n += 1
            prompt = f"request {worker}-{n} nonce {rng.getrandbits(48):012x}"
            t.sent += 1
        retry = False
        try:
            answer = await _ask(http, url, prompt, streamed=n % 2 == 0)
        except (TimeoutError, aiohttp.ClientError) as exc:
            t.lose(type(exc).__name__)
            continue
        if answer.status.split()[0] in ("429", "503") and answer.retry_after:
            # a fast refusal with Retry-After (the edge's admission control): the client asks again
            t.refused += 1
            retry = True
            await asyncio.sleep(min(float(answer.retry_after), 0.5))
            continue
        _grade(t, prompt, answer)


async def _t10(size: Size, work: Path, r: Report) -> None:
    duration = pick(size, 15.0, 75.0, 300.0)
    keys = LinkKeys.make(work / "keys")
    hub = HubServer(keys)
    await asyncio.to_thread(hub.start)
    opts = EdgeOptions(
        hub=HubAccess(hub.endpoint, keys), threshold=1.0, hub_timeout_s=HUB_TIMEOUT_S, cache=False
    )
    edge = await start_edge(work / "edge", EchoModel(), opts)
    rng = random.Random(10)
    tally = Tally()
    counts = {"stalls": 0, "crashes": 0}
    stop = asyncio.Event()
    try:
        await wait_connected(edge)
        async with aiohttp.ClientSession() as http:
            workers = [
                asyncio.create_task(_worker(http, edge.base_url, w, stop, tally, rng)) for w in range(6)
            ]
            chaos = asyncio.create_task(_chaos(hub, stop, rng, counts))
            await asyncio.sleep(duration)
            stop.set()
            await asyncio.gather(*workers, chaos)
    finally:
        hub.resume()
        await edge.close()
        await asyncio.to_thread(hub.stop)
    r.figure(
        duration_s=duration,
        hub_stalls=counts["stalls"],
        hub_crashes=counts["crashes"],
        requests_sent=tally.sent,
        answered_once=tally.once,
        answered_by_hub=tally.by_hub,
        answered_locally=tally.local,
        interrupted_in_band=tally.interrupted,
        lost=tally.lost,
        answered_twice=tally.twice,
        wrong_or_spliced=tally.wrong,
        past_deadline=tally.late,
        refusals_retried=tally.refused,
        why_lost=", ".join(f"{k}: {v}" for k, v in sorted(tally.why_lost.items())),
    )
    r.require(
        tally.sent == tally.once, f"{tally.sent - tally.once} of {tally.sent} requests not answered once"
    )
    r.require(tally.lost == 0, f"{tally.lost} requests got no answer")
    r.require(tally.twice == 0 and tally.wrong == 0, "duplicate, foreign or spliced answers reached clients")
    r.require(tally.late == 0, f"{tally.late} answers came after the deadline and the local answer")
    r.require(tally.by_hub > 0 and tally.local > 0, "the chaos never forced both hub and local answers")
    r.require(counts["stalls"] > 0 and counts["crashes"] > 0, "the hub was never both stalled and crashed")


def t10_pirate(size: Size, work: Path) -> Result:
    r = Report("T10", T10_NAME)
    asyncio.run(_t10(size, work, r))
    return r.result()


# --- T11 --------------------------------------------------------------------------------------


async def _time_to_dead(link: HubLink, timeout_s: float) -> float | None:
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if not link.connected:
            return time.monotonic() - start
        await asyncio.sleep(0.01)
    return None


async def _saturate(
    link: HubLink, seconds: float, up_bytes: int, answer_words: int
) -> tuple[int, int, float]:
    """Escalations of ``up_bytes`` asking for ``answer_words`` back, two at a time for ``seconds``:
    (answers, false dead verdicts, bytes per second carried)."""
    stop = time.monotonic() + seconds
    answers = false_dead = 0
    carried = 0
    words = " ".join(["x" * 9] * (up_bytes // 10))

    async def sender(k: int) -> None:
        nonlocal answers, carried
        i = 0
        while time.monotonic() < stop:
            i += 1
            req = Escalate(
                request_id=f"sat-{k}-{i}",
                model="",
                messages=[ChatMessage(role="user", content=words)],
                params=SamplingParams(max_tokens=answer_words, temperature=0.0),
                deadline=time.time() + 60,
            )
            try:
                reply = await link.escalate(req)
                answers += 1
                carried += len(words) + len(reply.text)
            except Exception:
                await asyncio.sleep(0.05)

    async def watch() -> None:
        nonlocal false_dead
        while time.monotonic() < stop:
            false_dead += not link.connected
            await asyncio.sleep(0.02)

    await asyncio.gather(sender(0), sender(1), watch())
    return answers, false_dead, carried / seconds


async def _t11(size: Size, work: Path, r: Report) -> None:
    beat = pick(size, 0.5, 1.0, 1.0)
    budget = 3 * beat + beat  # three silent intervals, plus one of jitter
    trials = pick(size, 1, 3, 5)
    keys = LinkKeys.make(work / "keys")
    hub = HubServer(keys, heartbeat_s=beat, extra={"max_frame_bytes": 8 * 1024 * 1024})
    await asyncio.to_thread(hub.start)
    link = HubLink(hub.endpoint, load_public(keys.hub_public_file), keys.edge_secret_file, heartbeat_s=beat)
    await link.start()
    kill_s: list[float] = []
    stop_s: list[float] = []
    back_s: list[float] = []
    try:
        for _ in range(trials):
            await wait_link(link)
            await asyncio.sleep(beat * 2)  # idle: only heartbeats on the wire
            await asyncio.to_thread(hub.kill)
            kill_s.append(await _time_to_dead(link, 30) or float("inf"))
            await asyncio.to_thread(hub.start)
            t0 = time.monotonic()
            await wait_link(link)
            back_s.append(time.monotonic() - t0)
            await asyncio.sleep(beat * 2)
            hub.pause()
            stop_s.append(await _time_to_dead(link, 30) or float("inf"))
            hub.resume()
        await link.close()
        # saturation through a link limited to 1 MB/s each way: first prompts so large that each
        # takes four beats to go up (short answers: only the hub's own beats come down between),
        # then prompts and answers of half a beat's worth each, both directions full
        bps = 1_000_000
        proxy = FaultProxy("127.0.0.1", hub.port)
        await proxy.start()
        proxy.up.bandwidth_bps = proxy.down.bandwidth_bps = bps
        busy = HubLink(
            proxy.endpoint, load_public(keys.hub_public_file), keys.edge_secret_file, heartbeat_s=beat
        )
        await busy.start()
        await wait_link(busy)
        phase_s = pick(size, 4.0, 10.0, 30.0)
        up = await _saturate(busy, phase_s, int(4 * beat * bps), 8)
        half = int(beat * bps / 2)
        both = await _saturate(busy, phase_s, half, half // 10)
        await busy.close()
        await proxy.close()
        answers, false_dead, load = up[0] + both[0], up[1] + both[1], max(up[2], both[2])
    finally:
        hub.resume()
        await asyncio.to_thread(hub.stop)
    r.figure(
        heartbeat_s=beat,
        detect_budget_s=budget,
        detect_kill_p50_s=percentile(kill_s, 50),
        detect_kill_max_s=max(kill_s),
        detect_stop_p50_s=percentile(stop_s, 50),
        detect_stop_max_s=max(stop_s),
        reconnect_max_s=max(back_s),
        saturated_answers=answers,
        saturated_link_bps=load,
        false_dead_verdicts=false_dead,
    )
    r.require(max(kill_s) <= budget, f"a killed hub took {max(kill_s):.2f}s to be called dead")
    r.require(max(stop_s) <= budget, f"a stopped hub took {max(stop_s):.2f}s to be called dead")
    r.require(answers > 0, "the saturation phase got no answer at all")
    r.require(false_dead == 0, f"the busy link was called dead {false_dead} times")


def t11_heartbeat(size: Size, work: Path) -> Result:
    r = Report("T11", T11_NAME)
    asyncio.run(_t11(size, work, r))
    return r.result()
