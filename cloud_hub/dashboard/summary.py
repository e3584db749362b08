"""``/api/summary``: every panel's figures for one time window, as one JSON-ready dict.

Rates are fractions (0..1), costs US dollars, times seconds since the epoch (``*_s`` durations in
seconds). A figure that cannot be computed (no traffic, no frontier price, no evaluation run) is
``None``, never a made-up zero.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cloud_hub.dashboard import fleet, quality, traffic
from cloud_hub.dashboard.traffic import FrontierPrice
from cloud_hub.telemetry.store import TelemetryStore

MAX_HOURS: Final = 24.0 * 90
MIN_HOURS: Final = 1.0 / 60
MAX_BUCKETS: Final = 240


@dataclass(frozen=True)
class Sources:
    """What the dashboard reads: the hub's store and home, and how its frontier tier is priced."""

    store: TelemetryStore
    home: Path
    frontier: FrontierPrice | None
    enrolled_dir: Path | None = None
    heartbeat_s: float = 2.0


def build_summary(
    src: Sources,
    *,
    hours: float = 24.0,
    buckets: int = 24,
    now: float | None = None,
    live_edges: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    if not MIN_HOURS <= hours <= MAX_HOURS:
        raise ValueError(f"hours must be between {MIN_HOURS:.4g} and {MAX_HOURS:g}")
    if not 1 <= buckets <= MAX_BUCKETS:
        raise ValueError(f"buckets must be between 1 and {MAX_BUCKETS}")
    now = time.time() if now is None else now
    # the window ends just after ``now`` so an event stamped this instant is in it
    since, until = now - hours * 3600.0, now + 1e-3
    bucket_s = hours * 3600.0 / buckets
    store = src.store
    route_rows = traffic.routes(store, since, until)
    quality_section, verdicts = quality.latest_quality(store, src.home)
    return {
        "generated_at": now,
        "window": {"since": since, "until": now, "hours": hours, "bucket_s": bucket_s},
        "totals": traffic.totals(store, since, until),
        "north_star": traffic.north_star(store, since, until, bucket_s, src.frontier),
        "routes": route_rows,
        "cache": traffic.cache(store, since, until, route_rows),
        "quality": quality_section,
        "canary": quality.canary(store, src.home, verdicts, since, until),
        "fleet": fleet.fleet(
            store,
            since,
            until,
            now,
            live=live_edges,
            enrolled_dir=src.enrolled_dir,
            heartbeat_s=src.heartbeat_s,
        ),
    }
