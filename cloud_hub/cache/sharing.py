"""The hub's global cache at work: offer each good reply, publish what becomes shareable.

The hub answers an escalation first and only then looks at whether the answer may be shared, so
sharing never delays a reply. A reply is offered when the request is deterministic (greedy or
seeded), is one standalone user question the edge asked to have filed under a model family, and
the backend finished normally; ``GlobalCacheStore`` then decides whether enough distinct tenants
asked it. The publisher's sockets live in the hub's ZeroMQ context, so the same ZAP allow-list
decides which edges may subscribe.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import zmq

from cloud_hub.cache.judge import AnswerJudge
from cloud_hub.cache.judging import THRESHOLDS_FILE, JudgeService, open_judges
from cloud_hub.cache.publisher import CachePublisher
from cloud_hub.cache.store import GlobalCacheStore
from shared.cache_text import GlobalEntry, normalize_text, system_hash
from shared.config import GlobalCacheSettings, cache_endpoints
from shared.wire import Escalate, Reply

log = logging.getLogger(__name__)

# Same bound as the edge's semantic cache: longer inputs are pasted documents, not questions.
MAX_SHARED_CHARS = 600


def shareable_question(req: Escalate, reply: Reply) -> str:
    """The question to share ``reply`` under, or "" when this exchange must stay private."""
    if req.cache_bypass or not req.cache_family:
        return ""  # the edge asked for no caching, or for this question to stay private
    if reply.finish_reason != "stop" or not reply.text.strip():
        return ""
    if req.params.temperature > 0.0 and req.params.seed is None:
        return ""  # a sampled answer is one of many: sharing it would freeze one sample for all
    convo = [m for m in req.messages if m.role not in ("system", "developer")]
    if len(convo) != 1 or convo[0].role != "user":
        return ""  # follow-ups depend on earlier turns the hub cannot vouch for
    question = normalize_text(convo[0].content)
    return question if 0 < len(question) <= MAX_SHARED_CHARS else ""


class GlobalCache:
    """Owns the store and, once ``bind`` is called, the publisher; ``observe`` feeds it replies."""

    def __init__(self, store: GlobalCacheStore, settings: GlobalCacheSettings | None = None) -> None:
        self.store = store
        self.settings = settings or GlobalCacheSettings()
        self.publisher: CachePublisher | None = None
        self.judging: JudgeService | None = None  # judges edges' grey-zone candidates, when on
        self.offered = 0
        self.published = 0
        self._closed = False

    @classmethod
    def open(cls, settings: GlobalCacheSettings, home: Path, models_dir: Path | None = None) -> GlobalCache:
        """The store at its configured path, with the configured judge when ``models_dir`` is given
        (a judge that cannot load leaves judging off; answers are still shared)."""
        path = settings.path or home / "global_cache.db"
        cache = cls(GlobalCacheStore(path, min_tenants=settings.min_tenants), settings)
        if models_dir is not None and settings.judge != "off":
            try:
                judges = open_judges(settings, models_dir)
            except (FileNotFoundError, ValueError) as exc:
                log.error("cache judge %s not loaded, judging off: %s", settings.judge, exc)
            else:
                cache.enable_judging(judges, home / THRESHOLDS_FILE)
        return cache

    def enable_judging(self, judges: list[AnswerJudge], thresholds_file: Path | None = None) -> JudgeService:
        self.judging = JudgeService(
            self.store,
            judges,
            publish=self._publish,
            thresholds_file=thresholds_file,
            max_pending=self.settings.judge_max_pending,
        )
        log.info("cache judge: %s", self.judging.name)
        return self.judging

    def _publish(self, entry: GlobalEntry) -> None:
        if self.publisher is not None and not self._closed:
            self.published += self.publisher.publish(entry)

    def bind(
        self, ctx: zmq.Context[zmq.Socket[bytes]], link_endpoint: str, public: bytes, secret: bytes
    ) -> None:
        """Start publishing next to the hub's bound ``link_endpoint`` (or at the configured binds)."""
        derived = cache_endpoints(link_endpoint)
        self.publisher = CachePublisher(
            ctx,
            self.store,
            pub_endpoint=self.settings.pub_bind or derived[0],
            snapshot_endpoint=self.settings.snapshot_bind or derived[1],
            public_key=public,
            secret_key=secret,
        )
        log.info(
            "global cache publishing on %s, snapshots on %s",
            self.publisher.pub_endpoint,
            self.publisher.snapshot_endpoint,
        )

    async def observe(self, req: Escalate, edge_id: str, reply: Reply) -> GlobalEntry | None:
        """Offer a reply the edge already has; returns the entry when it was published."""
        question = shareable_question(req, reply)
        if not question or self._closed:
            return None
        system = [m.content for m in req.messages if m.role in ("system", "developer")]
        # the hub authenticates edges, not tenants: a tenant is only distinct per edge key
        tenant = f"{edge_id}:{req.tenant}"
        self.offered += 1
        entry = await asyncio.to_thread(
            self.store.offer,
            tenant=tenant,
            question=question,
            answer=reply.text,
            family=req.cache_family,
            sys_hash=system_hash(system),
            passed_checks=True,
        )
        if entry is None or self.publisher is None:
            return entry
        self.published += self.publisher.publish(entry)
        return entry

    def close(self) -> None:
        """Close the sockets before the hub terminates their context; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self.publisher is not None:
            self.publisher.close()
        self.store.close()
