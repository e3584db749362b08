from __future__ import annotations

import pytest

from shared.routing.verifier import ANSWER_FEATURES, answer_features, arithmetic_errors, safe_arith


def test_safe_arith_evaluates_only_arithmetic() -> None:
    assert safe_arith("2 + 3 * 4") == 14
    assert safe_arith("1,000 / 8") == 125
    assert safe_arith("-3 x 2") == -6
    assert safe_arith("__import__('os')") is None
    assert safe_arith("2 ** 999999") is None
    assert safe_arith("1/0") is None


def test_arithmetic_checks_annotations_and_inline_equations() -> None:
    assert arithmetic_errors("16 - 3 = 13 and <<13*2=26>>") == (2, 0)
    assert arithmetic_errors("So 15 + 25 = 45 cups.") == (1, 1)


def _f(text: str) -> dict[str, float]:
    return dict(zip(ANSWER_FEATURES, answer_features(text), strict=True))


def test_features_flag_suspicious_answers() -> None:
    good = _f("She has 16 - 3 = 13 eggs, sells 13 * 2 = 26.\n#### 26")
    assert good["has_final_answer"] == 1 and good["arithmetic_error"] == 0 and good["truncated"] == 0
    cut = _f("The value after repairs is 80,000 + 50,000 = $<<80000+50000=130000>>130,00")
    assert cut["has_final_answer"] == 0
    wrong = _f("15 + 25 = 45, so 45 / 2 = 22.5\n#### 22.5")
    assert wrong["arithmetic_error"] == 1 and wrong["non_integer_answer"] == 1
    assert _f("However, assuming rounding, it is about 3.")["hedging"] == 1
    assert _f("This sentence stops in the mid")["truncated"] == 1


@pytest.mark.parametrize("text", ["", "   ", "#### ", "=" * 500])
def test_features_never_fail_on_odd_text(text: str) -> None:
    assert len(answer_features(text)) == len(ANSWER_FEATURES)
