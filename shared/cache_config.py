"""Settings of the answer caches: the edge's own (``CacheSettings``), the hub's shared one
(``GlobalCacheSettings``), and where the shared cache's sockets sit beside the hub link
(``cache_endpoints``), so hub and edge agree on them with only the link configured.

``shared.config`` re-exports all three; the settings models nest them (``EdgeSettings.cache``,
``HubSettings.global_cache``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field


class CacheSettings(BaseModel):
    """Edge caches. ``path`` defaults to ``<home>/cache.db``; ``hub_*`` endpoints enable global sync."""

    enabled: bool = True
    path: Path | None = None
    exact_ttl_s: float = 7 * 24 * 3600.0
    semantic_ttl_s: float = 7 * 24 * 3600.0
    time_bucket_s: float = 3600.0  # time-sensitive requests only hit within the same bucket
    max_entries: int = 200_000
    max_bytes: int = 512 * 1024 * 1024
    pool_size: int = 3  # answers kept per key when temperature > 0
    semantic: bool = True
    min_cosine: float = 0.80  # candidates below this never reach the verifier
    # a floor under every domain's threshold, stricter than the fitted points; None keeps them (the
    # shipped "safe" point, fitted at 2% false hits on QQP train, serves identical questions only)
    min_verifier_probability: float | None = None
    verifier_file: Path | None = None  # else the weights shipped with the package
    # domain → the false-hit rate it may be served at instead of the safe default ({"chat": 0.05}):
    # the verifier's point fitted at that rate on its training split; the trace names it
    # "relaxed:<domain>", and an audit can still raise it
    relaxed_domains: dict[str, float] = Field(default_factory=dict)
    # log every semantic hit (both questions, probability, domain) for `edge-agent cache audit`
    audit_log: bool = True
    # grey-zone candidates go to the hub's judge (off the request path); approvals come back as
    # aliases through the global-cache feed. Beyond ``judge_queue`` waiting, candidates are dropped
    hub_judge: bool = True
    judge_queue: int = Field(default=256, ge=1)
    # answered misses waiting to be embedded into the semantic index on spare CPU; beyond this
    # (an edge busier than its CPU can index) they are dropped and counted, never waited for
    index_queue: int = Field(default=256, ge=1)
    # while ready work waits longer than this for the event loop (its moving average), answered
    # misses are not indexed: serving comes first (``edge_agent.cache.headroom``); None: never shed
    index_max_loop_lag_ms: float | None = Field(default=5.0, gt=0.0)
    # at most this many answered misses indexed a second (the embedding is not free even on spare
    # CPU: it slows the loop on a core that shares its silicon); more wait in the queue. None: no cap
    index_max_per_s: float | None = Field(default=20.0, gt=0.0)
    hub_pub_endpoint: str | None = None
    hub_snapshot_endpoint: str | None = None


def cache_endpoints(endpoint: str) -> tuple[str, str]:
    """The global cache's (PUB, snapshot) endpoints next to a hub link endpoint: port+1 and port+2.

    Hub and edge both derive them this way, so configuring the link alone is enough; an ``ipc://``
    path gets ``.cache-pub`` / ``.cache-snap`` suffixes instead.
    """
    scheme, sep, rest = endpoint.partition("://")
    if not sep:
        raise ValueError(f"not a ZeroMQ endpoint: {endpoint!r}")
    if scheme == "ipc":
        return f"{endpoint}.cache-pub", f"{endpoint}.cache-snap"
    host, colon, port = rest.rpartition(":")
    if not colon or not port.isdigit() or int(port) == 0:
        raise ValueError(f"cannot derive cache endpoints from {endpoint!r}: it needs a fixed port")
    return f"{scheme}://{host}:{int(port) + 1}", f"{scheme}://{host}:{int(port) + 2}"


class GlobalCacheSettings(BaseModel):
    """The hub's shared answer cache; ``*_bind`` default to the link's port+1 / port+2."""

    enabled: bool = True
    path: Path | None = None  # default <home>/global_cache.db
    pub_bind: str | None = None
    snapshot_bind: str | None = None
    min_tenants: int = Field(default=2, ge=1)  # distinct tenants that must ask before an answer is shared
    # the judge of the grey-zone candidates edges send: "head" (the pair head on MiniLM vectors,
    # milliseconds), "llm" (yes/no logits of a GGUF model, seconds), "both" (each must approve)
    # or "off" (edges are told nothing is judged here)
    judge: Literal["head", "llm", "both", "off"] = "head"
    judge_model: str = "qwen2.5-coder-0.5b-instruct"  # the llm judge: installed GGUF name or path
    judge_threads: int = Field(default=2, ge=1)
    judge_max_pending: int = Field(default=256, ge=1)  # candidates waiting beyond this are refused
