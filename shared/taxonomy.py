"""Routing taxonomy: the names every trace, metric, config file and report uses.

The string values are part of the public contract (response header ``x-edgeroute-route``, the
``edgeroute`` body field, Prometheus labels), so they never change once released.
"""

from __future__ import annotations

from enum import StrEnum


class Route(StrEnum):
    """Where an answer came from, cheapest first (see ``ROUTE_ORDER``)."""

    EXACT_CACHE = "exact_cache"
    SEMANTIC_CACHE = "semantic_cache"
    ASSET_REUSE = "asset_reuse"
    EDGE_LOCAL = "edge_local"
    HUB_OSS = "hub_oss"
    HUB_FINETUNED = "hub_finetuned"
    FRONTIER = "frontier"

    @property
    def rank(self) -> int:
        return ROUTE_ORDER.index(self)

    @property
    def uses_frontier_gpu(self) -> bool:
        """The north-star metric counts requests that did *not* need the expensive tier."""
        return self is Route.FRONTIER

    @property
    def is_cache(self) -> bool:
        return self in (Route.EXACT_CACHE, Route.SEMANTIC_CACHE, Route.ASSET_REUSE)


ROUTE_ORDER: tuple[Route, ...] = (
    Route.EXACT_CACHE,
    Route.SEMANTIC_CACHE,
    Route.ASSET_REUSE,
    Route.EDGE_LOCAL,
    Route.HUB_OSS,
    Route.HUB_FINETUNED,
    Route.FRONTIER,
)

HUB_ROUTES: frozenset[Route] = frozenset({Route.HUB_OSS, Route.HUB_FINETUNED, Route.FRONTIER})


def hub_route(value: str) -> Route:
    """The hub tier a reply names; anything else (an older hub sends "") is the OSS tier."""
    return next((r for r in HUB_ROUTES if r.value == value), Route.HUB_OSS)


class Modality(StrEnum):
    TEXT = "text"
    IMAGE = "image"
    VIDEO = "video"


class TaskType(StrEnum):
    MATH = "math"
    CODE = "code"
    KNOWLEDGE = "knowledge"  # factual / multiple-choice
    CHAT = "chat"  # open-ended conversation
    WRITING = "writing"
    EXTRACTION = "extraction"
    TRANSLATION = "translation"
    REASONING = "reasoning"
    OTHER = "other"


class Domain(StrEnum):
    """Content domain; MMLU subjects fold into the first five groups."""

    STEM = "stem"
    HUMANITIES = "humanities"
    SOCIAL_SCIENCES = "social_sciences"
    MEDICINE = "medicine"
    BUSINESS_LAW = "business_law"
    MATH = "math"
    CODE = "code"
    GENERAL = "general"


class Tier(StrEnum):
    """Model tiers a registry entry can belong to; a tier maps onto one route."""

    EDGE = "edge"
    OSS = "oss"
    FINETUNED = "finetuned"
    FRONTIER = "frontier"

    @property
    def route(self) -> Route:
        return {
            Tier.EDGE: Route.EDGE_LOCAL,
            Tier.OSS: Route.HUB_OSS,
            Tier.FINETUNED: Route.HUB_FINETUNED,
            Tier.FRONTIER: Route.FRONTIER,
        }[self]


# Model ids are part of the same contract. A client that sends one of ``AUTO_MODELS`` (or the
# edge's own local model name) lets the router choose the route; ``HUB_MODEL`` sends the request to
# the hub and lets the hub choose the model; ``hub:<name>`` names the hub model. The edge forwards
# ``""`` when the client named no hub model, so the hub reads that, the router words and ``hub`` alike.
AUTO_MODEL = "auto"  # the one /v1/models lists
AUTO_MODELS: frozenset[str] = frozenset({AUTO_MODEL, "edgeroute"})
HUB_MODEL = "hub"
HUB_MODEL_PREFIX = "hub:"
HUB_CHOICE_MODELS: frozenset[str] = AUTO_MODELS | {HUB_MODEL, ""}


def named_hub_model(model: str) -> str | None:
    """The hub model ``hub:<name>`` names, or None when ``model`` is not of that form."""
    if model.startswith(HUB_MODEL_PREFIX) and len(model) > len(HUB_MODEL_PREFIX):
        return model[len(HUB_MODEL_PREFIX) :]
    return None
