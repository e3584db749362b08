"""The one interface every hub model backend implements.

A backend turns chat messages into text. It knows nothing of the link, tiers or prices: the
registry attaches those, so the same backend class serves an OSS model and a fine-tune alike.
Its class builds it from a config entry (``BackendFactory``); ``shared.backends.HUB_BACKENDS``
names the class for each ``backend`` value a config may give.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from shared.config import HubModelEntry
from shared.errors import BackendError
from shared.wire import ChatMessage, SamplingParams, Usage


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    finish_reason: str
    usage: Usage
    # a real recorded cost (replayed answers): the dispatcher charges it instead of the entry's
    # price model
    cost_usd: float | None = None
    # replayed answers only: the recorded 0-1 score of this answer and the source's name for the
    # model that gave it
    recorded_score: float | None = None
    recorded_model: str | None = None


class HubBackendError(BackendError):
    """A hub backend could not answer. ``retryable`` tells the edge whether trying again may help
    (the tree of errors: ``shared.errors``)."""

    def __init__(self, message: str, *, retryable: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        # the upstream's HTTP status when there was one: a 4xx is the request's fault, and the hub
        # then stops instead of trying the next tier
        self.status = status


StreamItem = str | Completion


@runtime_checkable
class Backend(Protocol):
    async def generate(self, messages: Sequence[ChatMessage], params: SamplingParams) -> Completion:
        """The whole answer at once."""
        ...

    def stream(self, messages: Sequence[ChatMessage], params: SamplingParams) -> AsyncIterator[StreamItem]:
        """Text deltas as they are produced, then exactly one ``Completion`` with the full text
        and usage."""
        ...

    async def close(self) -> None:
        """Release the model; safe to call twice."""
        ...


class BackendFactory(Protocol):
    """The class side of a backend: how ``cloud_hub.backends.open_backend`` builds one."""

    async def from_config(self, entry: HubModelEntry, models_dir: Path) -> Backend:
        """The backend ``entry`` configures, started; loading a model runs off the event loop."""
        ...


def locate_model(entry: HubModelEntry, models_dir: Path, *names: str) -> Path:
    """An explicit ``path`` wins; else the first of ``names`` the model manifest knows, installed."""
    if entry.path is not None:
        return entry.path
    from models.manifest import ManifestError, artifact_path, load_manifest

    manifest = load_manifest()
    for name in names:
        try:
            manifest.get(name)
        except ManifestError:
            continue
        return artifact_path(name, models_dir, manifest=manifest)
    return models_dir / names[0]
