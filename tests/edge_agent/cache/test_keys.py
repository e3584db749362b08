"""Cache keys stay what stored entries were filed under, and each is worked out once a request."""

from __future__ import annotations

from edge_agent.cache.keys import CacheRequest, exact_key, once
from shared.wire import ChatMessage, SamplingParams

NOW = 1_700_000_000.0


def _req(*messages: ChatMessage, model: str = "qwen2.5-coder-0.5b-instruct") -> CacheRequest:
    params = SamplingParams(max_tokens=64, temperature=0.0)
    return CacheRequest(tenant="acme", model=model, messages=messages, params=params, now=NOW)


def test_keys_are_the_ones_existing_cache_files_hold() -> None:
    # recorded before the key code was last reworked for speed: a different digest here would
    # turn every stored entry, and every key the hub publishes, into a miss
    asked = ChatMessage("user", "  What is\tthe capital\u00a0of France? ")
    req = _req(ChatMessage("system", "Be  brief."), asked)
    assert exact_key(req) == "1e9724b47e9da3b80715446431bd323f2e0fcfc5210070267fef56c445fc8361"
    assert req.own_scope == "43a0d60b4a98eb09cfa6f025df0e4dce"
    assert req.shared_scope == "65182742ff740115fc08d9086e4c9c19"
    assert req.eligibility.question == "What is the capital of France?"
    timely = CacheRequest(
        tenant="acme", model="m", messages=(ChatMessage("user", "What is the weather today?"),), now=NOW
    )
    assert exact_key(timely) == "d99a22c9c1a0a56dafba5c6ebdeaa5ea7f40d12616af0f97fc9f02f99afbfa5a"


def test_a_once_property_is_computed_once_per_object() -> None:
    calls: list[int] = []

    class Box:
        def __init__(self, n: int) -> None:
            self.n = n

        @once
        def doubled(self) -> int:
            """Twice n."""
            calls.append(self.n)
            return self.n * 2

    a, b = Box(1), Box(2)
    assert (a.doubled, a.doubled, b.doubled) == (2, 2, 4)
    assert calls == [1, 2]
    assert isinstance(Box.__dict__["doubled"], once) and Box.doubled.__doc__ == "Twice n."


def test_a_frozen_request_memoises_its_derived_parts() -> None:
    req = _req(ChatMessage("user", "Why is the sky blue?"))
    assert req.eligibility is req.eligibility and req.raw_identity is req.raw_identity
    assert "eligibility" in vars(req)  # stored on the instance: later reads skip the descriptor
