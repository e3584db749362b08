"""``x-edgeroute-cache: bypass`` / ``edgeroute.cache``: a request that neither reads nor feeds a
cache, against a real agent with a real SQLite cache (exact and semantic stages).

Every check reads the cache file itself: a bypassed request must leave every row of every table
as it was, including the served counters an exact hit bumps and the hit log a semantic hit writes.
Stores run after the answer is sent, so each ask waits for the agent's bookkeeping before a check.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge_agent.backends.llamacpp import LlamaCppBackend
from edge_agent.cache.db import connect
from edge_agent.serving import BackgroundAgent
from tests.edge_agent.conftest import SMOLLM
from tests.edge_agent.live import cached_agent, sse_chunks, streamed_text

BYPASS = {"x-edgeroute-cache": "bypass"}
CACHE_STAGES = {"exact_cache", "semantic_cache"}


@pytest.fixture(scope="module")
def agent(
    smollm_backend: LlamaCppBackend, models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[BackgroundAgent, Path]]:
    """Threshold 0: every draft is answered locally, so every first answer is stored."""
    home = tmp_path_factory.mktemp("edge")
    with cached_agent(home, smollm_backend, models_dir) as running:
        yield running, home / "cache.db"


def _snapshot(db: Path) -> dict[str, list[str]]:
    """Every row of every table in the cache file (vector index shadow tables included)."""
    conn = connect(db, readonly=True)
    try:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND sql NOT LIKE 'CREATE VIRTUAL%'"
            )
        ]
        return {t: sorted(repr(row) for row in conn.execute(f'SELECT * FROM "{t}"')) for t in tables}
    finally:
        conn.close()


def _counts(db: Path) -> dict[str, int]:
    return {table: len(rows) for table, rows in _snapshot(db).items()}


def _body(question: str, **extra: Any) -> dict[str, Any]:
    messages = [{"role": "user", "content": question}]
    return {"model": SMOLLM, "messages": messages, "max_tokens": 8, "temperature": 0, **extra}


def _chat(agent: BackgroundAgent, question: str, headers: dict[str, str] | None = None, **extra: Any) -> Any:
    response = httpx.post(
        f"{agent.base_url}/v1/chat/completions", json=_body(question, **extra), headers=headers, timeout=120
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-edgeroute-route"] == response.json()["edgeroute"]["route"]
    agent.drain()
    return response.json()


def _stream(
    agent: BackgroundAgent, question: str, headers: dict[str, str] | None = None
) -> tuple[str, str, dict[str, Any]]:
    body = _body(question, stream=True)
    url = f"{agent.base_url}/v1/chat/completions"
    with httpx.stream("POST", url, json=body, headers=headers, timeout=120) as response:
        assert response.status_code == 200
        route = response.headers["x-edgeroute-route"]
        text, last = streamed_text(sse_chunks(response))
    agent.drain()
    return route, text, last["edgeroute"]


def _bypassed(info: dict[str, Any], source: str) -> None:
    """The trace of a bypassed request: one cache step saying so, no cache stage consulted."""
    steps = info["trace"]
    assert steps[0]["stage"] == "cache" and steps[0]["decision"] == "bypass"
    assert steps[0]["reason"] == f"caches bypassed by the request {source}"
    assert not [s for s in steps if s["stage"] in CACHE_STAGES]
    assert info["route"] not in CACHE_STAGES


def test_a_stored_answer_is_not_served_and_nothing_changes(agent: tuple[BackgroundAgent, Path]) -> None:
    running, db = agent
    question = "What is the capital of France?"
    first = _chat(running, question)
    assert first["edgeroute"]["route"] == "edge_local"
    stored = _counts(db)
    assert stored["exact_entries"] >= 1 and stored["sem_entries"] >= 1
    before = _snapshot(db)

    bypassed = _chat(running, question, headers=BYPASS)
    _bypassed(bypassed["edgeroute"], "header")
    assert _counts(db) == stored
    assert _snapshot(db) == before  # not even the hit counters moved

    # the control: the same request without the header is served by the exact cache
    again = _chat(running, question)
    assert again["edgeroute"]["route"] == "exact_cache"
    assert again["choices"][0]["message"]["content"] == first["choices"][0]["message"]["content"]
    # a hit bumps its entry's served counter, in the batch written once the oldest count is a
    # second old (``edge_agent.cache.hits``): the next hit after that writes both
    time.sleep(1.1)
    assert _chat(running, question)["edgeroute"]["route"] == "exact_cache"
    assert _snapshot(db) != before


def test_body_field_and_header_precedence(agent: tuple[BackgroundAgent, Path]) -> None:
    running, db = agent
    question = "What colour is the sky on a clear day?"
    assert _chat(running, question)["edgeroute"]["route"] == "edge_local"
    before = _snapshot(db)

    _bypassed(_chat(running, question, edgeroute={"cache": "bypass"})["edgeroute"], "body")
    mixed = _chat(running, question, {"x-edgeroute-cache": "bypass"}, edgeroute={"cache": "default"})
    _bypassed(mixed["edgeroute"], "header")
    assert _snapshot(db) == before

    # the header wins in the other direction too: "default" turns a body bypass off
    kept = _chat(running, question, {"x-edgeroute-cache": "default"}, edgeroute={"cache": "bypass"})
    assert kept["edgeroute"]["route"] == "exact_cache"
    assert _chat(running, question, edgeroute={"cache": "default"})["edgeroute"]["route"] == "exact_cache"


def test_a_new_question_leaves_no_row_behind(agent: tuple[BackgroundAgent, Path]) -> None:
    running, db = agent
    question = "Which planet is known as the red planet?"
    before = _snapshot(db)
    answer = _chat(running, question, headers=BYPASS)
    _bypassed(answer["edgeroute"], "header")
    assert answer["edgeroute"]["route"] == "edge_local"
    assert _snapshot(db) == before
    conn = connect(db, readonly=True)
    try:
        found = conn.execute("SELECT count(*) FROM sem_entries WHERE question LIKE '%red planet%'")
        assert found.fetchone()[0] == 0
    finally:
        conn.close()

    # nothing was stored, so the first normal ask misses; it stores, and the next one hits
    missed = _chat(running, question)
    assert missed["edgeroute"]["route"] == "edge_local"
    assert [s["decision"] for s in missed["edgeroute"]["trace"] if s["stage"] == "exact_cache"] == ["miss"]
    assert _chat(running, question)["edgeroute"]["route"] == "exact_cache"


def test_streaming_bypass(agent: tuple[BackgroundAgent, Path]) -> None:
    running, db = agent
    question = "How many days are in a week?"
    stored = _chat(running, question)
    before = _snapshot(db)

    route, text, info = _stream(running, question, headers=BYPASS)
    assert route == "edge_local"
    _bypassed(info, "header")
    assert text
    assert _snapshot(db) == before

    route, text, info = _stream(running, question)
    assert route == info["route"] == "exact_cache"
    assert text == stored["choices"][0]["message"]["content"]


@pytest.mark.parametrize("value", ["off", "BYPASS", "", "true"])
def test_bad_header_is_a_400(agent: tuple[BackgroundAgent, Path], value: str) -> None:
    running, _db = agent
    response = httpx.post(
        f"{running.base_url}/v1/chat/completions",
        json=_body("Is this cached?"),
        headers={"x-edgeroute-cache": value},
        timeout=60,
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "x-edgeroute-cache" and error["type"] == "invalid_request_error"
    assert "'bypass' or 'default'" in error["message"]


@pytest.mark.parametrize("value", ["off", "Bypass", True, 1])
def test_bad_body_field_is_a_400(agent: tuple[BackgroundAgent, Path], value: object) -> None:
    running, _db = agent
    body = _body("Is this cached?", edgeroute={"cache": value})
    response = httpx.post(f"{running.base_url}/v1/chat/completions", json=body, timeout=60)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "edgeroute.cache" and error["type"] == "invalid_request_error"
