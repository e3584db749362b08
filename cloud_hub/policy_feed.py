"""The routing policy the hub hands to its edges: the canary controller's ``policy.json``, watched.

``cloud-hub eval run --recalibrate`` (through ``CanaryController``) starts, promotes and rolls back
canaries by atomically replacing that file; the hub notices the change on its next poll and sends
every connected edge a ``PolicyUpdate``. No file means no policy: edges keep their own configured
threshold, so a hub that never ran an evaluation changes nothing at its edges.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from shared.wire import PolicyUpdate

log = logging.getLogger(__name__)


def policy_update(state: dict[str, object]) -> PolicyUpdate:
    """The wire form of the controller's state (``cloud_hub.evaluation.canary.PolicyState``)."""
    version = state.get("version")
    threshold = state.get("threshold")
    if not isinstance(version, str) or not version:
        raise ValueError(f"policy version must be a non-empty string, got {version!r}")
    canary_version = state.get("canary_version")
    canary_threshold = state.get("canary_threshold")
    share = state.get("canary_share", 0.0)
    if canary_version is not None and not isinstance(canary_version, str):
        raise ValueError(f"canary_version must be a string, got {canary_version!r}")
    return PolicyUpdate(
        version=version,
        threshold=_unit(threshold, "threshold"),
        canary_version=canary_version,
        canary_threshold=None if canary_threshold is None else _unit(canary_threshold, "canary_threshold"),
        canary_share=_unit(share, "canary_share"),
    )


def _unit(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    if math.isnan(value):
        raise ValueError(f"{name} must not be NaN")
    return float(value)


class PolicyFeed:
    """``current`` is the last valid policy read from ``path``; ``refresh`` re-reads it on change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.current: PolicyUpdate | None = None
        self._seen: tuple[int, int] | None = None

    def refresh(self) -> bool:
        """Re-read the file if it changed; True when ``current`` changed."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            changed = self.current is not None
            self.current, self._seen = None, None
            return changed
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._seen:
            return False
        self._seen = stamp
        try:
            raw = json.loads(self.path.read_text())
            if not isinstance(raw, dict):
                raise ValueError("not a JSON object")
            update = policy_update(raw)
        except (OSError, ValueError) as exc:
            # keep serving the last good policy: a bad file must not swing every edge's threshold
            log.error("ignoring routing policy %s: %s", self.path, exc)
            return False
        if update == self.current:
            return False
        log.info(
            "routing policy %s (threshold %.3f); canary %s at %.0f%%",
            update.version,
            update.threshold,
            update.canary_version or "none",
            100 * update.canary_share,
        )
        self.current = update
        return True
