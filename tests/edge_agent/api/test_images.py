"""Images and video end to end: ``cloud-hub serve`` with the tiny random-weight pipelines enabled
in its YAML (a real process, real CURVE keys, 64 KiB frames), an edge agent with two tenants
linked to it (``tests.edge_agent.api.media_deployment``), plain HTTP and the official ``openai``
client. The same edge with the hub away is ``test_images_offline``.

Every test draws its own prompt, so the stores the module shares never answer one test from
another's pictures.
"""

from __future__ import annotations

import base64
import hashlib
import io
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from PIL import Image

from edge_agent.backends.llamacpp import LlamaCppBackend
from edge_agent.hub_link import HubLink
from tests.cloud_hub.helpers import HubProcess, make_keys
from tests.edge_agent.api.media_deployment import (
    FRAME,
    KEYS,
    PRICE,
    SIZE,
    STEPS,
    Deployment,
    hub_config,
    start_agent,
)


@pytest.fixture(scope="module")
def dep(tmp_path_factory: pytest.TempPathFactory, smollm_backend: LlamaCppBackend) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("images")
    keys = make_keys(root)
    hub = HubProcess(keys.hub_home, hub_config(root))
    hub.start(timeout_s=300)  # torch, diffusers and both tiny pipelines load before the ready line
    link = HubLink(hub.endpoint, keys.hub_public, keys.edge_secret_file, heartbeat_s=0.3, max_frame=FRAME)
    agent, spool = start_agent(root / "edge", link, smollm_backend)
    try:
        end = time.monotonic() + 60
        while httpx.get(f"{agent.base_url}/health").json()["hub"] != "connected":
            assert time.monotonic() < end, "the edge never connected to the hub"
            time.sleep(0.1)
        yield Deployment(hub, keys, agent, spool)
    finally:
        agent.stop()
        hub.stop()


def _prompt() -> str:
    return f"a lighthouse in a storm, oil painting, study {uuid.uuid4().hex[:8]}"


def _post(dep: Deployment, path: str, tenant: str = "acme", **body: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {KEYS[tenant]}"}
    return httpx.post(f"{dep.url}{path}", json=body, headers=headers, timeout=180)


def _get(dep: Deployment, path: str, tenant: str | None = "acme") -> httpx.Response:
    headers = {"Authorization": f"Bearer {KEYS[tenant]}"} if tenant else {}
    return httpx.get(f"{dep.url}{path}", headers=headers, timeout=180)


def _images(dep: Deployment, prompt: str, *, tenant: str = "acme", **body: Any) -> httpx.Response:
    body = {"prompt": prompt, "size": SIZE, "response_format": "b64_json", **body}
    resp = _post(dep, "/v1/images/generations", tenant, **body)
    assert resp.status_code == 200, resp.text
    return resp


def _assets(resp: httpx.Response) -> list[dict[str, Any]]:
    assets: list[dict[str, Any]] = resp.json()["edgeroute"]["assets"]
    return assets


def _pngs(resp: httpx.Response) -> list[bytes]:
    return [base64.b64decode(item["b64_json"]) for item in resp.json()["data"]]


def test_the_same_prompt_twice_gives_two_pictures_and_the_second_costs_fewer_steps(dep: Deployment) -> None:
    prompt = _prompt()
    first = _images(dep, prompt, user="ann")
    second = _images(dep, prompt, user="ann")
    assert first.headers["x-edgeroute-route"] == "hub_oss"
    assert second.headers["x-edgeroute-route"] == "asset_reuse"
    (a,), (b,) = _assets(first), _assets(second)
    assert a["kind"] == "fresh" and a["steps_run"] == STEPS and not a["reused"]
    assert b["kind"] == "variation" and b["source_asset_id"] == a["asset_id"] and b["reused"]
    assert b["steps_run"] < a["steps_run"] and b["steps_skipped"] > 0
    assert b["similarity"] == pytest.approx(1.0, abs=1e-3) and b["distance"] > 0
    assert b["asset_id"] != a["asset_id"] and _pngs(first) != _pngs(second)
    trace = second.json()["edgeroute"]["trace"]
    assert trace[0]["stage"] == "asset_store" and trace[0]["decision"] == "skip"
    hop = trace[1]
    assert hop["stage"] == "asset_reuse" and hop["decision"] == "hit"
    assert hop["detail"]["source_asset_id"] == a["asset_id"] and hop["detail"]["steps_skipped"] > 0
    # what the hub made is what arrived
    assert _pngs(second)[0] == dep.hub_png(b["asset_id"])


def test_fresh_never_reuses(dep: Deployment) -> None:
    prompt = _prompt()
    _images(dep, prompt, n=2)
    fresh = _images(dep, prompt, n=3, reuse="fresh")
    assert fresh.headers["x-edgeroute-route"] == "hub_oss"
    for asset in _assets(fresh):
        assert asset["kind"] == "fresh" and asset["steps_run"] == STEPS and asset["source_asset_id"] is None
    assert fresh.json()["edgeroute"]["steps_skipped"] == 0


def test_exact_ok_may_hand_out_a_cached_picture_but_never_twice_to_one_user(dep: Deployment) -> None:
    prompt = _prompt()
    made = _images(dep, prompt, n=2, user="ann")
    ann = {a["asset_id"] for a in _assets(made)}
    by_id = dict(zip([a["asset_id"] for a in _assets(made)], _pngs(made), strict=True))
    got = _images(dep, prompt, user="bob", reuse="exact_ok")
    (taken,) = _assets(got)
    assert got.headers["x-edgeroute-route"] == "asset_reuse"
    assert taken["where"] == "edge" and taken["kind"] == "exact" and taken["steps_run"] == 0
    assert taken["asset_id"] in ann and _pngs(got)[0] == by_id[taken["asset_id"]]
    assert got.json()["edgeroute"]["cost_usd"] == 0.0
    # bob asks for more than the edge holds for him: the rest comes from the hub, never a repeat
    bob = [taken["asset_id"]]
    for _ in range(2):
        more = _images(dep, prompt, user="bob", reuse="exact_ok", n=2)
        bob += [a["asset_id"] for a in _assets(more)]
    assert len(bob) == len(set(bob)) == 5
    assert ann <= set(bob)  # both of ann's pictures, once each
    # and ann, asking exact_ok, is never handed her own pictures back
    back = _images(dep, prompt, user="ann", reuse="exact_ok", n=3)
    assert not ann & {a["asset_id"] for a in _assets(back)}


def test_a_user_never_receives_the_same_asset_twice_without_exact_ok(dep: Deployment) -> None:
    prompt = _prompt()
    seen: list[str] = []
    pictures: list[bytes] = []
    for _ in range(3):
        resp = _images(dep, prompt, user="cy", n=2)
        seen += [a["asset_id"] for a in _assets(resp)]
        pictures += _pngs(resp)
    assert len(set(seen)) == len(seen) == 6
    assert len(set(pictures)) == 6


def test_tenant_b_never_gets_tenant_a_pictures(dep: Deployment) -> None:
    prompt = _prompt()
    mine = _images(dep, prompt, tenant="acme", n=2)
    acme = {a["asset_id"] for a in _assets(mine)}
    for reuse in ("exact_ok", "variation"):
        theirs = _images(dep, prompt, tenant="globex", reuse=reuse)
        (asset,) = _assets(theirs)
        assert asset["asset_id"] not in acme and asset["source_asset_id"] not in acme
    assert theirs.headers["x-edgeroute-route"] == "asset_reuse"  # globex's own first picture
    asset_id = next(iter(acme))
    assert _get(dep, f"/v1/images/assets/{asset_id}", "acme").status_code == 200
    refused = _get(dep, f"/v1/images/assets/{asset_id}", "globex")
    assert refused.status_code == 404 and refused.json()["error"]["type"] == "invalid_request_error"
    assert _get(dep, f"/v1/images/assets/{asset_id}", None).status_code == 401


def test_url_responses_point_at_the_tenants_own_asset_route(dep: Deployment) -> None:
    resp = _post(dep, "/v1/images/generations", prompt=_prompt(), size=SIZE)
    assert resp.status_code == 200
    (item,) = resp.json()["data"]
    url = item["url"]
    assert url.startswith(f"{dep.url}/v1/images/assets/")
    png = httpx.get(url, headers={"Authorization": f"Bearer {KEYS['acme']}"})
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(png.content)).size == (32, 32)


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"n": 11}, 400, "n"),
        ({"n": 100_000}, 400, "n"),
        ({"n": 0}, 400, "n"),
        ({"size": "13x13"}, 400, "size"),
        ({"size": "4096x4096"}, 400, "size"),
        ({"size": "large"}, 400, "size"),
        ({"response_format": "gif"}, 400, "response_format"),
        ({"reuse": "sometimes"}, 400, "reuse"),
        ({"prompt": ""}, 400, "prompt"),
        ({"style": "vivid"}, 400, "style"),
        ({"model": "dall-e-3"}, 404, "model"),
    ],
)
def test_bad_image_requests_get_an_openai_error_body(
    dep: Deployment, body: dict[str, Any], status: int, param: str
) -> None:
    resp = _post(dep, "/v1/images/generations", **({"prompt": "a cat"} | body))
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param and error["message"]
    assert error["type"] == "invalid_request_error"


def test_a_video_job_is_submitted_polled_and_fetched(dep: Deployment) -> None:
    prompt = _prompt()
    submitted = _post(dep, "/v1/videos/generations", prompt=prompt, size=SIZE, frames=5)
    assert submitted.status_code == 200, submitted.text
    job = submitted.json()
    assert job["object"] == "video" and job["status"] == "queued" and job["frames"] == 5
    video_id = job["id"]
    early = _get(dep, f"/v1/videos/generations/{video_id}/content")
    assert early.status_code == 400 and early.json()["error"]["code"] == "video_not_ready"
    assert _get(dep, f"/v1/videos/generations/{video_id}", "globex").status_code == 404
    end = time.monotonic() + 120
    while job["status"] in ("queued", "in_progress"):
        assert time.monotonic() < end, job
        time.sleep(0.3)
        polled = _get(dep, f"/v1/videos/generations/{video_id}")
        assert polled.status_code == 200, polled.text
        job = polled.json()
    assert job["status"] == "completed", job
    assert job["model"] == "tiny-wan" and job["completed_at"] >= job["created_at"]
    route = job["edgeroute"]
    assert route["modality"] == "video" and route["route"] == "hub_oss" and route["steps_run"] == 6
    content = _get(dep, f"/v1/videos/generations/{video_id}/content")
    assert content.status_code == 200 and content.headers["content-type"] == "image/apng"
    movie = Image.open(io.BytesIO(content.content))
    assert movie.size == (32, 32) and getattr(movie, "n_frames", 1) == 5
    # every frame, pixel for pixel, is the frame the hub rendered
    for i, hub_png in enumerate(dep.hub_frames(route["assets"][0]["asset_id"])):
        movie.seek(i)
        assert movie.convert("RGB").tobytes() == Image.open(io.BytesIO(hub_png)).convert("RGB").tobytes()
    # the same prompt again reuses the video's latents: cheaper, and a different video
    again = _post(dep, "/v1/videos/generations", prompt=prompt, size=SIZE, frames=5).json()
    while again["status"] in ("queued", "in_progress"):
        time.sleep(0.3)
        again = _get(dep, f"/v1/videos/generations/{again['id']}").json()
    assert again["status"] == "completed"
    assert again["edgeroute"]["route"] == "asset_reuse" and again["edgeroute"]["steps_run"] < 6
    assert again["edgeroute"]["assets"][0]["source_asset_id"] == route["assets"][0]["asset_id"]
    bad = _post(dep, "/v1/videos/generations", prompt=prompt, frames=6)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "frames"
    # one event per video, written when a poll saw it end
    events = [e for e in dep.events() if e.response_id in (video_id, again["id"])]
    assert sorted(e.route for e in events) == ["asset_reuse", "hub_oss"]
    assert all(e.operation == "video_generation" and e.modality == "video" for e in events)
    assert sum(e.cost_usd for e in events) == pytest.approx(
        (route["steps_run"] + again["edgeroute"]["steps_run"]) * 10 * PRICE
    )


def test_a_picture_bigger_than_one_frame_arrives_chunked_and_intact(dep: Deployment) -> None:
    resp = _images(dep, _prompt(), size="256x256", reuse="fresh")
    (asset,) = _assets(resp)
    (png,) = _pngs(resp)
    assert len(png) > FRAME and asset["chunks"] >= 2
    assert hashlib.sha256(png).digest() == hashlib.sha256(dep.hub_png(asset["asset_id"])).digest()
    assert Image.open(io.BytesIO(png)).size == (256, 256)


def test_each_request_leaves_one_telemetry_event_with_route_and_cost(dep: Deployment) -> None:
    dep.events()  # what earlier tests left
    resp = _images(dep, _prompt(), n=2, user="dee")
    events = [e for e in dep.events() if e.response_id == resp.headers["x-request-id"]]
    assert len(events) == 1
    (event,) = events
    route = resp.json()["edgeroute"]
    assert event.operation == "image_generation" and event.modality == "image"
    assert event.route == resp.headers["x-edgeroute-route"] == route["route"]
    assert event.cost_usd == pytest.approx(route["steps_run"] * PRICE) == pytest.approx(route["cost_usd"])
    assert event.extra["edgeroute.media.steps_run"] == route["steps_run"]
    assert event.extra["edgeroute.media.count"] == 2 and event.user != "dee"


def test_the_openai_client_generates_images_through_the_edge(dep: Deployment) -> None:
    client = openai.OpenAI(base_url=f"{dep.url}/v1", api_key=KEYS["acme"], max_retries=0)
    raw = client.images.with_raw_response.generate(
        prompt=_prompt(), n=2, size=SIZE, response_format="b64_json", extra_body={"reuse": "fresh"}
    )
    assert raw.headers["x-edgeroute-route"] == "hub_oss"
    result = raw.parse()
    assert result.data is not None and len(result.data) == 2
    for image in result.data:
        assert image.b64_json is not None
        assert Image.open(io.BytesIO(base64.b64decode(image.b64_json))).size == (32, 32)
    with pytest.raises(openai.BadRequestError) as refused:
        client.images.generate(prompt="a cat", n=11)
    assert refused.value.status_code == 400


def test_the_hubs_image_and_video_models_are_listed_but_chat_cannot_use_them(dep: Deployment) -> None:
    client = openai.OpenAI(base_url=f"{dep.url}/v1", api_key=KEYS["acme"], max_retries=0)
    listed = [m.id for m in client.models.list()]
    media = [m for m in listed if m.startswith("tiny-")]  # the hub names its pipelines after the config
    assert len(media) == 2 and len(set(listed)) == len(listed), listed
    for name in media:
        assert client.models.retrieve(name).owned_by == "hub"
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model=name, messages=[{"role": "user", "content": "hi"}])
