from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shared.routing import agreement as A
from shared.routing.datasets import GPT4, OutcomeTable, load_outcomes

MODELS = ["small", "mid", "big"]


def _replay_one(
    rule: A.CascadeRule, answers: list[str | None], costs: list[float], scores: list[float]
) -> A.Replay:
    codes = A.encode([[a] for a in answers])
    return A.replay(rule, MODELS, codes, np.array([scores]), np.array([costs]))


def test_agreeing_cheap_answers_are_accepted_and_only_they_are_paid() -> None:
    rule = A.CascadeRule(("small", "mid"), "big", k=2)
    assert A.step(rule, []) == A.Step(ask="small")
    assert A.step(rule, ["B"]) == A.Step(ask="mid")
    assert A.step(rule, ["B", "B"]) == A.Step(answer="B", by="small")
    r = _replay_one(rule, ["B", "B", "C"], [0.01, 0.02, 1.0], [1.0, 1.0, 0.0])
    assert r.cost[0] == pytest.approx(0.03)  # the strong model was never asked
    assert r.score[0] == 1.0 and r.asked[0] == 2 and not r.escalated[0]


def test_disagreement_escalates_and_pays_for_every_model_asked() -> None:
    rule = A.CascadeRule(("small", "mid"), "big", k=2)
    assert A.step(rule, ["B", "C"]) == A.Step(ask="big")
    r = _replay_one(rule, ["B", "C", "D"], [0.01, 0.02, 1.0], [0.0, 0.0, 1.0])
    assert r.cost[0] == pytest.approx(1.03)
    assert r.score[0] == 1.0 and r.asked[0] == 3 and r.escalated[0]


def test_unparsed_answers_never_agree() -> None:
    rule = A.CascadeRule(("small", "mid"), "big", k=2)
    assert A.step(rule, [None]) == A.Step(ask="big")  # one unparsed reply: two matches are out of reach
    r = _replay_one(rule, [None, None, "A"], [0.01, 0.02, 1.0], [0.0, 0.0, 1.0])
    assert r.escalated[0] and r.cost[0] == pytest.approx(1.01)
    three = A.CascadeRule(("small", "mid", "large"), "big", k=2)
    assert A.step(three, [None, "A"]) == A.Step(ask="large")
    assert A.step(three, [None, None]) == A.Step(ask="big")
    assert A.step(three, ["A", None, "A"]) == A.Step(answer="A", by="small")
    assert A.step(A.CascadeRule(("small", "mid"), "big", k=1), [None]) == A.Step(ask="mid")


def test_gives_up_on_cheap_models_once_k_is_out_of_reach() -> None:
    rule = A.CascadeRule(("small", "mid", "big"), "big", k=3)
    models = ["small", "mid", "big"]
    # the third cheap model is never bought: after two different answers three cannot match
    assert A.step(rule, ["A", "B"]) == A.Step(ask="big")
    codes = A.encode([["A"], ["B"], ["A"]])
    r = A.replay(rule, models, codes, np.array([[1.0, 0.0, 1.0]]), np.array([[0.1, 0.2, 1.0]]))
    assert r.cost[0] == pytest.approx(1.3) and r.asked[0] == 3


def test_head_accepts_a_single_confident_answer_and_skips_hopeless_prompts() -> None:
    rule = A.CascadeRule(("small", "mid"), "big", k=2, accept_p=0.9, skip_p=0.2)
    assert A.step(rule, ["A"], {"small": 0.95, "mid": 0.5}) == A.Step(answer="A", by="small")
    assert A.step(rule, [], {"small": 0.1, "mid": 0.1}) == A.Step(ask="big")
    assert A.step(rule, [], {"small": 0.1}) == A.Step(ask="small")  # unknown is not hopeless
    codes = A.encode([["A", "A"], ["B", "B"], ["C", "C"]])
    success = np.array([[0.95, 0.5, np.nan], [0.1, 0.1, np.nan]])
    r = A.replay(rule, MODELS, codes, np.ones((2, 3)), np.array([[0.01, 0.02, 1.0]] * 2), success)
    assert r.cost.tolist() == pytest.approx([0.01, 1.0])
    assert r.escalated.tolist() == [False, True]


def _table(data_dir: Path, name: str) -> OutcomeTable:
    return load_outcomes(data_dir / "routing/routerbench" / name).complete()


def test_recorded_mcq_replies_normalise_to_letters(data_dir: Path) -> None:
    arc = _table(data_dir, "arc_challenge_train.csv")
    prompt = arc.prompts[0]
    assert A.choices_of(prompt) == ("A", "B", "C", "D")
    for raw, want in [("['C\\n']", "C"), ("['D (']", "D"), ("['A)']", "A"), ("['Based on']", None)]:
        assert A.normalise(raw, prompt) == want
    assert A.normalise("['G\\n']", prompt) is None  # not one of the options
    assert A.task_of(arc.prompts) == "mcq"
    wino = _table(data_dir, "winograde_train.csv")
    assert A.choices_of(wino.prompts[0]) == ("A", "B")
    assert A.normalise("['Rachel']", wino.prompts[0]) is None  # the grader marks names wrong
    for table in (arc, wino):
        letters = {
            m: [A.normalise(r, p) for r, p in zip(table.responses[m], table.prompts, strict=True)]
            for m in table.models
        }
        assert np.mean([a is not None for a in letters[GPT4]]) > 0.99
        # one letter, one recorded score: otherwise agreement would credit answers the grader rejects
        for i in range(len(table)):
            by_letter: dict[str, set[float]] = {}
            for j, m in enumerate(table.models):
                a = letters[m][i]
                if a is not None:
                    by_letter.setdefault(a, set()).add(float(table.scores[i, j]))
            assert all(len(v) == 1 for v in by_letter.values()), (table.name, i, by_letter)


def test_few_shot_prompts_reduce_to_their_own_question(data_dir: Path) -> None:
    arc = _table(data_dir, "arc_challenge_train.csv")
    questions = [A.question_text(p) for p in arc.prompts[:50]]
    assert len({p[:800] for p in arc.prompts[:50]}) == 1  # the shared worked examples come first
    assert len(set(questions)) == 50
    assert all(q.count("single choice") == 1 and q.endswith("Answer:") for q in questions)
    assert A.choices_of(questions[0]) == A.choices_of(arc.prompts[0])
    mbpp = _table(data_dir, "mbpp_train.csv")
    assert A.question_text(mbpp.prompts[0]) == mbpp.prompts[0]  # not few-shot: untouched


def test_recorded_code_replies_compare_by_renamed_syntax(data_dir: Path) -> None:
    mbpp = _table(data_dir, "mbpp_train.csv")
    assert A.task_of(mbpp.prompts) == "code"
    tagged = mbpp.responses["meta/code-llama-instruct-34b-chat"][0]
    assert "[PYTHON]" in tagged
    key = A.code_key(tagged)
    assert key is not None
    renamed = "```python\ndef drop(xs, ys):\n    return [v for v in xs if v not in ys]\n```"
    assert A.code_key(renamed) == key  # same body, other names
    assert A.normalise(tagged, mbpp.prompts[0]) == key  # no options in the prompt: compared as code
    assert A.code_key(renamed.replace("not in", "in")) != key
    keys = [A.code_key(r) for r in mbpp.responses[GPT4]]
    assert np.mean([k is not None for k in keys]) > 0.95


def test_replay_matches_step_on_recorded_rows(data_dir: Path) -> None:
    arc = _table(data_dir, "arc_challenge_train.csv").subset(np.arange(300))
    answers = [
        [A.normalise(r, p) for r, p in zip(arc.responses[m], arc.prompts, strict=True)] for m in arc.models
    ]
    codes = A.encode(answers)
    rng = np.random.default_rng(3)
    success = rng.uniform(0, 1, size=codes.shape)
    cheap = ("mistralai/mistral-7b-chat", "mistralai/mixtral-8x7b-chat", "zero-one-ai/Yi-34B-Chat")
    for rule in (
        A.CascadeRule(cheap, GPT4, 2),
        A.CascadeRule(cheap, GPT4, 3),
        A.CascadeRule(cheap, GPT4, 2, accept_p=0.8, skip_p=0.3),
    ):
        rep = A.replay(rule, arc.models, codes, arc.scores, arc.costs, success)
        for i in range(len(arc)):
            p = {m: float(success[i, arc.models.index(m)]) for m in arc.models}
            seen: list[str | None] = []
            paid, score = 0.0, None
            while score is None:
                s = A.step(rule, seen, p)
                if s.answer is not None and s.by is not None:
                    score = arc.scores[i, arc.models.index(s.by)]
                    break
                assert s.ask is not None
                j = arc.models.index(s.ask)
                paid += arc.costs[i, j]
                if s.ask == rule.final:
                    score = arc.scores[i, j]
                else:
                    seen.append(answers[j][i])
            assert rep.cost[i] == pytest.approx(paid), (rule, i)
            assert rep.score[i] == score, (rule, i)
