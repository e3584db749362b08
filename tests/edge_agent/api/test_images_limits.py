"""Budgets and admission for images and video, end to end: ``cloud-hub serve`` with the tiny
random-weight pipelines (a real process, real CURVE keys), real agents over HTTP.

A tenant with a small cap sends 20 image requests at once: the spend stays within the cap and
the rest get the chat path's 429 ``budget_exceeded``; an as-is asset from the edge's own store is
still served, free. A video holds its reservation while it runs. A flood against a small media
gate gets fast 429s with ``Retry-After``, two running videos fill that gate until the hub says
they ended (nobody polls them), and the gate recovers without a restart.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from edge_agent.app import create_app
from edge_agent.backends.llamacpp import LlamaCppBackend
from edge_agent.hub_link import HubLink
from edge_agent.images.gateway import ImageGateway
from edge_agent.images.store import EdgeAssetStore
from edge_agent.serving import BackgroundAgent
from shared.config import AdmissionSettings, EdgeImageSettings, EdgeSettings, TenantConfig
from tests.cloud_hub.helpers import HubProcess, Keys, make_keys
from tests.edge_agent.api.media_deployment import FRAME, PRICE, SIZE, STEPS, hub_config
from tests.edge_agent.live import wait_hub

VIDEO_STEPS = 6  # the hub config's video default_steps, at 10 × PRICE
KEYS = {"capped": "sk-capped-media", "free": "sk-free-media"}
IMAGE_CAP = 0.03  # three fresh pictures (3 × 8 steps × $0.001 = $0.024); a fourth would pass it
VIDEO_CAP = 0.1  # one video's reservation (6 × $0.01 = $0.06) fits, two do not
BURST = 20


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HubProcess, Keys]]:
    root = tmp_path_factory.mktemp("image-limits")
    keys = make_keys(root)
    process = HubProcess(keys.hub_home, hub_config(root))
    process.start(timeout_s=300)  # torch, diffusers and both tiny pipelines load first
    yield process, keys
    process.stop()


def _agent(
    hub: tuple[HubProcess, Keys],
    home: Path,
    backend: LlamaCppBackend,
    *,
    cap: float,
    media_in_flight: int = 16,
) -> BackgroundAgent:
    process, keys = hub
    tenants = [
        TenantConfig(name="capped", api_key=SecretStr(KEYS["capped"]), budget_usd=cap),
        TenantConfig(name="free", api_key=SecretStr(KEYS["free"])),
    ]
    images = EdgeImageSettings(
        image_usd_per_step=PRICE,
        image_default_steps=STEPS,
        video_usd_per_step=10 * PRICE,
        video_default_steps=VIDEO_STEPS,
    )
    settings = EdgeSettings(
        home=home,
        heartbeat_s=0.3,
        tenants=tenants,
        images=images,
        admission=AdmissionSettings(media_in_flight=media_in_flight),
    )
    link = HubLink(process.endpoint, keys.hub_public, keys.edge_secret_file, heartbeat_s=0.3, max_frame=FRAME)
    gateway = ImageGateway(EdgeAssetStore(home / "images.db"), link, timeout_s=120)
    app = create_app(settings, backend, hub=link, images=gateway, owns_backend=False)
    agent = BackgroundAgent(app).start()
    wait_hub(agent.base_url, timeout_s=60)
    return agent


def _prompt() -> str:
    return f"a paper boat on a puddle, watercolour {uuid.uuid4().hex[:8]}"


def _headers(tenant: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[tenant]}"}


async def _burst(url: str, tenant: str, bodies: list[dict[str, Any]]) -> list[tuple[httpx.Response, float]]:
    """Every body at once; each response with the seconds it took."""
    async with httpx.AsyncClient(timeout=300) as client:

        async def one(body: dict[str, Any]) -> tuple[httpx.Response, float]:
            began = time.perf_counter()
            resp = await client.post(f"{url}/v1/images/generations", json=body, headers=_headers(tenant))
            return resp, time.perf_counter() - began

        return await asyncio.gather(*(one(b) for b in bodies))


def _ledger(home: Path, tenant: str) -> tuple[float, int]:
    """(spent over every window, open holds) of ``tenant``, read beside the agent's own connection."""
    with sqlite3.connect(home / "budgets.db") as db:
        (spent,) = db.execute(
            "SELECT COALESCE(SUM(spent_usd), 0) FROM spend WHERE tenant = ?", (tenant,)
        ).fetchone()
        (holds,) = db.execute("SELECT COUNT(*) FROM holds WHERE tenant = ?", (tenant,)).fetchone()
    return float(spent), int(holds)


def _image(url: str, tenant: str, **body: Any) -> httpx.Response:
    body = {"size": SIZE, "response_format": "b64_json", **body}
    return httpx.post(f"{url}/v1/images/generations", json=body, headers=_headers(tenant), timeout=300)


def _video(url: str, tenant: str, prompt: str) -> httpx.Response:
    body = {"prompt": prompt, "size": SIZE, "frames": 5}
    return httpx.post(f"{url}/v1/videos/generations", json=body, headers=_headers(tenant), timeout=300)


def test_twenty_concurrent_image_requests_stay_within_the_tenants_budget(
    hub: tuple[HubProcess, Keys], smollm_backend: LlamaCppBackend, tmp_path: Path
) -> None:
    home = tmp_path / "edge"
    agent = _agent(hub, home, smollm_backend, cap=IMAGE_CAP)
    try:
        bodies = [
            {
                "prompt": _prompt(),
                "size": SIZE,
                "reuse": "fresh",
                "user": f"u{i}",
                "response_format": "b64_json",
            }
            for i in range(BURST)
        ]
        results = asyncio.run(_burst(agent.base_url, "capped", bodies))
        answered = [(b, r) for b, (r, _) in zip(bodies, results, strict=True) if r.status_code == 200]
        refused = [r for r, _ in results if r.status_code != 200]
        assert 1 <= len(answered) <= 3, [r.status_code for r, _ in results]
        for r in refused:  # the chat path's refusal of a tenant over budget
            assert r.status_code == 429, r.text
            error = r.json()["error"]
            assert error["code"] == "budget_exceeded" and error["type"] == "rate_limit_error"
            assert int(r.headers["Retry-After"]) >= 1
        charged = sum(r.json()["edgeroute"]["cost_usd"] for _, r in answered)
        spent, holds = _ledger(home, "capped")
        assert spent == pytest.approx(charged) and spent <= IMAGE_CAP and holds == 0
        assert spent == pytest.approx(len(answered) * STEPS * PRICE)  # fresh: every step run

        # an as-is asset from the edge's own store costs nothing and needs no reservation
        body, _ = answered[0]
        reused = _image(agent.base_url, "capped", prompt=body["prompt"], reuse="exact_ok", user="zed")
        assert reused.status_code == 200, reused.text
        assert reused.headers["x-edgeroute-route"] == "asset_reuse"
        assert reused.json()["edgeroute"]["cost_usd"] == 0.0
        # once the budget cannot cover a fresh picture, one that needs the hub is refused
        while spent + STEPS * PRICE <= IMAGE_CAP:
            assert _image(agent.base_url, "capped", prompt=_prompt(), reuse="fresh").status_code == 200
            spent, _ = _ledger(home, "capped")
        over = _image(agent.base_url, "capped", prompt=body["prompt"], reuse="exact_ok", user="zed")
        assert over.status_code == 429 and over.json()["error"]["code"] == "budget_exceeded"
        assert "left" in over.json()["error"]["message"]
        assert _ledger(home, "capped")[0] <= IMAGE_CAP
        # another tenant's requests are not this tenant's budget
        assert _image(agent.base_url, "free", prompt=_prompt(), reuse="fresh").status_code == 200
    finally:
        agent.stop()


def test_a_running_video_holds_its_reservation_until_the_hub_says_it_ended(
    hub: tuple[HubProcess, Keys], smollm_backend: LlamaCppBackend, tmp_path: Path
) -> None:
    home = tmp_path / "edge"
    agent = _agent(hub, home, smollm_backend, cap=VIDEO_CAP)
    try:
        first = _video(agent.base_url, "capped", _prompt())
        assert first.status_code == 200 and first.json()["status"] == "queued", first.text
        second = _video(agent.base_url, "capped", _prompt())
        assert second.status_code == 429 and second.json()["error"]["code"] == "budget_exceeded"
        assert "in progress" in second.json()["error"]["message"]
        assert _ledger(home, "capped") == (0.0, 1)
        # nobody polls: the edge follows the job itself, settles it and stores the video
        end = time.monotonic() + 180
        while _ledger(home, "capped")[1]:
            assert time.monotonic() < end, "the video's reservation was never settled"
            time.sleep(0.2)
        spent, _ = _ledger(home, "capped")
        assert spent == pytest.approx(VIDEO_STEPS * 10 * PRICE)
        job = httpx.get(
            f"{agent.base_url}/v1/videos/generations/{first.json()['id']}", headers=_headers("capped")
        )
        assert job.json()["status"] == "completed" and job.json()["edgeroute"]["cost_usd"] == pytest.approx(
            spent
        )
        third = _video(agent.base_url, "capped", _prompt())  # $0.04 left, less than $0.06
        assert third.status_code == 429 and "left" in third.json()["error"]["message"]
    finally:
        agent.stop()


def test_a_flood_of_media_requests_gets_fast_429s_and_the_gate_recovers(
    hub: tuple[HubProcess, Keys], smollm_backend: LlamaCppBackend, tmp_path: Path
) -> None:
    agent = _agent(hub, tmp_path / "edge", smollm_backend, cap=IMAGE_CAP, media_in_flight=2)
    url = agent.base_url
    try:
        bodies = [{"prompt": _prompt(), "size": SIZE, "reuse": "fresh"} for _ in range(12)]
        results = asyncio.run(_burst(url, "free", bodies))
        served = [t for r, t in results if r.status_code == 200]
        refused = [(r, t) for r, t in results if r.status_code != 200]
        assert len(served) >= 2 and len(refused) >= 6, [r.status_code for r, _ in results]
        for r, took in refused:
            assert r.status_code == 429 and r.json()["error"]["code"] == "overloaded", r.text
            assert int(r.headers["Retry-After"]) >= 1
            assert took < min(served)  # refused at once, not after waiting for a place
        assert _image(url, "free", prompt=_prompt()).status_code == 200  # recovered, no restart

        # two running videos fill the gate while they run, polled by nobody
        videos = [_video(url, "free", _prompt()) for _ in range(2)]
        assert [v.status_code for v in videos] == [200, 200], [v.text for v in videos]
        blocked = _image(url, "free", prompt=_prompt())
        assert blocked.status_code == 429 and blocked.json()["error"]["code"] == "overloaded"
        health = httpx.get(f"{url}/health").json()["admission"]["hub_media"]
        assert health["limit"] == 2 and health["refused"] >= len(refused) + 1
        end = time.monotonic() + 180
        while httpx.get(f"{url}/health").json()["admission"]["hub_media"]["in_progress"]:
            assert time.monotonic() < end, "the running videos never gave their places back"
            time.sleep(0.2)
        for v in videos:
            job = httpx.get(f"{url}/v1/videos/generations/{v.json()['id']}", headers=_headers("free"))
            assert job.json()["status"] == "completed", job.text
        assert _image(url, "free", prompt=_prompt()).status_code == 200
    finally:
        agent.stop()
