"""Python clients for the edge agent's API: ``EdgeClient`` (blocking) and ``AsyncEdgeClient``.

Both return typed results that keep what the agent adds to the OpenAI shapes: the route that
answered, the route trace and the cost.
"""

from edge_agent.sdk.aio import AsyncChatStream, AsyncEdgeClient
from edge_agent.sdk.client import ChatStream, EdgeClient
from edge_agent.sdk.types import ChatDelta, ChatResult, EdgeAPIError, Embeddings, Health, ModelInfo

__all__ = [
    "AsyncChatStream",
    "AsyncEdgeClient",
    "ChatDelta",
    "ChatResult",
    "ChatStream",
    "EdgeAPIError",
    "EdgeClient",
    "Embeddings",
    "Health",
    "ModelInfo",
]
