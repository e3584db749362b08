"""Model registry: which backend, tier and price answer a model name.

Built from ``HubSettings.models``; adding a model is a config change. A request names a model;
an empty name means the hub's default.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from cloud_hub.backends import Backend, open_backend
from shared.config import HubModelEntry, HubSettings
from shared.taxonomy import Route

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RegisteredModel:
    entry: HubModelEntry
    backend: Backend

    @property
    def route(self) -> Route:
        return self.entry.tier.route


class ModelRegistry:
    def __init__(self, models: Iterable[RegisteredModel], default_model: str | None = None) -> None:
        self._models: dict[str, RegisteredModel] = {}
        for model in models:
            if model.entry.name in self._models:
                raise ValueError(f"model {model.entry.name!r} is registered twice")
            self._models[model.entry.name] = model
        if default_model is not None and default_model not in self._models:
            raise ValueError(f"default model {default_model!r} is not among {sorted(self._models)}")
        self.default_model = default_model
        self._closed = False

    @classmethod
    async def open(cls, settings: HubSettings) -> ModelRegistry:
        """Start every configured backend; on failure, close the ones already started."""
        opened: list[RegisteredModel] = []
        try:
            for entry in settings.models:
                log.info("opening model %s (%s backend, %s tier)", entry.name, entry.backend, entry.tier)
                opened.append(RegisteredModel(entry, await open_backend(entry, settings.models_dir)))
            default = (
                settings.default_model if settings.default_model in {m.entry.name for m in opened} else None
            )
            return cls(opened, default)
        except BaseException:
            for model in opened:
                await model.backend.close()
            raise

    @property
    def names(self) -> list[str]:
        return sorted(self._models)

    @property
    def models(self) -> list[RegisteredModel]:
        return [self._models[n] for n in sorted(self._models)]

    def resolve(self, name: str) -> RegisteredModel | None:
        if not name and self.default_model is not None:
            name = self.default_model
        return self._models.get(name)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for model in self._models.values():
            try:
                await model.backend.close()
            except Exception:
                log.exception("closing model %s failed", model.entry.name)
