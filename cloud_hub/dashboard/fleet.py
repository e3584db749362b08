"""Edge fleet health: who is enrolled, when each edge was last heard from, its spool backlog and
what its spool had to drop.

"Last heard" is the later of the running hub's in-memory view (any frame, heartbeats included)
and the last telemetry batch the store received, so the panel also works for a store read after
a hub restart. An edge is ``online`` when it was heard within three heartbeat intervals, the
same rule the edge's link applies to the hub. The backlog is what the edge's spool still held
behind its latest batch (``TelemetryBatch.backlog``); an edge whose link is down reports nothing,
so a stale ``backlog_at`` next to an old "last heard" is the signal to look at.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cloud_hub.telemetry.aggregates import aggregate
from cloud_hub.telemetry.store import TelemetryStore
from shared.keys import KeyFileError, fingerprint, load_public

_MISSED_BEATS = 3


def enrolled_edges(enrolled_dir: Path | None) -> dict[str, str]:
    """Edge id (the key fingerprint the hub authenticates) → the enrolment file's name."""
    out: dict[str, str] = {}
    if enrolled_dir is None or not enrolled_dir.is_dir():
        return out
    for path in sorted(enrolled_dir.glob("*.key")):
        with contextlib.suppress(KeyFileError):
            out[fingerprint(load_public(path))] = path.name
    return out


def _stored_last_seen(store: TelemetryStore) -> dict[str, float]:
    with store.transaction() as db:
        rows = db.execute("SELECT edge_id, MAX(received) FROM events GROUP BY edge_id").fetchall()
    return {str(e): float(t) for e, t in rows}


def fleet(
    store: TelemetryStore,
    since: float,
    until: float,
    now: float,
    *,
    live: Mapping[str, float] | None = None,
    enrolled_dir: Path | None = None,
    heartbeat_s: float = 2.0,
) -> list[dict[str, Any]]:
    enrolled = enrolled_edges(enrolled_dir)
    stored = _stored_last_seen(store)
    heard = {e: t for e, t in (live or {}).items() if e != "unauthenticated"}
    backlogs = store.backlogs()
    drops = store.drops()
    traffic = {str(r.key["edge"]): r for r in aggregate(store, by=("edge",), since=since, until=until)}
    edges = sorted(set(enrolled) | set(stored) | set(heard) | set(backlogs) | set(drops))
    out: list[dict[str, Any]] = []
    for edge in edges:
        seen = [t for t in (stored.get(edge), heard.get(edge)) if t is not None]
        last = max(seen) if seen else None
        backlog, backlog_at = backlogs.get(edge, (None, None))
        row = traffic.get(edge)
        out.append(
            {
                "edge": edge,
                "enrolled": edge in enrolled,
                "key_file": enrolled.get(edge),
                "last_seen": last,
                "seen_ago_s": now - last if last is not None else None,
                "online": last is not None and now - last <= _MISSED_BEATS * heartbeat_s,
                "requests": row.requests if row is not None else 0,
                "errors": row.errors if row is not None else 0,
                "spool_backlog": backlog,
                "backlog_at": backlog_at,
                "dropped_events": drops.get(edge, 0),
            }
        )
    return out
