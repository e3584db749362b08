"""``cloud-hub serve`` with the real vLLM (CPU) backend answering through the real link."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from edge_agent.hub_link import HubLink, HubTimeout
from shared.wire import ChatMessage, Escalate, Reply, ReplyChunk, SamplingParams
from tests.cloud_hub.helpers import HubProcess, Keys, make_keys, write_config

pytestmark = pytest.mark.slow

MODEL = "qwen2.5-coder-0.5b-instruct"
QUESTION = [
    ChatMessage("system", "Answer with a single word."),
    ChatMessage("user", "What is the capital of France?"),
]
ESSAY = [ChatMessage("user", "Write a long, detailed essay on the history of the Python language.")]


@pytest.fixture(scope="module")
def vllm_hub(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[tuple[HubProcess, Keys]]:
    root = tmp_path_factory.mktemp("vllm-hub")
    keys = make_keys(root)
    entry = {"name": MODEL, "backend": "vllm", "max_model_len": 2048, "cost": {"usd_per_gpu_second": 0.0006}}
    config = write_config(root / "hub.yaml", [entry], MODEL, heartbeat_s=1.0)
    proc = HubProcess(keys.hub_home, config)
    proc.start(timeout_s=400)  # engine start is ~40 s on two cores, more when the box is busy
    yield proc, keys
    try:
        proc.terminate(timeout_s=60)
    finally:
        proc.kill()


@pytest.fixture
async def link(vllm_hub: tuple[HubProcess, Keys]) -> AsyncIterator[HubLink]:
    proc, keys = vllm_hub
    link = HubLink(proc.endpoint, keys.hub_public, keys.edge_secret_file, heartbeat_s=1.0)
    await link.start()
    started = time.monotonic()
    while not link.connected:
        assert time.monotonic() - started < 10, "link to the vLLM hub did not come up"
        await asyncio.sleep(0.05)
    yield link
    await link.close()


def _req(
    request_id: str, max_tokens: int = 8, in_s: float = 120.0, messages: list[ChatMessage] = QUESTION
) -> Escalate:
    params = SamplingParams(max_tokens=max_tokens, temperature=0.0)
    return Escalate(request_id, MODEL, messages, params, time.time() + in_s)


async def test_vllm_answers_a_real_request(link: HubLink) -> None:
    reply = await link.escalate(_req("v1"))
    assert "paris" in reply.text.lower()
    assert reply.model == MODEL and reply.route == "hub_oss"
    assert reply.usage.prompt_tokens > 10 and 0 < reply.usage.completion_tokens <= 8
    assert reply.cost_usd > 0  # GPU-seconds priced
    assert reply.trace[0].detail["backend"] == "vllm"


async def test_vllm_streams(link: HubLink) -> None:
    items = [i async for i in link.stream(_req("v2", max_tokens=24))]
    chunks = [i for i in items if isinstance(i, ReplyChunk)]
    final = items[-1]
    assert isinstance(final, Reply) and len(chunks) >= 1
    assert "".join(c.delta for c in chunks) == final.text
    assert "paris" in final.text.lower()
    assert [c.seq for c in chunks] == list(range(len(chunks)))


async def test_deadline_aborts_and_engine_keeps_serving(link: HubLink) -> None:
    with pytest.raises(HubTimeout):
        await link.escalate(_req("v3", max_tokens=1000, in_s=1.0, messages=ESSAY))
    assert "paris" in (await link.escalate(_req("v4"))).text.lower()
