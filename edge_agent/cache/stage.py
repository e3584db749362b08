"""The pipeline's cache stage: ``AnswerCache`` over ``CacheService``.

The pipeline only knows its small protocol (``edge_agent.request.AnswerCache``); this adapter
turns an ``InferenceRequest`` into the ``CacheRequest`` the service keys on, so either side can
change without touching the routing code. Chat requests only: a legacy completion is a raw text
continuation, not a question.

What runs where, so that a request the caches cannot answer costs it almost nothing:

* on the event loop, before the answer: the exact read, then the semantic stage's form read (the
  same question stored, or an alias from the hub's judge): indexed reads of tens of microseconds,
  cheaper than a hop to a thread. At the shipped safe point that is the whole semantic lookup.
* in a worker thread, before the answer, only for a domain relaxed to serve paraphrases: embed,
  search and verify. Reads go through per-thread snapshots, so no lookup waits for a store.
* after the answer (the pipeline's background bookkeeping): the exact store, on the loop, one
  transaction for the answers released in the same loop turn (``edge_agent.cache.writes``); the
  semantic store straight away when the lookup embedded the question, else on spare CPU
  (``edge_agent.cache.indexer``), which also looks for a grey-zone candidate; grey candidates go
  to the hub's judge (``edge_agent.cache.grey``).

The exact store's flush is queued in the bookkeeping task's first step, ahead of whatever a
request read meanwhile resumes to do, so a repeat asked after its answer went out finds the entry
whatever the indexer is still doing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from edge_agent.cache import aliases
from edge_agent.cache.base import Vectors
from edge_agent.cache.embedding import MemoEmbedder, embed_each
from edge_agent.cache.grey import GreyCandidate, GreyQueue, JudgeClient
from edge_agent.cache.headroom import LoopLag
from edge_agent.cache.keys import CacheRequest
from edge_agent.cache.service import CacheService
from edge_agent.cache.writes import ExactWrites, IndexWrites
from edge_agent.request import Answer, CacheHit, CacheLookup, InferenceRequest
from shared.taxonomy import Route
from shared.wire import CacheJudgeRequest, Scalar, TraceStep

log = logging.getLogger(__name__)

_CACHE_ROUTES = {Route.EXACT_CACHE.value: Route.EXACT_CACHE, Route.SEMANTIC_CACHE.value: Route.SEMANTIC_CACHE}


def cache_request(req: InferenceRequest) -> CacheRequest | None:
    """What the cache keys ``req`` on; ``None`` for requests the cache never serves."""
    if req.prompt is not None or not req.messages:
        return None
    return CacheRequest(tenant=req.ctx.tenant, model=req.model, messages=req.messages, params=req.params)


@dataclass(frozen=True, eq=False)
class StageLookup(CacheLookup):
    """A lookup that also carries what it keyed the request on, so its store need not key it again."""

    key: CacheRequest | None = None


def grey_detail(steps: Sequence[TraceStep]) -> dict[str, Scalar] | None:
    """The grey-zone candidate a semantic step found, if any (``grey_entry`` and its scores)."""
    for step in steps:
        if step.stage == Route.SEMANTIC_CACHE and "grey_entry" in step.detail:
            return dict(step.detail)
    return None


class CacheStage:
    def __init__(self, service: CacheService, judge: JudgeClient | None = None) -> None:
        self.service = service
        settings = service.settings
        self.grey: GreyQueue | None = None
        if judge is not None and settings.hub_judge and service.semantic is not None:
            self.grey = GreyQueue(service.db, judge, capacity=settings.judge_queue)
        self.exact_writes = ExactWrites(service)
        self.writes = IndexWrites(service)
        self.load = LoopLag(limit_ms=settings.index_max_loop_lag_ms)
        self.shed = 0  # answered misses not indexed because the loop had no room (``headroom``)
        # one callable for every job, so the indexer can batch them
        self._embed_batch: Callable[[list[str]], Sequence[Vectors | None]] | None = None
        if service.semantic is not None:
            embedder = service.semantic.embedder
            each = embedder.embed_spare_each if isinstance(embedder, MemoEmbedder) else None
            self._embed_batch = each or partial(embed_each, embedder)

    async def lookup(self, req: InferenceRequest) -> CacheLookup:
        key = cache_request(req)
        if key is None:
            skipped = TraceStep(Route.EXACT_CACHE, "skip", "text completions are not cached")
            return CacheLookup(None, [skipped])
        service = self.service
        self.exact_writes.flush_for(key)  # an entry still lingering is read like any other
        result = service.lookup_exact(key)
        if not result.hit and service.settings.enabled:
            result = service.semantic_form(key, result)
            if not result.hit and service.semantic_meaning_applies(key):
                result.trace.pop()  # replaced by the meaning step's own
                result = await asyncio.to_thread(service.semantic_meaning, key, result)
        found = result.answer
        if found is None:
            return StageLookup(None, result.trace, result.embedding, key)
        route = _CACHE_ROUTES.get(found.stage, Route.EXACT_CACHE)
        return StageLookup(CacheHit(found.text, found.model, route), result.trace, result.embedding, key)

    async def store(self, req: InferenceRequest, answer: Answer, looked: CacheLookup | None) -> None:
        key = looked.key if isinstance(looked, StageLookup) and looked.key is not None else cache_request(req)
        # a fallback answer is what the policy judged not good enough: never make it reusable
        if key is None or answer.fallback:
            return
        if await self.exact_writes.put(key, answer.text, answer.model):
            await self._index(key, answer, looked)

    async def _index(self, key: CacheRequest, answer: Answer, looked: CacheLookup | None) -> None:
        """The semantic entry: now when the lookup embedded the question, else once the indexer
        embedded it on spare CPU, in a batch (this bookkeeping task waits for that; the answer is
        long out). The search for a grey candidate and the write then run on the loop, batched
        (``edge_agent.cache.writes``): in a worker thread they would contend with it for the
        interpreter lock, which measured slower for the requests being served. While the loop
        has no room (``edge_agent.cache.headroom``) the miss is not indexed at all (``shed``)."""
        sem, indexer = self.service.semantic, self.service.indexer
        if sem is None or indexer is None or self._embed_batch is None or not key.eligibility.ok:
            return
        vector = looked.embedding if looked is not None else None
        grey = grey_detail(looked.steps) if looked is not None and vector is not None else None
        if vector is None and self.load.busy():
            self.shed += 1
            return
        if vector is None:
            vector = await indexer.run_batched(self._embed_batch, key.eligibility.question)
            if vector is None:
                return  # dropped (the edge is busier than its spare CPU) or failed (logged)
        # a lookup that embedded the question also searched: its grey candidate is known already
        search = self.grey is not None and (looked is None or looked.embedding is None)
        searched = await self.writes.put(key, answer.text, answer.model, vector, search=search)
        if searched is not None:
            grey = grey_detail([searched.trace(Route.SEMANTIC_CACHE)])
        candidate = self._candidate(key, grey) if grey is not None else None
        if candidate is not None and self.grey is not None:
            self.grey.offer(candidate)

    def _candidate(self, key: CacheRequest, grey: dict[str, Scalar]) -> GreyCandidate | None:
        sem = self.service.semantic
        if self.grey is None or sem is None:
            return None
        material = sem.judge_material(int(grey["grey_entry"] or 0), key.now)
        if material is None:
            return None
        cached_question, cached_answer, _domain = material
        question = key.eligibility.question
        request = CacheJudgeRequest(
            judge_id=self.grey.next_id(),
            tenant=key.tenant_scope,
            family=key.family,
            sys_hash=key.partition_hash,  # the alias is filed under the partition it was judged in
            question=question,
            cached_question=cached_question,
            answer=cached_answer,
            domain=key.domain,
            cosine=float(grey.get("grey_cosine") or 0.0),
            probability=float(grey.get("grey_probability") or 0.0),
        )
        return GreyCandidate(
            aliases.pair_id(key.own_scope, question, cached_question, cached_answer), request
        )

    async def drain(self) -> None:
        """Wait until every grey candidate offered so far has its verdict (indexing is part of
        each answer's bookkeeping, which the pipeline's own ``drain`` waits for)."""
        if self.grey is not None:
            await self.grey.drain()

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        """Write the lingering exact entries and stop sending grey candidates (the app closes this
        before the service it writes to)."""
        self.exact_writes.close()
        self.load.close()
        if self.grey is not None:
            await self.grey.aclose()
