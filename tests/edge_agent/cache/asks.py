"""The requests and answers the cache-stage tests ask and store: one tenant, one model, greedy."""

from __future__ import annotations

from edge_agent.cache.keys import CacheRequest
from edge_agent.request import Answer, InferenceRequest
from edge_agent.tenancy import RequestContext
from shared.taxonomy import Route
from shared.wire import ChatMessage, SamplingParams, TraceStep, Usage

TENANT = "acme"
MODEL = "qwen2.5-coder-0.5b-instruct"
PARAMS = SamplingParams(max_tokens=64, temperature=0.0)


def ask(text: str, rid: str = "r") -> InferenceRequest:
    """A request as the pipeline hands it to the cache stage."""
    return InferenceRequest(
        ctx=RequestContext(request_id=rid, tenant=TENANT),
        model=MODEL,
        messages=(ChatMessage("user", text),),
        params=PARAMS,
    )


def key(text: str) -> CacheRequest:
    """The cache's view of the same request, for tests below the stage."""
    return CacheRequest(tenant=TENANT, model=MODEL, messages=(ChatMessage("user", text),), params=PARAMS)


def answered(text: str) -> Answer:
    """A local model's answer, worth storing."""
    return Answer(text, "stop", Usage(3, 5), Route.EDGE_LOCAL, "m", (TraceStep("edge_local", "answer", ""),))
