"""Send requests through the agent's OpenAI API with the official client; keep what came back.

A *pass* is one way of serving the workload: ``routed`` lets the router choose; a baseline pins one
tier and bypasses every cache (``edgeroute.cache = "bypass"``: no read, no write), so it never
shares state with the routed pass it is compared with. A baseline answer is only counted when the
tier it pinned really answered (``covered``): a cache hit or a fall-through to another tier is not a
baseline answer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import openai

from cloud_hub.demo.workload import Request
from shared.taxonomy import Route, Tier

ROUTED = "routed"


@dataclass(frozen=True)
class Pass:
    name: str  # "routed" or a tier value
    tier: Tier | None = None
    quality_target: float | None = None

    @property
    def baseline(self) -> bool:
        return self.tier is not None

    def overrides(self) -> dict[str, object] | None:
        if self.tier is None:
            return {"quality_target": self.quality_target} if self.quality_target else None
        if self.tier is Tier.EDGE:
            return {"route": "edge_local", "cache": "bypass"}
        return {"route": "hub", "hub_model": f"tier:{self.tier.value}", "cache": "bypass"}


@dataclass
class Record:
    request: Request
    pass_name: str
    route: str = "error"
    model: str = ""
    cost_usd: float = 0.0
    latency_s: float = 0.0
    text: str = ""
    fallback: bool = False
    replayed: bool = False
    recorded_score: float | None = None
    error: str = ""
    trace: list[dict[str, Any]] = field(default_factory=list)
    score: float | None = None  # filled by scoring

    @property
    def ok(self) -> bool:
        return not self.error

    @property
    def cache_hit(self) -> bool:
        try:
            return self.ok and Route(self.route).is_cache
        except ValueError:  # "error" or a route this version does not know
            return False

    def row(self) -> dict[str, object]:
        """One line of ``records.jsonl``: enough to recompute every figure of the report."""
        item = self.request.item
        return {
            "pass": self.pass_name,
            "seq": self.request.seq,
            "item_id": item.item_id,
            "source": item.source,
            "split": item.split,
            "tenant": self.request.tenant,
            "repeat": self.request.repeat,
            "route": self.route,
            "model": self.model,
            "cost_usd": self.cost_usd,
            "latency_s": round(self.latency_s, 4),
            "score": self.score,
            "replayed": self.replayed,
            "fallback": self.fallback,
            "error": self.error,
            "text": self.text[:4000],
        }

    def covered(self, tier: Tier | None) -> bool:
        """A baseline answer counts only when the pinned tier itself answered it."""
        return self.ok and (tier is None or (self.route == tier.route.value and not self.cache_hit))


def max_tokens(kind: str) -> int:
    # enough for a letter, a short worked answer, a small function or a paragraph
    return {"mcq": 8, "math": 256, "code": 256, "chat": 128}.get(kind, 128)


def _replay_detail(trace: list[dict[str, Any]]) -> tuple[bool, float | None]:
    for step in trace:
        detail = step.get("detail") or {}
        if detail.get("replayed"):
            score = detail.get("recorded_score")
            return True, None if score is None else float(score)
    return False, None


def request_body(req: Request, p: Pass) -> dict[str, object]:
    """The extra body fields: the pass's overrides, the item's known answer as an evaluation probe
    (so the hub's evaluation grades the answer from telemetry), and an end-user id per request."""
    overrides = dict(p.overrides() or {})
    item = req.item
    if item.reference is not None and item.probe_kind is not None:
        overrides["probe"] = {"reference": item.reference, "kind": item.probe_kind}
    body: dict[str, object] = {"edgeroute": overrides} if overrides else {}
    # a repeat is someone else asking a popular question (that is what the caches are for), not the
    # asker rejecting an answer: one end user per request keeps it out of regeneration detection
    body["user"] = f"demo-{p.name}-{req.seq}"
    return body


def ask(client: openai.OpenAI, req: Request, p: Pass, api_key: str) -> Record:
    rec = Record(req, p.name)
    body = request_body(req, p)
    start = time.perf_counter()
    try:
        raw = client.chat.completions.with_raw_response.create(
            model="auto",
            messages=[{"role": "user", "content": req.item.prompt}],
            max_tokens=max_tokens(req.item.kind),
            temperature=0.0,
            extra_body=body,
            extra_headers={"Authorization": f"Bearer {api_key}"},
        )
        completion = raw.parse()
    except openai.APIError as exc:
        rec.error = f"{type(exc).__name__}: {exc}"[:300]
        return rec
    rec.latency_s = time.perf_counter() - start
    info: dict[str, Any] = (completion.model_extra or {}).get("edgeroute") or {}
    rec.route = raw.headers.get("x-edgeroute-route", str(info.get("route", "unknown")))
    rec.model = completion.model
    rec.cost_usd = float(info.get("cost_usd") or 0.0)
    rec.fallback = bool(info.get("fallback"))
    rec.trace = list(info.get("trace") or [])
    rec.replayed, rec.recorded_score = _replay_detail(rec.trace)
    rec.text = completion.choices[0].message.content or ""
    return rec


def run_pass(
    base_url: str,
    requests: Sequence[Request],
    p: Pass,
    api_keys: dict[str, str],
    *,
    concurrency: int = 4,
    on_done: Callable[[Record], None] | None = None,
) -> list[Record]:
    """Requests leave in workload order, at most ``concurrency`` in flight (a repeat can arrive while
    its original is still being answered, as in real traffic)."""
    client = openai.OpenAI(base_url=base_url, api_key="unused", timeout=600.0, max_retries=0)
    lock = threading.Lock()
    out: list[Record | None] = [None] * len(requests)

    def one(i: int) -> None:
        rec = ask(client, requests[i], p, api_keys[requests[i].tenant])
        out[i] = rec
        if on_done is not None:
            with lock:
                on_done(rec)

    try:
        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            list(pool.map(one, range(len(requests))))
    finally:
        client.close()
    return [r for r in out if r is not None]
