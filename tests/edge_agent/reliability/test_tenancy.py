"""T19/T20 and T21 at CI size: no tenant sees another's answers, no request another's."""

from __future__ import annotations

from pathlib import Path

from edge_agent.reliability.tenancy import t19_tenants, t21_crosstalk
from shared.reliability import Size


def test_t19_no_spelling_or_spoof_reaches_another_tenants_cache(tmp_path: Path) -> None:
    r = t19_tenants(Size.CI, tmp_path)
    assert r.passed, r.failures
    f = r.figures
    assert f["leaks"] == 0 and f["attempts"] == 105
    # the paired control: the same tenant's repeat and respelling do hit
    assert f["control_exact_hits"] == f["control_semantic_hits"] == 5


def test_t21_cancellations_never_cross_answers_and_leave_nothing_behind(tmp_path: Path) -> None:
    r = t21_crosstalk(Size.CI, tmp_path)
    assert r.passed, r.failures
    f = r.figures
    assert f["crossed"] == 0 and f["admission_places_held"] == 0 and f["link_calls_in_flight"] == 0
