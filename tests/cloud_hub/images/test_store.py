from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np

from cloud_hub.images.base import Latent
from cloud_hub.images.store import Asset, AssetStore

RNG = np.random.default_rng(0)


def _unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=384).astype(np.float32)
    return v / np.linalg.norm(v)


def _asset(aid: str, tenant: str = "t", prompt: str = "a cat", emb_seed: int = 0, **kw: object) -> Asset:
    latents = (
        Latent(4, 10, 0.65, RNG.normal(size=(1, 4, 4, 4)).astype(np.float32)),
        Latent(10, 10, 0.0009, (3 * RNG.normal(size=(1, 4, 4, 4))).astype(np.float32)),
    )
    fields: dict[str, object] = dict(
        id=aid,
        tenant=tenant,
        prompt=prompt,
        embedding=_unit(emb_seed),
        latent_space="ddim:x",
        width=32,
        height=32,
        frames=1,
        steps=10,
        seed=1,
        png=b"\x89PNG" + aid.encode(),
        thumb=RNG.random((32, 32, 3)).astype(np.float16),
        latents=latents,
    )
    return Asset(**(fields | kw))  # type: ignore[arg-type]


def test_assets_and_latents_round_trip_as_float16(tmp_path: Path) -> None:
    store = AssetStore(tmp_path / "a.db")
    a = _asset("a1")
    assert store.add(a)
    got = store.get("a1")
    assert got is not None
    assert got.png == a.png and got.prompt == a.prompt and got.group == a.group
    np.testing.assert_array_equal(got.embedding, a.embedding)
    np.testing.assert_array_equal(got.thumb, a.thumb)
    assert [(lt.step, lt.of_steps, lt.level) for lt in got.latents] == [(4, 10, 0.65), (10, 10, 0.0009)]
    for want, have in zip(a.latents, got.latents, strict=True):
        assert have.data.dtype == np.float32 and have.data.shape == want.data.shape
        np.testing.assert_array_equal(have.data, want.data.astype(np.float16).astype(np.float32))
    store.close()
    reopened = AssetStore(tmp_path / "a.db")  # the similarity index is rebuilt from the file
    assert reopened.nearest(a.group, a.embedding)[0][0] == "a1"
    reopened.close()


def test_latents_are_stored_as_raw_float16_bytes_not_pickles(tmp_path: Path) -> None:
    store = AssetStore(tmp_path / "a.db")
    store.add(_asset("a1"))
    store.close()
    with sqlite3.connect(tmp_path / "a.db") as conn:
        shape, blob = conn.execute("SELECT shape, data FROM latents WHERE step = 4").fetchone()
    assert shape == "[1, 4, 4, 4]" and len(blob) == 64 * 2


def test_lookups_are_scoped_by_tenant(tmp_path: Path) -> None:
    store = AssetStore(tmp_path / "a.db")
    store.add(_asset("mine", tenant="a"))
    other = _asset("theirs", tenant="b")
    assert store.nearest(other.group, other.embedding) == []
    assert store.exact(other.group, "a cat", "u") is None
    assert store.exact(_asset("x", tenant="a").group, "A  cat", "u") == "mine"  # normalised prompt


def test_exact_skips_what_the_user_already_received(tmp_path: Path) -> None:
    store = AssetStore(tmp_path / "a.db")
    a = _asset("a1")
    store.add(a)
    assert store.exact(a.group, a.prompt, "u") == "a1"
    assert store.deliver("t", "u", "a1", a.thumb)
    assert not store.deliver("t", "u", "a1", a.thumb)  # a repeat is refused and reported
    assert store.exact(a.group, a.prompt, "u") is None
    assert store.exact(a.group, a.prompt, "v") == "a1"
    assert len(store.delivered_thumbs("t", "u")) == 1 and store.delivered_thumbs("t", "v") == []


def test_nearest_ranks_by_cosine(tmp_path: Path) -> None:
    store = AssetStore(tmp_path / "a.db")
    query = _unit(1)
    close = query + 0.1 * _unit(2)
    store.add(_asset("far", emb_seed=3))
    store.add(_asset("close", embedding=close / np.linalg.norm(close)))
    ranked = store.nearest(_asset("q").group, query)
    assert [r[0] for r in ranked] == ["close", "far"]
    assert ranked[0][1] > 0.9 > ranked[1][1]


def test_admission_and_eviction_follow_popularity(tmp_path: Path) -> None:
    store = AssetStore(tmp_path / "a.db", capacity=2, half_life_s=100.0)
    store.add(_asset("old"), now=0.0)
    store.add(_asset("popular", emb_seed=1), now=0.0)
    for _ in range(3):
        store.mark_used("popular", now=0.0)
    # full: a one-off prompt (count 1) does not beat the weakest asset (score 1, never reused)
    assert store.add(_asset("oneoff", emb_seed=2), popularity=1, now=0.0) is False
    # a prompt asked twice does, and the weakest asset goes
    assert store.add(_asset("asked-twice", emb_seed=3), popularity=2, now=0.0)
    assert store.get("old") is None and store.get("popular") is not None and store.count() == 2
    assert store.nearest(_asset("q").group, _unit(3))[0][0] == "asked-twice"
    # long unused, scores halve every half-life: then even a one-off gets in, replacing the weakest
    assert store.add(_asset("later", emb_seed=4), popularity=1, now=1000.0)
    assert store.get("asked-twice") is None and store.get("popular") is not None
    # the counts come from the requests themselves, per tenant
    assert [store.note_request("t", "a dog") for _ in range(3)] == [1, 2, 3]
    assert store.note_request("other", "a dog") == 1
