"""The replay backend against the real recorded files, and through the real dispatcher.

Expected answers, scores and costs are read straight from the files with the csv module here, not
through the loaders under test.
"""

from __future__ import annotations

import ast
import asyncio
import csv
import json
import logging
import time
from pathlib import Path

import pytest

from cloud_hub.backends import Completion, HubBackendError, open_backend
from cloud_hub.backends.echo import EchoBackend
from cloud_hub.backends.replay import NotRecorded, ReplayBackend
from cloud_hub.dispatch import Dispatcher
from cloud_hub.registry import ModelRegistry, RegisteredModel
from cloud_hub.tiers import TierChooser
from shared.config import RECORDED_OUTCOMES, CostModel, HubModelEntry, HubSettings
from shared.taxonomy import Route, Tier
from shared.wire import Body, ChatMessage, Classification, Error, Escalate, Reply, ReplyChunk, SamplingParams

GPT4 = "gpt-4-1106-preview"
MBPP = Path("routing/routerbench/mbpp_train.csv")
PARAMS = SamplingParams(max_tokens=16)
# the frontier is predicted far better, so a plan puts it first and the echo tier second
HARD = Classification(task="code", domain="code", success={"oss": 0.2, "frontier": 0.95})
RB_HEADER = ["", "sample_id", "prompt", "eval_name", "m", "m|model_response", "m|total_cost"]


def _user(text: str) -> list[ChatMessage]:
    return [ChatMessage("user", text)]


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _write(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def default_models(data_dir: Path) -> dict[str, ReplayBackend]:
    """Both replayed models of the default hub, opened the way the hub opens them."""
    out: dict[str, ReplayBackend] = {}
    for entry in HubSettings().models:
        if entry.backend == "replay":
            backend = asyncio.run(open_backend(entry, HubSettings().models_dir))
            assert isinstance(backend, ReplayBackend)
            out[entry.name] = backend
    return out


def test_routerbench_answer_score_and_cost_are_the_recorded_ones(
    default_models: dict[str, ReplayBackend], data_dir: Path
) -> None:
    rows = _rows(data_dir / MBPP)
    for row in rows[:3] + rows[-3:]:
        [prompt] = ast.literal_eval(row["prompt"])
        [answer] = ast.literal_eval(row[f"{GPT4}|model_response"])
        done = asyncio.run(default_models[GPT4].generate(_user(prompt), PARAMS))
        assert done.text == answer
        assert done.recorded_score == float(row[GPT4])
        assert done.cost_usd == float(row[f"{GPT4}|total_cost"])
        assert done.recorded_model == GPT4
    # Mixtral is spelled differently in RouterBench and found under that spelling
    [prompt] = ast.literal_eval(rows[0]["prompt"])
    mix = asyncio.run(default_models["mixtral-8x7b-instruct"].generate(_user(prompt), PARAMS))
    assert mix.recorded_model == "mistralai/mixtral-8x7b-chat"
    assert mix.cost_usd == float(rows[0]["mistralai/mixtral-8x7b-chat|total_cost"])


def test_routellm_sources_replay_text_and_outcome(
    default_models: dict[str, ReplayBackend], data_dir: Path
) -> None:
    mixtral = default_models["mixtral-8x7b-instruct"]
    gsm = _rows(data_dir / "routing/routellm/routellm/evals/gsm8k/gsm8k_responses.csv")[5]
    name = "mistralai/Mixtral-8x7B-Instruct-v0.1"
    done = asyncio.run(mixtral.generate(_user(gsm["prompt"]), PARAMS))
    assert done.text == gsm[f"{name}_response"]
    assert done.recorded_score == (1.0 if gsm[name] == "True" else 0.0)
    assert done.recorded_model == name
    assert done.cost_usd is None  # RouteLLM recorded no cost: the hub prices it

    # MT-Bench: the turn-1 answer the judge quoted, scored by the turn-1 judgement alone
    folder = data_dir / "routing/routellm/routellm/evals/mt_bench"
    question = json.loads((folder / "question.jsonl").read_text().splitlines()[0])
    first = next(
        j
        for j in map(json.loads, (folder / "judgements.jsonl").read_text().splitlines())
        if j["question_id"] == question["question_id"] and j["model"] == GPT4 and j["turn"] == 1
    )
    mt = asyncio.run(default_models[GPT4].generate(_user(question["turns"][0]), PARAMS))
    assert mt.recorded_score == pytest.approx(first["score"] / 10)
    assert mt.text and mt.text in first["user_prompt"] and len(mt.text) > 100

    # MMLU kept correctness only: an explicit marker, never an invented answer
    mmlu = _rows(data_dir / "routing/routellm/routellm_mmlu_with_gold.csv")[0]
    marked = asyncio.run(default_models[GPT4].generate(_user(mmlu["prompt"]), PARAMS))
    verdict = "correct" if mmlu["gpt4_correct"] == "True" else "incorrect"
    assert marked.text == (
        f"[replay: {GPT4} was recorded {verdict} on this prompt; the source kept no answer text]"
    )
    assert marked.recorded_score == (1.0 if verdict == "correct" else 0.0)


def test_unrecorded_and_multi_turn_requests_are_not_recorded(
    default_models: dict[str, ReplayBackend],
) -> None:
    gpt4 = default_models[GPT4]
    with pytest.raises(NotRecorded) as info:
        asyncio.run(gpt4.generate(_user("Write a haiku about a tuesday in the hub."), PARAMS))
    assert info.value.retryable is False and info.value.status is None
    prompt = "Write a function to remove all elements from a given list present in another list."
    system = [ChatMessage("system", "You are terse."), ChatMessage("user", f"  {prompt}\n")]
    assert asyncio.run(gpt4.generate(system, PARAMS)).recorded_score is not None
    follow_up = [
        *_user(prompt),
        ChatMessage("assistant", "def f(a, b): ..."),
        ChatMessage("user", "Shorter?"),
    ]
    with pytest.raises(NotRecorded):
        asyncio.run(gpt4.generate(follow_up, PARAMS))
    with pytest.raises(NotRecorded):
        asyncio.run(gpt4.generate([ChatMessage("assistant", prompt)], PARAMS))


def test_default_sources_load_quickly_and_fully(data_dir: Path) -> None:
    started = time.perf_counter()
    backend = ReplayBackend.load([GPT4], [data_dir / p for p in RECORDED_OUTCOMES])
    seconds = time.perf_counter() - started
    # 1039 + 299 + 887 RouterBench rows (8 unscored), 1319 GSM8K, 80 MT-Bench, 14042 MMLU, less repeats
    assert 16_000 < backend.size <= 2225 - 8 + 1319 + 80 + 14042
    assert seconds < 30  # about a second when measured; generous for a loaded machine


def _mini(tmp_path: Path) -> tuple[Path, Path]:
    first = _write(
        tmp_path / "mine.csv",
        RB_HEADER,
        [
            ["0", "s.1", "['What is 2 + 2?']", "toy", "1.0", "['4']", "0.0012"],
            ["1", "s.2", "['Name a colour.']", "toy", "", "['blue']", "0.0001"],  # no score: no record
            ["2", "s.3", "['What is 2 + 2?']", "toy", "0.0", "['5']", "0.5"],  # a repeat: first wins
            ["3", "s.4", "['Half a prompt', 'the other half']", "toy", "1.0", "['x']", "0.1"],
        ],
    )
    second = _write(
        tmp_path / "later.csv", RB_HEADER, [["0", "t.1", "['What is 2 + 2?']", "toy", "0.0", "['22']", "9"]]
    )
    return first, second


async def test_users_own_routerbench_file(tmp_path: Path) -> None:
    first, second = _mini(tmp_path)
    backend = ReplayBackend.load(["absent-name", "m"], [first, second, tmp_path / "missing.csv"])
    assert backend.size == 1
    done = await backend.generate(_user("What is 2 + 2?"), PARAMS)
    assert (done.text, done.recorded_score, done.cost_usd, done.recorded_model) == ("4", 1.0, 0.0012, "m")
    for missing in ("Name a colour.", "Half a prompt"):
        with pytest.raises(NotRecorded):
            await backend.generate(_user(missing), PARAMS)
    items = [item async for item in backend.stream(_user("What is 2 + 2?"), PARAMS)]
    assert isinstance(items[-1], Completion) and items[-1] == done
    assert "".join(str(i) for i in items[:-1]) == "4"
    await backend.close()
    await backend.close()
    with pytest.raises(HubBackendError):
        await backend.generate(_user("What is 2 + 2?"), PARAMS)


async def test_stream_comes_in_pieces(tmp_path: Path) -> None:
    answer = "one two three four five six seven eight nine ten eleven twelve"
    path = _write(
        tmp_path / "s.csv", RB_HEADER, [["0", "a", "['Count.']", "toy", "1", repr([answer]), "0.1"]]
    )
    backend = ReplayBackend.load(["m"], [path])
    items = [item async for item in backend.stream(_user("Count."), PARAMS)]
    pieces = [i for i in items if isinstance(i, str)]
    assert len(pieces) >= 3 and "".join(pieces) == answer
    assert isinstance(items[-1], Completion) and items[-1].text == answer


async def test_relative_sources_resolve_under_the_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _mini(tmp_path)
    monkeypatch.setenv("EDGEROUTE_DATA_DIR", str(tmp_path))
    entry = HubModelEntry(name="m", backend="replay", recorded=[Path("mine.csv"), Path("gone.csv")])
    with caplog.at_level(logging.WARNING):
        backend = await open_backend(entry, tmp_path)
    assert isinstance(backend, ReplayBackend) and backend.size == 1
    assert "gone.csv does not exist" in caplog.text
    with pytest.raises(ValueError, match="recorded"):
        await open_backend(HubModelEntry(name="m", backend="replay"), tmp_path)


async def _dispatch(dispatcher: Dispatcher, prompt: str, rid: str, *, stream: bool = False) -> list[Body]:
    sent: list[Body] = []

    async def send(body: Body) -> None:
        sent.append(body)

    req = Escalate(
        request_id=rid,
        model="auto",
        messages=_user(prompt),
        params=PARAMS,
        deadline=time.time() + 5,
        stream=stream,
        classification=HARD,
        quality_target=0.9,
    )
    await dispatcher.handle(req, "edge-a", send)
    return sent


@pytest.fixture
def two_tiers(tmp_path: Path) -> Dispatcher:
    first, _ = _mini(tmp_path)
    replay = HubModelEntry(
        name="replayed-frontier",
        backend="replay",
        tier=Tier.FRONTIER,
        recorded=[first],
        recorded_models=["m"],
        cost=CostModel(usd_per_1k_prompt=0.01, usd_per_1k_completion=0.03),
    )
    echo = HubModelEntry(
        name="echo-oss", backend="echo", tier=Tier.OSS, cost=CostModel(usd_per_1k_prompt=1e-4)
    )
    registry = ModelRegistry(
        [
            RegisteredModel(replay, ReplayBackend.load(["m"], [first])),
            RegisteredModel(echo, EchoBackend()),
        ],
        default_model="echo-oss",
    )
    return Dispatcher(registry, TierChooser(registry))


async def test_dispatcher_falls_through_an_unrecorded_prompt(two_tiers: Dispatcher) -> None:
    # more misses in a row than the breaker's threshold: a decline must not open it
    for i in range(5):
        [reply] = await _dispatch(two_tiers, f"Tell me about dispatch number {i}.", f"miss-{i}")
        assert isinstance(reply, Reply) and (reply.route, reply.model) == (Route.HUB_OSS.value, "echo-oss")
        frontier = next(s for s in reply.trace if s.stage == "replayed-frontier")
        assert (frontier.decision, frontier.reason) == ("skip", "declined")
        assert "no recorded answer" in str(frontier.detail["error"])
        assert "fell through 1" in reply.trace[-1].reason
        assert "replayed" not in reply.trace[-1].detail
    # the replayed tier still answers what it holds, charged its recorded cost
    [hit] = await _dispatch(two_tiers, "What is 2 + 2?", "hit")
    assert isinstance(hit, Reply) and (hit.route, hit.model, hit.text) == (
        Route.FRONTIER.value,
        "replayed-frontier",
        "4",
    )
    assert hit.cost_usd == 0.0012
    answer = hit.trace[-1].detail
    assert answer["replayed"] is True and answer["recorded_cost"] is True
    assert (answer["recorded_model"], answer["recorded_score"]) == ("m", 1.0)


async def test_streamed_replay_through_the_dispatcher(two_tiers: Dispatcher) -> None:
    sent = await _dispatch(two_tiers, "What is 2 + 2?", "s1", stream=True)
    assert [type(b) for b in sent] == [ReplyChunk, Reply]
    reply = sent[-1]
    assert isinstance(reply, Reply) and reply.cost_usd == 0.0012
    missed = await _dispatch(two_tiers, "Something nobody recorded.", "s2", stream=True)
    assert isinstance(missed[-1], Reply) and missed[-1].route == Route.HUB_OSS.value
    assert not any(isinstance(b, Error) for b in missed)
