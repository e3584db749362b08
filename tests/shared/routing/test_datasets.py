from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from shared.routing import datasets as D


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_routerbench_schema_with_empty_cells(tmp_path: Path) -> None:
    header = ["", "sample_id", "prompt", "eval_name", "m1", "m2", "m1|model_response", "m2|model_response"]
    header += ["m1|total_cost", "m2|total_cost", "oracle_model_to_route_to"]
    rows = [
        ["0", "a.1", "what is 2+2?", "arc", "1.0", "0.0", "4", "5", "0.001", "0.01", "m1"],
        ["1", "a.2", "capital of France?", "arc", "", "1.0", "", "Paris.", "", "0.02", "m2"],
    ]
    t = D.load_outcomes(_write_csv(tmp_path / "rb.csv", header, rows))
    assert t.models == ["m1", "m2"]
    assert t.scores[0].tolist() == [1.0, 0.0]
    assert math.isnan(t.scores[1, 0]) and math.isnan(t.costs[1, 0])  # empty stays unknown, not zero
    assert t.costs[1, 1] == pytest.approx(0.02)
    assert t.groups == ["arc", "arc"]
    assert t.responses["m2"] == ["5", "Paris."]
    assert len(t.complete()) == 1


def test_routellm_csv_keeps_responses_and_prices(tmp_path: Path) -> None:
    header = ["prompt", D.MIXTRAL, D.GPT4, f"{D.MIXTRAL}_response", f"{D.GPT4}_response"]
    rows = [["q1", "True", "False", "#### 3", "#### 4"], ["q2", "False", "True", "x", "#### 7"]]
    t = D.load_outcomes(_write_csv(tmp_path / "gsm8k_responses.csv", header, rows))
    assert t.models == [D.MIXTRAL, D.GPT4]
    assert t.scores.tolist() == [[1.0, 0.0], [0.0, 1.0]]
    assert t.responses[D.MIXTRAL] == ["#### 3", "x"]
    # the strong model's blended price is about 100x the weak one's
    ratio = t.costs[:, 1] / t.costs[:, 0]
    assert np.allclose(ratio, D.ROUTELLM_USD_PER_MTOK[D.GPT4] / D.ROUTELLM_USD_PER_MTOK[D.MIXTRAL])


def test_mmlu_folder_groups_by_subject(tmp_path: Path) -> None:
    for subject, rows in {"anatomy": [["a?", "True", "True"]], "virology": [["v?", "False", "True"]]}.items():
        _write_csv(tmp_path / f"mmlu_{subject}.csv", ["prompt", D.MIXTRAL, D.GPT4], rows)
    t = D.load_outcomes(tmp_path)
    assert t.groups == ["anatomy", "virology"]
    assert t.mean_score(D.GPT4) == 1.0


def test_gold_columns_map_to_models(tmp_path: Path) -> None:
    header = ["subject", "prompt", "mixtral_correct", "gpt4_correct", "gold_letter"]
    t = D.load_outcomes(_write_csv(tmp_path / "g.csv", header, [["law", "q", "False", "True", "B"]]))
    assert t.models == [D.MIXTRAL, D.GPT4] and t.groups == ["law"]


def test_mt_bench_mean_judge_score(tmp_path: Path) -> None:
    q = [{"question_id": 81, "category": "writing", "turns": ["Write a poem.", "Shorter."]}]
    (tmp_path / "question.jsonl").write_text("\n".join(json.dumps(x) for x in q) + "\n")
    judged = [
        {"question_id": 81, "model": "a", "score": 8, "turn": 1},
        {"question_id": 81, "model": "a", "score": 6, "turn": 2},
        {"question_id": 81, "model": "b", "score": 10, "turn": 1},
    ]
    (tmp_path / "judgements.jsonl").write_text("\n".join(json.dumps(x) for x in judged) + "\n")
    t = D.load_outcomes(tmp_path)
    assert t.prompts == ["Write a poem."] and t.groups == ["writing"]
    assert t.scores[0].tolist() == pytest.approx([0.7, 1.0])


def test_mt_bench_first_turns_keep_the_judged_answer(tmp_path: Path) -> None:
    q = [
        {"question_id": 81, "category": "writing", "turns": ["Write a poem.", "Shorter."]},
        {"question_id": 82, "category": "math", "turns": ["2 + 2?", "Times 3?"]},
    ]
    (tmp_path / "question.jsonl").write_text("\n".join(json.dumps(x) for x in q) + "\n")
    quoted = (
        "[Question]\nWrite a poem.\n\n"
        "[The Start of Assistant's Answer]\nRoses.\n[The End of Assistant's Answer]"
    )
    judged = [
        {"question_id": 81, "model": "a", "score": 8, "turn": 1, "user_prompt": quoted},
        {"question_id": 81, "model": "a", "score": 2, "turn": 2, "user_prompt": "### Assistant A:\nx"},
        {"question_id": 82, "model": "a", "score": -1, "turn": 1, "user_prompt": "unparsed rating"},
    ]
    (tmp_path / "judgements.jsonl").write_text("\n".join(json.dumps(x) for x in judged) + "\n")
    t = D.load_single_turn_outcomes(tmp_path)
    assert t.prompts == ["Write a poem.", "2 + 2?"] and t.models == ["a"]
    assert t.scores[0, 0] == pytest.approx(0.8) and math.isnan(t.scores[1, 0])  # turn 1 alone; -1 is no score
    assert t.responses["a"] == ["Roses.", ""]
    assert not D.is_routerbench_csv(tmp_path)


def test_unwrap_recorded_texts() -> None:
    assert D.unwrap_recorded("['C']") == "C"
    assert D.unwrap_recorded("['D\\n']") == "D\n"  # the repr's escapes decode
    assert D.unwrap_recorded('["it\'s"]') == "it's"
    assert D.unwrap_recorded("['half', 'other half']") is None
    for plain in ("What is [1, 2] + [3]?", "[1, 2]", "[not python", "plain"):
        assert D.unwrap_recorded(plain) == plain


def test_llmrouter_json_with_prices(tmp_path: Path) -> None:
    rows = [{"question": "q1", "scores": {"x": 1.0, "y": 0.0}}, {"question": "q2", "scores": "{'x': 0.0}"}]
    (tmp_path / "train.json").write_text(json.dumps(rows))
    prices = {"x": {"input_price": 0.2, "output_price": 0.2}, "y": {"input_price": 0.9, "output_price": 0.9}}
    (tmp_path / "default_llm.json").write_text(json.dumps(prices))
    t = D.load_outcomes(tmp_path / "train.json")
    assert t.models == ["x", "y"]
    assert math.isnan(t.scores[1, 1])
    assert t.costs[0, 1] / t.costs[0, 0] == pytest.approx(4.5)


def test_contaminated_prompts_are_dropped(tmp_path: Path) -> None:
    header = ["prompt", D.MIXTRAL, D.GPT4]
    rows = [["It’s  a\ntrap", "True", "True"], ["ok", "1", "0"]]
    t = D.load_outcomes(_write_csv(tmp_path / "x.csv", header, rows))
    (tmp_path / "c.jsonl").write_text(json.dumps({"train_prompt": "t", "eval_prompt": "it's a trap"}) + "\n")
    kept = D.drop_prompts(t, D.load_contaminated(tmp_path / "c.jsonl"))
    assert kept.prompts == ["ok"]


def test_bad_files_raise_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(D.DatasetFormatError):
        D.load_outcomes(tmp_path / "missing.csv")
    with pytest.raises(D.DatasetFormatError):
        D.load_outcomes(_write_csv(tmp_path / "n.csv", ["question", "m"], [["q", "1"]]))
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(D.DatasetFormatError):
        D.load_outcomes(tmp_path / "bad.json")
    with pytest.raises(D.DatasetFormatError):
        D.load_outcomes(_write_csv(tmp_path / "s.csv", ["prompt", "m"], [["q", "maybe"]]))


def test_real_files_parse(data_dir: Path) -> None:
    r = data_dir / "routing"
    gsm = D.load_outcomes(r / "routellm/routellm/evals/gsm8k/gsm8k_responses.csv")
    assert len(gsm) == 1319 and gsm.mean_score(D.GPT4) > gsm.mean_score(D.MIXTRAL)
    mmlu = D.load_outcomes(r / "routellm/routellm/evals/mmlu/responses")
    assert len(mmlu) == 14042 and len(set(mmlu.groups)) == 57
    rb = D.load_outcomes(r / "routerbench/mbpp_train.csv")
    assert len(rb.models) == 11 and not np.isnan(rb.costs).all()
    assert D.is_routerbench_csv(r / "routerbench/mbpp_train.csv")
    assert not D.is_routerbench_csv(r / "routellm/routellm/evals/gsm8k/gsm8k_responses.csv")
    mt = D.load_outcomes(r / "routellm/routellm/evals/mt_bench")
    assert len(mt) == 80 and set(mt.models) == {D.GPT4, D.MIXTRAL}
    first = D.load_single_turn_outcomes(r / "routellm/routellm/evals/mt_bench")
    assert first.prompts == mt.prompts and not np.isnan(first.scores).any()
    assert all(a.strip() for m in first.models for a in first.responses[m])  # every answer quoted
