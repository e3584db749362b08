"""The hub's asset and latent store: generated pictures, their harvested latents, popularity,
and who already received what.

One SQLite file (``shared.sqlite.connect``). An asset row holds the prompt, its unit-length
embedding, size, steps, the PNG and a thumbnail for the variation distance; latents sit in their
own table as float16 bytes with their shape (numpy, never pickle). Every lookup is scoped by
tenant: one tenant's pictures are never a source for another's.

Admission and eviction by popularity: each request counts its prompt; an asset's score is
(1 + times reused) halved every ``half_life_s`` since it was last used. At capacity a new asset
is admitted only when its prompt's count beats the weakest asset's score, which then goes, so
one-off prompts do not flush the pictures that get reused.

``delivered`` remembers, per (tenant, user), every asset returned and its thumbnail, so an exact
reuse never hands the same asset to a user twice, and a variation can be checked against
everything the user got, even assets evicted since.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cloud_hub.images.base import F32, Latent
from cloud_hub.images.features import F16
from shared.cache_text import digest, normalize_text
from shared.sqlite import connect

SCHEMA = """
CREATE TABLE IF NOT EXISTS assets(
    id TEXT PRIMARY KEY, tenant TEXT NOT NULL, prompt TEXT NOT NULL, prompt_hash TEXT NOT NULL,
    embedding BLOB NOT NULL, latent_space TEXT NOT NULL, width INTEGER NOT NULL,
    height INTEGER NOT NULL, frames INTEGER NOT NULL, steps INTEGER NOT NULL, seed INTEGER NOT NULL,
    png BLOB NOT NULL, thumb BLOB NOT NULL, thumb_shape TEXT NOT NULL,
    source_id TEXT NOT NULL DEFAULT '', uses INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL, last_used REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS assets_exact ON assets(tenant, prompt_hash, latent_space, width, height, frames);
CREATE TABLE IF NOT EXISTS latents(
    asset_id TEXT NOT NULL REFERENCES assets(id) ON DELETE CASCADE, step INTEGER NOT NULL,
    of_steps INTEGER NOT NULL, level REAL NOT NULL, shape TEXT NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (asset_id, step)
);
CREATE TABLE IF NOT EXISTS frames(
    asset_id TEXT NOT NULL REFERENCES assets(id) ON DELETE CASCADE, idx INTEGER NOT NULL,
    png BLOB NOT NULL, PRIMARY KEY (asset_id, idx)
);
CREATE TABLE IF NOT EXISTS prompts(
    tenant TEXT NOT NULL, prompt_hash TEXT NOT NULL, count INTEGER NOT NULL, last_seen REAL NOT NULL,
    PRIMARY KEY (tenant, prompt_hash)
);
CREATE TABLE IF NOT EXISTS delivered(
    tenant TEXT NOT NULL, user TEXT NOT NULL, asset_id TEXT NOT NULL, thumb BLOB NOT NULL,
    thumb_shape TEXT NOT NULL, at REAL NOT NULL, PRIMARY KEY (tenant, user, asset_id)
);
"""

GroupKey = tuple[str, str, int, int, int]  # tenant, latent space, width, height, frames


def prompt_hash(prompt: str) -> str:
    return digest(normalize_text(prompt).casefold())


@dataclass(frozen=True, slots=True)
class Asset:
    id: str
    tenant: str
    prompt: str
    embedding: F32
    latent_space: str
    width: int
    height: int
    frames: int  # 1 for an image
    steps: int
    seed: int
    png: bytes
    thumb: F16
    source_id: str = ""
    frame_pngs: tuple[bytes, ...] = ()
    latents: tuple[Latent, ...] = ()

    @property
    def group(self) -> GroupKey:
        return (self.tenant, self.latent_space, self.width, self.height, self.frames)


def _f16(blob: bytes, shape: str) -> F16:
    return np.frombuffer(blob, dtype=np.float16).reshape(json.loads(shape)).copy()


class AssetStore:
    def __init__(self, path: Path | str, *, capacity: int = 10_000, half_life_s: float = 86_400.0) -> None:
        if capacity < 1 or half_life_s <= 0:
            raise ValueError("capacity must be ≥ 1 and half_life_s > 0")
        self.capacity = capacity
        self.half_life_s = half_life_s
        self._conn = connect(path, foreign_keys=True)
        self._conn.executescript(SCHEMA)
        self._lock = threading.Lock()
        self._index: dict[GroupKey, tuple[list[str], F32]] = {}
        self._load_index()

    def _load_index(self) -> None:
        groups: dict[GroupKey, tuple[list[str], list[F32]]] = {}
        rows = self._conn.execute(
            "SELECT id, tenant, latent_space, width, height, frames, embedding FROM assets ORDER BY created"
        )
        for aid, tenant, space, w, h, f, emb in rows:
            ids, vecs = groups.setdefault((tenant, space, w, h, f), ([], []))
            ids.append(aid)
            vecs.append(np.frombuffer(emb, dtype=np.float32))
        self._index = {k: (ids, np.stack(vecs)) for k, (ids, vecs) in groups.items()}

    # --- popularity ---------------------------------------------------------------------------

    def note_request(self, tenant: str, prompt: str, now: float | None = None) -> int:
        """Count one request for ``prompt``; returns how many this tenant has made."""
        now = time.time() if now is None else now
        key = prompt_hash(prompt)
        with self._lock:
            self._conn.execute(
                "INSERT INTO prompts VALUES (?, ?, 1, ?) ON CONFLICT(tenant, prompt_hash)"
                " DO UPDATE SET count = count + 1, last_seen = excluded.last_seen",
                (tenant, key, now),
            )
            (count,) = self._conn.execute(
                "SELECT count FROM prompts WHERE tenant = ? AND prompt_hash = ?", (tenant, key)
            ).fetchone()
        return int(count)

    def _score(self, uses: int, last_used: float, now: float) -> float:
        return float((1.0 + uses) * 0.5 ** (max(now - last_used, 0.0) / self.half_life_s))

    def mark_used(self, asset_id: str, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._lock:
            self._conn.execute(
                "UPDATE assets SET uses = uses + 1, last_used = ? WHERE id = ?", (now, asset_id)
            )

    # --- assets -------------------------------------------------------------------------------

    def add(self, asset: Asset, *, popularity: int = 1, now: float | None = None) -> bool:
        """Store ``asset`` and its latents; ``False`` when admission turned it away."""
        now = time.time() if now is None else now
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                admitted = self._make_room(popularity, now)
                if admitted:
                    self._insert(asset, now)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            if admitted:
                ids, vecs = self._index.get(
                    asset.group, ([], np.zeros((0, len(asset.embedding)), np.float32))
                )
                self._index[asset.group] = ([*ids, asset.id], np.vstack([vecs, asset.embedding[None, :]]))
        return admitted

    def _make_room(self, popularity: int, now: float) -> bool:
        (count,) = self._conn.execute("SELECT count(*) FROM assets").fetchone()
        if count < self.capacity:
            return True
        rows = self._conn.execute("SELECT id, uses, last_used FROM assets").fetchall()
        victim, score = min(((r[0], self._score(r[1], r[2], now)) for r in rows), key=lambda v: v[1])
        if popularity <= score:
            return False
        self._delete(victim)
        return True

    def _insert(self, a: Asset, now: float) -> None:
        self._conn.execute(
            "INSERT INTO assets(id, tenant, prompt, prompt_hash, embedding, latent_space, width, height,"
            " frames, steps, seed, png, thumb, thumb_shape, source_id, created, last_used)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                a.id,
                a.tenant,
                a.prompt,
                prompt_hash(a.prompt),
                np.ascontiguousarray(a.embedding, np.float32).tobytes(),
                a.latent_space,
                a.width,
                a.height,
                a.frames,
                a.steps,
                a.seed,
                a.png,
                a.thumb.astype(np.float16).tobytes(),
                json.dumps(list(a.thumb.shape)),
                a.source_id,
                now,
                now,
            ),
        )
        self._conn.executemany(
            "INSERT INTO latents VALUES (?, ?, ?, ?, ?, ?)",
            [
                (
                    a.id,
                    lt.step,
                    lt.of_steps,
                    lt.level,
                    json.dumps(list(lt.data.shape)),
                    lt.data.astype(np.float16).tobytes(),
                )
                for lt in a.latents
            ],
        )
        self._conn.executemany(
            "INSERT INTO frames VALUES (?, ?, ?)", [(a.id, i, png) for i, png in enumerate(a.frame_pngs)]
        )

    def _delete(self, asset_id: str) -> None:
        row = self._conn.execute(
            "SELECT tenant, latent_space, width, height, frames FROM assets WHERE id = ?", (asset_id,)
        ).fetchone()
        self._conn.execute("DELETE FROM assets WHERE id = ?", (asset_id,))
        if row is None:
            return
        key: GroupKey = (row[0], row[1], row[2], row[3], row[4])
        ids, vecs = self._index.get(key, ([], np.zeros((0, 0), np.float32)))
        if asset_id in ids:
            i = ids.index(asset_id)
            self._index[key] = (ids[:i] + ids[i + 1 :], np.delete(vecs, i, axis=0))

    def get(self, asset_id: str, *, with_latents: bool = True) -> Asset | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT id, tenant, prompt, embedding, latent_space, width, height, frames, steps, seed,"
                " png, thumb, thumb_shape, source_id FROM assets WHERE id = ?",
                (asset_id,),
            ).fetchone()
            if row is None:
                return None
            lat = (
                self._conn.execute(
                    "SELECT step, of_steps, level, shape, data FROM latents WHERE asset_id = ? ORDER BY step",
                    (asset_id,),
                ).fetchall()
                if with_latents
                else []
            )
            fr = self._conn.execute(
                "SELECT png FROM frames WHERE asset_id = ? ORDER BY idx", (asset_id,)
            ).fetchall()
        latents = tuple(
            Latent(step, of, level, _f16(data, shape).astype(np.float32))
            for step, of, level, shape, data in lat
        )
        return Asset(
            id=row[0],
            tenant=row[1],
            prompt=row[2],
            embedding=np.frombuffer(row[3], dtype=np.float32).copy(),
            latent_space=row[4],
            width=row[5],
            height=row[6],
            frames=row[7],
            steps=row[8],
            seed=row[9],
            png=row[10],
            thumb=_f16(row[11], row[12]),
            source_id=row[13],
            frame_pngs=tuple(r[0] for r in fr),
            latents=latents,
        )

    def nearest(self, group: GroupKey, embedding: F32, k: int = 4) -> list[tuple[str, float]]:
        """The ``k`` most similar assets of one tenant, latent space and size, best first."""
        ids, vecs = self._index.get(group, ([], np.zeros((0, 0), np.float32)))
        if not ids:
            return []
        sims = vecs @ embedding.astype(np.float32)
        top = np.argsort(-sims)[:k]
        return [(ids[i], float(sims[i])) for i in top]

    def exact(self, group: GroupKey, prompt: str, user: str) -> str | None:
        """The most reused asset of exactly this prompt that ``user`` has not received yet."""
        tenant, space, w, h, f = group
        with self._lock:
            row = self._conn.execute(
                "SELECT id FROM assets a WHERE tenant = ? AND prompt_hash = ? AND latent_space = ?"
                " AND width = ? AND height = ? AND frames = ? AND NOT EXISTS (SELECT 1 FROM delivered d"
                " WHERE d.tenant = a.tenant AND d.user = ? AND d.asset_id = a.id)"
                " ORDER BY uses DESC, created LIMIT 1",
                (tenant, prompt_hash(prompt), space, w, h, f, user),
            ).fetchone()
        return None if row is None else str(row[0])

    # --- deliveries ---------------------------------------------------------------------------

    def deliver(self, tenant: str, user: str, asset_id: str, thumb: F16, now: float | None = None) -> bool:
        """Record a return; ``False`` when this user already had this asset (a repeat)."""
        now = time.time() if now is None else now
        with self._lock:
            cur = self._conn.execute(
                "INSERT OR IGNORE INTO delivered VALUES (?, ?, ?, ?, ?, ?)",
                (
                    tenant,
                    user,
                    asset_id,
                    thumb.astype(np.float16).tobytes(),
                    json.dumps(list(thumb.shape)),
                    now,
                ),
            )
        return cur.rowcount == 1

    def delivered_thumbs(self, tenant: str, user: str, limit: int = 1000) -> list[F16]:
        """Thumbnails of this user's latest returns, newest first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT thumb, thumb_shape FROM delivered WHERE tenant = ? AND user = ?"
                " ORDER BY at DESC LIMIT ?",
                (tenant, user, limit),
            ).fetchall()
        return [_f16(blob, shape) for blob, shape in rows]

    def count(self) -> int:
        with self._lock:
            (n,) = self._conn.execute("SELECT count(*) FROM assets").fetchone()
        return int(n)

    def close(self) -> None:
        with self._lock:
            self._conn.close()
