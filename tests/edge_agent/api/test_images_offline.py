"""Images and video with the hub away: an edge agent whose link points nowhere, and one with no
link at all, refuse new pictures and videos with a 503 and ``Retry-After``; what the edge's own
store already holds still serves ``exact_ok``, once per user.
"""

from __future__ import annotations

import base64
import hashlib
import io
from pathlib import Path

import httpx
from PIL import Image

from edge_agent.backends.llamacpp import LlamaCppBackend
from edge_agent.hub_link import HubLink
from edge_agent.images.store import EdgeAssetStore, StoredAsset, request_key
from tests.cloud_hub.helpers import make_keys
from tests.edge_agent.api.media_deployment import KEYS, SIZE, STEPS, start_agent


def test_without_a_reachable_hub_images_are_refused_with_retry_after(
    tmp_path: Path, smollm_backend: LlamaCppBackend
) -> None:
    keys = make_keys(tmp_path)
    nowhere = HubLink("tcp://127.0.0.1:9", keys.hub_public, keys.edge_secret_file, heartbeat_s=0.3)
    for link in (nowhere, None):
        agent, _spool = start_agent(tmp_path / f"edge-{link is None}", link, smollm_backend)
        try:
            for path in ("/v1/images/generations", "/v1/videos/generations"):
                resp = httpx.post(
                    f"{agent.base_url}{path}",
                    json={"prompt": "a cat", "size": SIZE},
                    headers={"Authorization": f"Bearer {KEYS['acme']}"},
                )
                assert resp.status_code == 503, resp.text
                assert int(resp.headers["Retry-After"]) > 0
                assert resp.json()["error"]["type"] == "service_unavailable"
        finally:
            agent.stop()
    # what the edge's own store holds still serves exact_ok with the hub away; the rest is refused
    home = tmp_path / "edge-stocked"
    stock = EdgeAssetStore(home / "images.db")
    png = Image.new("RGB", (32, 32), "teal")
    buf = io.BytesIO()
    png.save(buf, format="PNG")
    data = buf.getvalue()
    asset = StoredAsset(
        "a1", "image", 32, 32, 1, "image/png", data, hashlib.sha256(data).hexdigest(), 3, STEPS, "m"
    )
    stock.put("acme", request_key("a teal square"), asset)
    stock.close()
    away = HubLink("tcp://127.0.0.1:9", keys.hub_public, keys.edge_secret_file, heartbeat_s=0.3)
    agent, _spool = start_agent(home, away, smollm_backend)
    try:
        headers = {"Authorization": f"Bearer {KEYS['acme']}"}
        body = {"prompt": "a teal square", "size": SIZE, "reuse": "exact_ok", "response_format": "b64_json"}
        served = httpx.post(f"{agent.base_url}/v1/images/generations", json=body, headers=headers)
        assert served.status_code == 200 and served.headers["x-edgeroute-route"] == "asset_reuse"
        assert base64.b64decode(served.json()["data"][0]["b64_json"]) == data
        again = httpx.post(f"{agent.base_url}/v1/images/generations", json=body, headers=headers)
        assert again.status_code == 503  # that user has it; a new one needs the hub
    finally:
        agent.stop()
