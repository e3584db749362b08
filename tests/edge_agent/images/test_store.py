"""The edge's asset store on a real SQLite file: claims, receipts, scoping, eviction, video jobs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.images.store import EdgeAssetStore, StoredAsset, VideoJob, request_key

KEY = request_key("a red kite over the dunes")


def _asset(asset_id: str, created: float = 0.0, side: int = 32) -> StoredAsset:
    return StoredAsset(
        asset_id, "image", side, side, 1, "image/png", b"png" + asset_id.encode(), "sha", 1, 8, "m", created
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EdgeAssetStore]:
    s = EdgeAssetStore(tmp_path / "images.db", max_assets=3)
    yield s
    s.close()


def test_the_request_key_folds_case_and_spacing_but_not_the_negative_prompt_or_model() -> None:
    assert request_key("A red  kite over the dunes ") == KEY
    assert request_key("a red kite over the dunes", "blurry") != KEY
    assert request_key("a red kite over the dunes", model="sd-turbo") != KEY


def test_a_claim_takes_each_asset_once_per_user_and_only_for_its_tenant(store: EdgeAssetStore) -> None:
    for i in range(2):
        store.put("acme", KEY, _asset(f"a{i}", created=i + 1))
    size = (32, 32, 1)
    assert [a.id for a in store.claim_exact("acme", "bob", KEY, "image", size, 1)] == ["a0"]
    assert [a.id for a in store.claim_exact("acme", "bob", KEY, "image", size, 5)] == ["a1"]
    assert store.claim_exact("acme", "bob", KEY, "image", size, 5) == []
    assert store.claim_exact("globex", "bob", KEY, "image", size, 5) == []  # another tenant
    assert store.claim_exact("acme", "bob", KEY, "image", (64, 64, 1), 5) == []  # another size
    assert store.get("globex", "a0") is None and store.get("acme", "a0") is not None
    # claims are receipts the hub has not heard of until reported
    assert sorted(store.unreported("acme", "bob")) == ["a0", "a1"]
    store.mark_reported("acme", "bob", ["a0"])
    assert store.unreported("acme", "bob") == ["a1"]
    # a failed request gives back only what it claimed and the hub never heard of
    store.release("acme", "bob", ["a0", "a1"])
    assert store.delivered("acme", "bob") == {"a0"}


def test_a_delivery_the_hub_recorded_stays_reported(store: EdgeAssetStore) -> None:
    store.put("acme", KEY, _asset("a0"))
    store.claim_exact("acme", "ann", KEY, "image", (32, 32, 1), 1)
    store.deliver("acme", "ann", ["a0", "h1"], reported=True)
    assert store.unreported("acme", "ann") == [] and store.delivered("acme", "ann") == {"a0", "h1"}


def test_beyond_its_capacity_the_oldest_assets_go_but_deliveries_stay(store: EdgeAssetStore) -> None:
    for i in range(5):
        store.put("acme", KEY, _asset(f"a{i}", created=i + 1))
        store.deliver("acme", "ann", [f"a{i}"], reported=True)
    assert [store.get("acme", f"a{i}") is not None for i in range(5)] == [False, False, True, True, True]
    assert len(store.delivered("acme", "ann")) == 5


def test_video_jobs_round_trip_and_move_on(store: EdgeAssetStore) -> None:
    job = VideoJob(
        "video_1", "acme", "u", "mj-1", "waves", "tiny-wan", 32, 32, 5, "variation", KEY, "queued", 10.0
    )
    store.add_video(job)
    assert store.video("acme", "video_1") == job
    assert store.video("globex", "video_1") is None
    store.update_video("video_1", "in_progress")
    store.update_video("video_1", "completed", asset_id="v1", edgeroute={"route": "hub_oss"})
    done = store.video("acme", "video_1")
    assert done is not None and done.status == "completed" and done.asset_id == "v1"
    assert done.model == "tiny-wan" and done.edgeroute == {"route": "hub_oss"} and done.completed
