"""Opening hub backends by the name a config entry gives (``shared.backends.HUB_BACKENDS``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud_hub.backends import open_backend
from cloud_hub.backends.base import Backend, BackendFactory
from cloud_hub.backends.echo import EchoBackend
from cloud_hub.backends.llamacpp import LlamaCppBackend
from cloud_hub.backends.openai_http import OpenAIHTTPBackend
from cloud_hub.backends.replay import ReplayBackend
from cloud_hub.backends.vllm import VllmBackend
from cloud_hub.registry import ModelRegistry
from shared.backends import HUB_BACKENDS, load_class
from shared.config import HubModelEntry, HubSettings
from shared.taxonomy import Tier

# The type checker holds each class to the factory protocol; the test holds the table to this list.
FACTORIES: dict[str, BackendFactory] = {
    "vllm": VllmBackend,
    "openai_http": OpenAIHTTPBackend,
    "llamacpp": LlamaCppBackend,
    "echo": EchoBackend,
    "replay": ReplayBackend,
}


def test_the_table_names_exactly_these_factories() -> None:
    assert {name: load_class(HUB_BACKENDS, name) for name in HUB_BACKENDS} == FACTORIES


async def test_an_entry_opens_as_the_class_its_backend_names(tmp_path: Path) -> None:
    backend = await open_backend(HubModelEntry(name="e", backend="echo"), tmp_path)
    assert isinstance(backend, EchoBackend) and isinstance(backend, Backend)
    http = await open_backend(
        HubModelEntry(name="f", backend="openai_http", base_url="http://127.0.0.1:9/v1"), tmp_path
    )
    try:
        assert isinstance(http, OpenAIHTTPBackend)
    finally:
        await http.close()


async def test_an_entry_missing_what_its_backend_needs_names_the_model(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="model 'f': the openai_http backend needs base_url"):
        await open_backend(HubModelEntry(name="f", backend="openai_http"), tmp_path)


async def test_an_unvalidated_unknown_backend_is_refused(tmp_path: Path) -> None:
    entry = HubModelEntry.model_construct(name="x", backend="tgi")  # skips validation, as a bug might
    with pytest.raises(ValueError, match="model 'x': unknown backend 'tgi'"):
        await open_backend(entry, tmp_path)


async def test_the_registry_opens_configured_entries(tmp_path: Path) -> None:
    settings = HubSettings(
        home=tmp_path,
        models=[
            HubModelEntry(name="a", backend="echo"),
            HubModelEntry(name="b", backend="echo", tier=Tier.FRONTIER),
        ],
        default_model="a",
    )
    registry = await ModelRegistry.open(settings)
    try:
        assert registry.names == ["a", "b"]
        assert all(isinstance(m.backend, EchoBackend) for m in registry.models)
    finally:
        await registry.close()
