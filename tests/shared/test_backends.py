"""The backend tables: what a config may name, and what naming it loads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Literal, get_args, get_origin

import pytest
from pydantic import ValidationError

from shared.backends import EDGE_BACKENDS, HUB_BACKENDS, load_class
from shared.config import EdgeSettings, HubModelEntry, LocalModelConfig, load_settings


@pytest.mark.parametrize("name", sorted(HUB_BACKENDS))
def test_a_hub_entry_accepts_every_name_in_the_table(name: str) -> None:
    assert HubModelEntry(name="m", backend=name).backend == name


@pytest.mark.parametrize("name", sorted(EDGE_BACKENDS))
def test_the_local_model_accepts_every_name_in_the_table(name: str) -> None:
    assert LocalModelConfig(backend=name).backend == name


def test_names_outside_the_tables_are_refused_with_the_known_ones() -> None:
    with pytest.raises(ValidationError) as hub:
        HubModelEntry(name="m", backend="tgi")
    assert all(repr(n) in str(hub.value) for n in HUB_BACKENDS)
    with pytest.raises(ValidationError) as edge:
        LocalModelConfig(backend="vllm")  # a hub backend is not a local one
    assert repr("llamacpp") in str(edge.value)


def test_the_config_literals_are_the_tables() -> None:
    hub = HubModelEntry.model_fields["backend"].annotation
    assert get_origin(hub) is Literal and get_args(hub) == tuple(HUB_BACKENDS)
    edge = LocalModelConfig.model_fields["backend"].annotation
    assert get_origin(edge) is Literal and get_args(edge) == tuple(EDGE_BACKENDS)


def test_an_edge_config_without_a_backend_keeps_llama_cpp(tmp_path: Path) -> None:
    cfg = tmp_path / "edge.yaml"
    cfg.write_text("local_model:\n  name: smollm2-135m-instruct\n  n_ctx: 1024\n")
    assert load_settings(EdgeSettings, cfg).local_model.backend == "llamacpp"
    cfg.write_text("local_model:\n  backend: llamacpp\n")
    assert load_settings(EdgeSettings, cfg).local_model.backend == "llamacpp"
    cfg.write_text("local_model:\n  backend: echo\n")
    with pytest.raises(ValidationError):
        load_settings(EdgeSettings, cfg)


def test_every_spec_names_a_class_with_from_config_in_its_own_program() -> None:
    for table, package in ((HUB_BACKENDS, "cloud_hub.backends."), (EDGE_BACKENDS, "edge_agent.backends.")):
        for name, spec in table.items():
            assert spec.startswith(package), spec
            cls = load_class(table, name)
            assert isinstance(cls, type) and callable(getattr(cls, "from_config", None)), spec


def test_an_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown backend 'tgi'; known: vllm, openai_http"):
        load_class(HUB_BACKENDS, "tgi")


def test_only_the_named_backend_is_imported() -> None:
    """In a fresh interpreter: reading the config and loading the echo class imports no model runtime."""
    code = (
        "import json, sys\n"
        "from shared.backends import HUB_BACKENDS, load_class\n"
        "from shared.config import HubSettings\n"
        "HubSettings()\n"
        "load_class(HUB_BACKENDS, 'echo')\n"
        "print(json.dumps(sorted(m for m in ('vllm', 'torch', 'llama_cpp') if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert json.loads(out.stdout) == []
