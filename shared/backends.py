"""Which backend classes each program builds, by the name a config entry gives.

A table maps a config name to ``"module:Class"``. The module is imported only when a backend of
that name is opened: vLLM and torch take seconds to import, and a hub serving only HTTP or replay
models never needs them. Adding a backend is its file plus one line here; the config's
``backend`` fields accept exactly the names of these tables.

Both programs read the tables, so they live in ``shared`` as plain strings: ``shared`` never
imports either program, and each program imports only its own classes (``cloud_hub.backends``
for the hub, ``edge_agent.assemble`` for the edge). Each class builds itself from its config
entry with a ``from_config`` classmethod (``cloud_hub.backends.base.BackendFactory`` and
``edge_agent.backends.base.LocalBackendFactory``).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, Literal

HUB_BACKENDS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "vllm": "cloud_hub.backends.vllm:VllmBackend",
        "openai_http": "cloud_hub.backends.openai_http:OpenAIHTTPBackend",
        "llamacpp": "cloud_hub.backends.llamacpp:LlamaCppBackend",
        "echo": "cloud_hub.backends.echo:EchoBackend",
        "replay": "cloud_hub.backends.replay:ReplayBackend",
    }
)

EDGE_BACKENDS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "llamacpp": "edge_agent.backends.llamacpp:LlamaCppBackend",
    }
)

# diffusion models of the hub (``HubSettings.images``); each class offers ``tiny()`` (random
# weights) and ``from_pretrained(model, ...)``, which ``cloud_hub.images.hosting`` calls
IMAGE_BACKENDS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "diffusers": "cloud_hub.images.diffusers_backend:DiffusersImageBackend",
        "wan": "cloud_hub.images.video_backend:WanVideoBackend",
    }
)

if TYPE_CHECKING:
    # A Literal cannot be computed where a type checker looks; config validation at run time,
    # below, is what holds a name to the table.
    HubBackendName = str
    EdgeBackendName = str
    ImageBackendName = str
else:
    HubBackendName = Literal[tuple(HUB_BACKENDS)]
    EdgeBackendName = Literal[tuple(EDGE_BACKENDS)]
    ImageBackendName = Literal[tuple(IMAGE_BACKENDS)]


def load_class(table: Mapping[str, str], name: str) -> object:
    """Import the class ``table`` names ``name``; an unknown name is a ``ValueError`` listing the
    names there are."""
    spec = table.get(name)
    if spec is None:
        raise ValueError(f"unknown backend {name!r}; known: {', '.join(table)}")
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)
