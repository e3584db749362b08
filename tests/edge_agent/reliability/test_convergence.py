from __future__ import annotations

from pathlib import Path

from edge_agent.reliability.convergence import t13_convergence
from shared.reliability import Size


def test_t13_every_edge_reaches_the_hubs_cache_after_partitions(tmp_path: Path) -> None:
    r = t13_convergence(Size.CI, tmp_path)
    assert r.passed, r.failures
    assert r.figures["edges_converged"] == 3 and r.figures["behind_by"] == 0
