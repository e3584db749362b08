"""The semantic stage reuses an answer only for a request of the same answer shape: its length
limit, its stop sequences and, when sampling, temperature, top_p and seed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.cache.keys import CacheRequest
from edge_agent.cache.service import CacheService
from shared.cache_text import GlobalEntry, model_family, system_hash
from shared.config import CacheSettings
from shared.embedding import Embedder
from shared.wire import ChatMessage, SamplingParams

NOW = 1_800_000_000.0
MODEL = "qwen2.5-coder-0.5b-instruct"
STORED = "How do I reverse a list in Python?"
RESPELLED = "how do i reverse a list in python"  # the exact key misses; the semantic form matches
PARAPHRASE = "how can I reverse a python list"  # matched by meaning in a relaxed domain


def req(text: str, **params: object) -> CacheRequest:
    return CacheRequest(
        tenant="a",
        model=MODEL,
        messages=(ChatMessage(role="user", content=text),),
        params=SamplingParams(**{"temperature": 0.0, "max_tokens": 512, **params}),  # type: ignore[arg-type]
        now=NOW,
    )


@pytest.fixture()
def service(tmp_path: Path, embedder: Embedder) -> Iterator[CacheService]:
    settings = CacheSettings(relaxed_domains={"general": 0.08})
    with CacheService(tmp_path / "cache.db", settings, embedder=embedder) as svc:
        yield svc


def served(service: CacheService, asked: CacheRequest) -> str | None:
    found = service.lookup(asked).answer
    return None if found is None else found.text


@pytest.mark.parametrize("asked", [RESPELLED, PARAPHRASE])
@pytest.mark.parametrize(
    ("stored_params", "asked_params"),
    [
        ({}, {"max_tokens": 5}),  # a 5-token request must not get a long answer
        ({"max_tokens": 5}, {}),  # nor a full request the truncated one
        ({}, {"stop": ["\n"]}),
        ({"stop": ["#"]}, {"stop": ["END"]}),
        ({"temperature": 0.7, "seed": 1}, {"temperature": 0.7, "seed": 2}),
        ({"temperature": 0.7, "seed": 1}, {"temperature": 0.0}),
        ({"temperature": 0.7, "seed": 1}, {"temperature": 0.9, "seed": 1}),
    ],
)
def test_a_different_answer_shape_is_never_served(
    service: CacheService, stored_params: dict[str, object], asked_params: dict[str, object], asked: str
) -> None:
    service.store(req(STORED, **stored_params), "Use lst[::-1].", "m")
    assert served(service, req(asked, **stored_params)) == "Use lst[::-1]."  # the control: same shape
    assert served(service, req(asked, **asked_params)) is None


@pytest.mark.parametrize(
    ("stored_params", "asked_params"),
    [
        ({"seed": 1}, {"seed": 2}),  # greedy decoding ignores the seed
        ({"stop": ["a", "b"]}, {"stop": ["b", "a"]}),  # the order of stop sequences does not matter
        ({"temperature": 0.0, "top_p": 0.5}, {"temperature": 0.0, "top_p": 0.9}),
    ],
)
def test_parameters_that_cannot_change_the_answer_still_share(
    service: CacheService, stored_params: dict[str, object], asked_params: dict[str, object]
) -> None:
    service.store(req(STORED, **stored_params), "Use lst[::-1].", "m")
    assert served(service, req(RESPELLED, **asked_params)) == "Use lst[::-1]."


def test_a_shared_hub_answer_is_served_only_where_a_complete_answer_fits(service: CacheService) -> None:
    assert service.semantic is not None
    entry = GlobalEntry(
        key="g1", op="put", question=STORED, answer="Hub: use reversed().",
        family=model_family(MODEL), sys_hash=system_hash([]), version=1,
    )  # fmt: skip
    service.semantic.apply_global([entry], 1, NOW)
    assert served(service, req(RESPELLED)) == "Hub: use reversed()."
    assert served(service, req(RESPELLED, temperature=0.7, seed=3)) == "Hub: use reversed()."
    assert served(service, req(RESPELLED, max_tokens=5)) is None
    assert served(service, req(RESPELLED, stop=["."])) is None


def test_an_approved_alias_is_served_in_the_shape_it_was_judged_for(service: CacheService) -> None:
    assert service.semantic is not None
    judged = req(PARAPHRASE, max_tokens=64)
    alias = GlobalEntry(
        key="al1", op="put", question=PARAPHRASE, answer="Use lst[::-1].", family=judged.family,
        sys_hash=judged.partition_hash, version=1, kind="alias", tenant=judged.tenant_scope,
    )  # fmt: skip
    service.semantic.apply_global([alias], 1, NOW)
    assert served(service, req(PARAPHRASE, max_tokens=64)) == "Use lst[::-1]."
    assert served(service, req(PARAPHRASE, max_tokens=8)) is None


def test_the_exact_key_and_the_semantic_partition_agree_on_what_matters() -> None:
    base = req(STORED)
    assert req(STORED, seed=9).own_scope == base.own_scope  # greedy: the seed is moot
    for params in ({"max_tokens": 5}, {"stop": ["x"]}, {"temperature": 0.5}):
        assert req(STORED, **params).own_scope != base.own_scope
    # the tenant still partitions
    other = CacheRequest(tenant="b", model=MODEL, messages=base.messages, params=base.params, now=NOW)
    assert other.own_scope != base.own_scope
