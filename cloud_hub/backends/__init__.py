"""Model backends, one per file, all behind ``cloud_hub.backends.base.Backend``.

``open_backend`` imports a backend module only when the registry uses it
(``shared.backends.HUB_BACKENDS``), so a hub that serves only the echo, HTTP or replay backends
never loads torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

from cloud_hub.backends.base import Backend, BackendFactory, Completion, HubBackendError, StreamItem
from shared.backends import HUB_BACKENDS, load_class
from shared.config import HubModelEntry

__all__ = ["Backend", "Completion", "HubBackendError", "StreamItem", "open_backend"]


async def open_backend(entry: HubModelEntry, models_dir: Path) -> Backend:
    """Build the backend a registry entry names, from the entry."""
    try:
        factory = cast(BackendFactory, load_class(HUB_BACKENDS, entry.backend))
    except ValueError as exc:
        raise ValueError(f"model {entry.name!r}: {exc}") from None
    return await factory.from_config(entry, models_dir)
