from __future__ import annotations

import pytest

from edge_agent.cache.guards import check_pair, entities, numbers
from edge_agent.cache.keys import CacheRequest, semantic_eligibility
from shared.wire import ChatMessage


@pytest.mark.parametrize(
    ("a", "b", "veto"),
    [
        ("How do I enable 2FA on GitHub?", "How do I disable 2FA on GitHub?", "antonym"),
        ("What is 2+2?", "What is 2+3?", "numbers_differ"),
        ("What is 6*7?", "What is 6+7?", "operators_differ"),
        ("Is Python slow?", "Is Python not slow?", "negation_differs"),
        ("Why can't I sleep at night?", "Why can I sleep at night?", "negation_differs"),
        ("What is the capital of France?", "What is the capital of Germany?", "entities_differ"),
        ("How tall is the Eiffel Tower?", "How tall is the Tokyo Tower?", "entities_differ"),
        ("Sort a list in ascending order", "Sort a list in descending order", "antonym"),
        (
            "How do I get a visa for Germany?",
            "How do I get a Schengen visa for Germany?",
            "entity_one_sided",
        ),
        ("Best orphanages in New York?", "Best orphanages in New York City?", "entity_one_sided"),
        (
            "What are the most profitable products to import from Canada and sell in India?",
            "What are the most profitable products to import from India and sell in Canada?",
            "entity_order_differs",
        ),
        # "IT" is not hiding inside "university": names are matched as whole words
        (
            "Which is the best university to do distance MBA in India?",
            "Which is the best university to do distance MBA in IT in India?",
            "entity_one_sided",
        ),
        ("What is the song playing in this video?", "What song is playing in this video?", "deictic"),
        ("How could this logo be improved?", "How can this logo be improved?", "deictic"),
        ("How do I fix this?", "How can I fix this?", "deictic"),
        (
            "What is the reagent used to convert ethanol to ethanoic acid?",
            "What is the reagent used to convert ethanoic acid to ethanol?",
            "direction_swapped",
        ),
        ("Is coffee healthier than tea?", "Is tea healthier than coffee?", "direction_swapped"),
        (
            "What are some good arguments for virtue ethics?",
            "What are some good arguments against virtue ethics?",
            "antonym",
        ),
    ],
)
def test_near_misses_are_vetoed(a: str, b: str, veto: str) -> None:
    assert check_pair(a, b).veto == veto
    assert check_pair(b, a).veto == veto


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("How do I reverse a list in Python?", "how can I reverse a python list"),
        ("What is the capital of France?", "what's the capital city of france"),
        ("What are good tips for self study?", "What are some smart tips for self studying?"),
        ("Convert 1,000 meters to miles", "convert 1000 meters into miles"),
        ("Why is the sky blue?", "Why does the sky look blue?"),
        ("How do I copy a file in Linux?", "How can I copy files on Linux?"),
        ("how to get from home to office faster", "how to get to office from home faster"),
        ("What does this code do: print(1)", "what does this code do: print(1)?"),
        ("How do I learn to code?", "How can I learn coding?"),
    ],
)
def test_paraphrases_pass_the_guards(a: str, b: str) -> None:
    assert check_pair(a, b).veto == ""


def test_number_and_entity_extraction() -> None:
    assert numbers("pay 1,500.50 or 3") == numbers("3 or 1500.50")
    assert "paris" in entities("Is it far from here to Paris?")
    assert "what" not in entities("What is it?")


def _req(*msgs: tuple[str, str], tools: object = None, standalone: str | None = None) -> CacheRequest:
    return CacheRequest(
        tenant="t",
        model="m",
        messages=tuple(ChatMessage(role=r, content=c) for r, c in msgs),  # type: ignore[arg-type]
        tools=tools,
        standalone=standalone,
    )


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        (_req(("user", "What is my account balance?")), "personal"),
        (_req(("user", "What's the latest news on the election?")), "time_sensitive"),
        (_req(("user", "Weather tomorrow?")), "time_sensitive"),
        (_req(("user", "Look up order 5"), tools=[{"type": "function"}]), "tool_calling"),
        (
            _req(("user", "What is Rust?"), ("assistant", "A language."), ("user", "Who made it?")),
            "follow_up_without_rewrite",
        ),
        (_req(("user", "x" * 2000)), "too_long"),
    ],
)
def test_ineligible_requests_never_use_the_semantic_cache(request_: CacheRequest, reason: str) -> None:
    elig = semantic_eligibility(request_)
    assert not elig.ok and elig.reason == reason


def test_standalone_rewrite_makes_a_follow_up_eligible() -> None:
    r = _req(
        ("user", "What is Rust?"),
        ("assistant", "A language."),
        ("user", "Who made it?"),
        standalone="Who created the Rust programming language?",
    )
    elig = semantic_eligibility(r)
    assert elig.ok and elig.question == "Who created the Rust programming language?"
