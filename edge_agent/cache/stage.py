"""The pipeline's cache stage: ``AnswerCache`` over ``CacheService``.

The pipeline only knows its small protocol (``edge_agent.request.AnswerCache``); this adapter
turns an ``InferenceRequest`` into the ``CacheRequest`` the service keys on, so either side can
change without touching the routing code. Chat requests only: a legacy completion is a raw text
continuation, not a question.

The exact stage is one indexed SQLite read (tens of microseconds), so it runs on the event loop:
a hop to a worker thread would cost more than the read. The semantic stage embeds text and scans
vectors, so it runs in a worker thread, one at a time, as do stores. A store reuses the vector
its own lookup embedded the question into.

Stores run after the client has its answer. A request that repeats one whose store is still
running waits for that store first, so asking again right away still finds the answer.
"""

from __future__ import annotations

import asyncio

from edge_agent.cache.keys import CacheRequest
from edge_agent.cache.service import CacheService
from edge_agent.request import Answer, CacheHit, CacheLookup, InferenceRequest
from shared.taxonomy import Route
from shared.wire import TraceStep

_CACHE_ROUTES = {Route.EXACT_CACHE.value: Route.EXACT_CACHE, Route.SEMANTIC_CACHE.value: Route.SEMANTIC_CACHE}


def cache_request(req: InferenceRequest) -> CacheRequest | None:
    """What the cache keys ``req`` on; ``None`` for requests the cache never serves."""
    if req.prompt is not None or not req.messages:
        return None
    return CacheRequest(tenant=req.ctx.tenant, model=req.model, messages=req.messages, params=req.params)


class CacheStage:
    def __init__(self, service: CacheService) -> None:
        self.service = service
        self._lock = asyncio.Lock()
        # exact keys whose store is still running, each with the event its store sets when done
        self._storing: dict[str, asyncio.Event] = {}

    async def lookup(self, req: InferenceRequest) -> CacheLookup:
        key = cache_request(req)
        if key is None:
            skipped = TraceStep(Route.EXACT_CACHE, "skip", "text completions are not cached")
            return CacheLookup(None, [skipped])
        if self._storing:
            pending = self._storing.get(self.service.exact.key(key))
            if pending is not None:
                await pending.wait()
        result = self.service.lookup_exact(key)
        if not result.hit and self.service.semantic_blocks:
            async with self._lock:
                result = await asyncio.to_thread(self.service.lookup_semantic, key, result)
        elif not result.hit and self.service.settings.enabled:
            result = self.service.lookup_semantic(key, result)
        found = result.answer
        if found is None:
            return CacheLookup(None, result.trace, result.embedding)
        route = _CACHE_ROUTES.get(found.stage, Route.EXACT_CACHE)
        return CacheLookup(CacheHit(found.text, found.model, route), result.trace, result.embedding)

    async def store(self, req: InferenceRequest, answer: Answer, looked: CacheLookup | None) -> None:
        key = cache_request(req)
        # a fallback answer is what the policy judged not good enough: never make it reusable
        if key is None or answer.fallback:
            return
        exact = self.service.exact.key(key)
        done = self._storing[exact] = asyncio.Event()
        embedding = looked.embedding if looked is not None else None
        try:
            async with self._lock:
                await asyncio.to_thread(self.service.store, key, answer.text, answer.model, embedding)
        finally:
            if self._storing.get(exact) is done:
                del self._storing[exact]
            done.set()
