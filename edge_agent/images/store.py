"""The edge's small asset store: what it delivered to whom, what it may hand out again, video jobs.

One SQLite file (``shared.sqlite.connect``), three tables:

- ``assets``: every image or video the hub made for a tenant, keyed by tenant and the request's
  identity (normalised prompt, negative prompt and model, then kind and size), so a later
  ``exact_ok`` request of the same tenant can be answered here without the hub;
- ``delivered``: (tenant, user, asset) for every return, so nobody gets an asset twice;
  ``reported`` is 0 for the ones the hub has not heard of yet (answered here), which the next
  hub job of that user carries along;
- ``videos``: this edge's video jobs (the hub's job id, status, the asset once fetched).

Every query names the tenant: one tenant's assets are never found for another.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from shared.cache_text import digest, normalize_text
from shared.sqlite import connect

MediaKind = Literal["image", "video"]
VideoStatus = Literal["queued", "in_progress", "completed", "failed"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS assets(
    tenant TEXT NOT NULL, id TEXT NOT NULL, request_key TEXT NOT NULL, kind TEXT NOT NULL,
    width INTEGER NOT NULL, height INTEGER NOT NULL, frames INTEGER NOT NULL,
    content_type TEXT NOT NULL, data BLOB NOT NULL, sha256 TEXT NOT NULL, seed INTEGER NOT NULL,
    steps_total INTEGER NOT NULL, model TEXT NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX IF NOT EXISTS assets_exact ON assets(tenant, request_key, kind, width, height, frames);
CREATE INDEX IF NOT EXISTS assets_age ON assets(created);
CREATE TABLE IF NOT EXISTS delivered(
    tenant TEXT NOT NULL, user TEXT NOT NULL, asset_id TEXT NOT NULL,
    reported INTEGER NOT NULL, at REAL NOT NULL, PRIMARY KEY (tenant, user, asset_id)
);
CREATE TABLE IF NOT EXISTS videos(
    id TEXT PRIMARY KEY, tenant TEXT NOT NULL, user TEXT NOT NULL, hub_job_id TEXT NOT NULL,
    prompt TEXT NOT NULL, model TEXT NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL,
    frames INTEGER NOT NULL, reuse TEXT NOT NULL, request_key TEXT NOT NULL, status TEXT NOT NULL,
    asset_id TEXT NOT NULL DEFAULT '', error_code TEXT NOT NULL DEFAULT '', error TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL, completed REAL, edgeroute TEXT NOT NULL DEFAULT '{}'
);
"""

_ASSET_COLUMNS = (
    "id, kind, width, height, frames, content_type, data, sha256, seed, steps_total, model, created"
)


def request_key(prompt: str, negative_prompt: str = "", model: str = "") -> str:
    """What makes two requests "the same" for an as-is reuse (sizes and kind are columns)."""
    fold = [normalize_text(t).casefold() for t in (prompt, negative_prompt)]
    return digest(*fold, model)


@dataclass(frozen=True)
class StoredAsset:
    id: str
    kind: MediaKind
    width: int
    height: int
    frames: int
    content_type: str
    data: bytes
    sha256: str
    seed: int
    steps_total: int
    model: str
    created: float = 0.0


@dataclass(frozen=True)
class VideoJob:
    id: str
    tenant: str
    user: str
    hub_job_id: str
    prompt: str
    model: str
    width: int
    height: int
    frames: int
    reuse: str
    request_key: str
    status: VideoStatus
    created: float
    asset_id: str = ""
    error_code: str = ""
    error: str = ""
    completed: float | None = None
    edgeroute: dict[str, Any] | None = None


_VIDEO_FIELDS = tuple(f.name for f in fields(VideoJob))


class EdgeAssetStore:
    def __init__(self, path: Path | str, *, max_assets: int = 2000) -> None:
        self.max_assets = max_assets
        self._conn = connect(path)
        self._conn.executescript(SCHEMA)
        self._lock = threading.Lock()

    # --- assets -------------------------------------------------------------------------------

    def put(self, tenant: str, key: str, asset: StoredAsset) -> None:
        """Keep ``asset`` for ``tenant``; beyond ``max_assets`` the oldest go (their deliveries stay)."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.execute(
                "INSERT OR REPLACE INTO assets VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    tenant,
                    asset.id,
                    key,
                    asset.kind,
                    asset.width,
                    asset.height,
                    asset.frames,
                    asset.content_type,
                    asset.data,
                    asset.sha256,
                    asset.seed,
                    asset.steps_total,
                    asset.model,
                    asset.created or time.time(),
                ),
            )
            self._conn.execute(
                "DELETE FROM assets WHERE rowid IN (SELECT rowid FROM assets ORDER BY created DESC"
                " LIMIT -1 OFFSET ?)",
                (self.max_assets,),
            )
            self._conn.execute("COMMIT")

    def get(self, tenant: str, asset_id: str) -> StoredAsset | None:
        with self._lock:
            row = self._conn.execute(
                f"SELECT {_ASSET_COLUMNS} FROM assets WHERE tenant = ? AND id = ?", (tenant, asset_id)
            ).fetchone()
        return None if row is None else StoredAsset(*row)

    def claim_exact(
        self, tenant: str, user: str, key: str, kind: MediaKind, size: tuple[int, int, int], limit: int
    ) -> list[StoredAsset]:
        """Up to ``limit`` stored assets of this request that ``user`` never received, recorded as
        delivered (not yet reported to the hub) in the same transaction, so two concurrent
        requests of one user cannot both take the same asset."""
        width, height, frames = size
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            rows = self._conn.execute(
                f"SELECT {_ASSET_COLUMNS} FROM assets a WHERE tenant = ? AND request_key = ? AND kind = ?"
                " AND width = ? AND height = ? AND frames = ? AND NOT EXISTS (SELECT 1 FROM delivered d"
                " WHERE d.tenant = a.tenant AND d.user = ? AND d.asset_id = a.id)"
                " ORDER BY created LIMIT ?",
                (tenant, key, kind, width, height, frames, user, limit),
            ).fetchall()
            now = time.time()
            self._conn.executemany(
                "INSERT OR IGNORE INTO delivered VALUES (?, ?, ?, 0, ?)",
                [(tenant, user, row[0], now) for row in rows],
            )
            self._conn.execute("COMMIT")
        return [StoredAsset(*row) for row in rows]

    # --- deliveries ---------------------------------------------------------------------------

    def deliver(self, tenant: str, user: str, asset_ids: list[str], *, reported: bool) -> None:
        now = time.time()
        with self._lock:
            self._conn.executemany(
                "INSERT INTO delivered VALUES (?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET"
                " reported = max(reported, excluded.reported)",
                [(tenant, user, a, int(reported), now) for a in asset_ids],
            )

    def release(self, tenant: str, user: str, asset_ids: list[str]) -> None:
        """Undo claims of a request that failed before it answered."""
        with self._lock:
            self._conn.executemany(
                "DELETE FROM delivered WHERE tenant = ? AND user = ? AND asset_id = ? AND reported = 0",
                [(tenant, user, a) for a in asset_ids],
            )

    def unreported(self, tenant: str, user: str, limit: int = 256) -> list[str]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT asset_id FROM delivered WHERE tenant = ? AND user = ? AND reported = 0"
                " ORDER BY at DESC LIMIT ?",
                (tenant, user, limit),
            ).fetchall()
        return [r[0] for r in rows]

    def mark_reported(self, tenant: str, user: str, asset_ids: list[str]) -> None:
        with self._lock:
            self._conn.executemany(
                "UPDATE delivered SET reported = 1 WHERE tenant = ? AND user = ? AND asset_id = ?",
                [(tenant, user, a) for a in asset_ids],
            )

    def delivered(self, tenant: str, user: str) -> set[str]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT asset_id FROM delivered WHERE tenant = ? AND user = ?", (tenant, user)
            ).fetchall()
        return {r[0] for r in rows}

    # --- video jobs ---------------------------------------------------------------------------

    def add_video(self, job: VideoJob) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT INTO videos VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job.id,
                    job.tenant,
                    job.user,
                    job.hub_job_id,
                    job.prompt,
                    job.model,
                    job.width,
                    job.height,
                    job.frames,
                    job.reuse,
                    job.request_key,
                    job.status,
                    job.asset_id,
                    job.error_code,
                    job.error,
                    job.created,
                    job.completed,
                    json.dumps(job.edgeroute or {}),
                ),
            )

    def video(self, tenant: str, job_id: str) -> VideoJob | None:
        with self._lock:
            row = self._conn.execute(
                f"SELECT {', '.join(_VIDEO_FIELDS)} FROM videos WHERE tenant = ? AND id = ?", (tenant, job_id)
            ).fetchone()
        if row is None:
            return None
        values: dict[str, Any] = dict(zip(_VIDEO_FIELDS, row, strict=True))
        values["edgeroute"] = json.loads(values["edgeroute"]) or None
        return VideoJob(**values)

    def update_video(
        self,
        job_id: str,
        status: VideoStatus,
        *,
        model: str = "",
        asset_id: str = "",
        error_code: str = "",
        error: str = "",
        edgeroute: dict[str, Any] | None = None,
    ) -> None:
        done = time.time() if status in ("completed", "failed") else None
        with self._lock:
            self._conn.execute(
                "UPDATE videos SET status = ?, model = CASE WHEN ? = '' THEN model ELSE ? END,"
                " asset_id = ?, error_code = ?, error = ?, completed = ?, edgeroute = ? WHERE id = ?",
                (
                    status,
                    model,
                    model,
                    asset_id,
                    error_code,
                    error,
                    done,
                    json.dumps(edgeroute or {}),
                    job_id,
                ),
            )

    def close(self) -> None:
        with self._lock:
            self._conn.close()
