"""Cost estimates per route, before the call: what the policy weighs against predicted quality."""

from __future__ import annotations

from dataclasses import dataclass

from shared.config import CostModel
from shared.taxonomy import Route

# assumed output length when a request sets no max_tokens and nothing better is known
DEFAULT_COMPLETION_TOKENS = 256


@dataclass(frozen=True)
class RouteOption:
    """One route the policy may pick: its model, price and (self-hosted) speed.

    ``seconds_per_token`` turns GPU-second prices into per-request cost. ``expected_completion``
    is the fraction of ``max_tokens`` an answer typically uses (answers rarely hit the cap).
    """

    route: Route
    model: str
    cost: CostModel
    seconds_per_token: float = 0.0
    expected_completion: float = 0.5

    def __post_init__(self) -> None:
        if not self.route.is_cache and self.estimate(100, 100) <= 0.0:
            # a free route would win every comparison: the edge must carry its energy cost
            raise ValueError(
                f"route {self.route.value} ({self.model}) has zero estimated cost; "
                "set token, GPU-second or energy prices"
            )

    def estimate(self, prompt_tokens: int, max_tokens: int | None) -> float:
        completion = max(1, int((max_tokens or DEFAULT_COMPLETION_TOKENS) * self.expected_completion))
        seconds = (
            prompt_tokens * 0.1 + completion
        ) * self.seconds_per_token  # prefill ~10x faster than decode
        return self.cost.estimate(prompt_tokens, completion, seconds)


def default_options(
    edge_model: str, edge_cost: CostModel, hub: dict[Route, tuple[str, CostModel, float]]
) -> list[RouteOption]:
    """The edge option plus one per hub route (``route -> (model, cost, seconds_per_token)``)."""
    opts = [RouteOption(Route.EDGE_LOCAL, edge_model, edge_cost)]
    opts += [RouteOption(r, m, c, s) for r, (m, c, s) in hub.items()]
    return opts
