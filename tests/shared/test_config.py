from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.config import CostModel, EdgeSettings, HubSettings, load_settings
from shared.taxonomy import ROUTE_ORDER, Route, Tier


def test_precedence_override_beats_env_beats_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "edge.yaml"
    cfg.write_text("port: 9001\nconfidence_threshold: 0.5\nlocal_model:\n  n_ctx: 1024\n")
    monkeypatch.setenv("EDGE_CONFIDENCE_THRESHOLD", "0.6")
    monkeypatch.setenv("EDGE_LOCAL_MODEL__N_THREADS", "1")
    s = load_settings(EdgeSettings, cfg, port=9100)
    assert s.port == 9100
    assert s.confidence_threshold == 0.6
    assert s.local_model.n_ctx == 1024
    assert s.local_model.n_threads == 1
    assert isinstance(s, EdgeSettings)


def test_unknown_keys_are_rejected(tmp_path: Path) -> None:
    cfg = tmp_path / "hub.yaml"
    cfg.write_text("bnd: tcp://127.0.0.1:1\n")
    with pytest.raises(ValidationError):
        load_settings(HubSettings, cfg)


def test_secrets_do_not_print(tmp_path: Path) -> None:
    cfg = tmp_path / "edge.yaml"
    cfg.write_text("tenants:\n  - name: acme\n    api_key: sk-very-secret\n")
    s = load_settings(EdgeSettings, cfg)
    assert "sk-very-secret" not in repr(s)
    assert s.tenants[0].api_key.get_secret_value() == "sk-very-secret"


def test_hub_models_from_yaml(tmp_path: Path) -> None:
    cfg = tmp_path / "hub.yaml"
    cfg.write_text(
        "models:\n"
        "  - {name: gpt-x, backend: openai_http, tier: frontier, base_url: 'http://127.0.0.1:9',"
        " cost: {usd_per_1k_prompt: 0.01, usd_per_1k_completion: 0.03}}\n"
        "default_model: gpt-x\n"
    )
    s = load_settings(HubSettings, cfg)
    assert s.models[0].tier is Tier.FRONTIER
    assert s.models[0].tier.route is Route.FRONTIER


def test_edge_energy_cost_is_never_zero() -> None:
    edge = EdgeSettings()
    assert edge.local_model.cost.estimate(100, 100) > 0


def test_cost_model_sums_components() -> None:
    c = CostModel(usd_per_1k_prompt=1.0, usd_per_1k_completion=2.0, usd_per_gpu_second=0.5)
    assert c.estimate(1000, 500, seconds=2.0) == pytest.approx(1.0 + 1.0 + 1.0)


def test_route_order_is_cheapest_first() -> None:
    assert ROUTE_ORDER[0] is Route.EXACT_CACHE and ROUTE_ORDER[-1] is Route.FRONTIER
    assert [r.rank for r in ROUTE_ORDER] == list(range(len(ROUTE_ORDER)))
    assert Route.FRONTIER.uses_frontier_gpu and not Route.HUB_OSS.uses_frontier_gpu
