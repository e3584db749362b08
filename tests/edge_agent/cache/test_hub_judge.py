"""Grey-zone candidates judged by the hub, end to end over real sockets and CURVE.

An in-process hub (its own thread and loop; the real ``Hub``, global cache, publisher and pair-head
judge) and two edges as the agent assembles their caches: a ``CacheStage`` over a real cache file
and the real embedder, a ``HubLink``, and a ``GlobalCacheFollower``. Only the judge's per-domain
threshold is set from the test (through the thresholds file ``cloud-hub cache judge fit`` writes),
so the same pair can be approved in one test and rejected in another.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cloud_hub.cache.judge_head import HeadJudge
from cloud_hub.cache.sharing import GlobalCache
from cloud_hub.cache.store import GlobalCacheStore
from cloud_hub.server import Hub
from edge_agent.cache.db import connect
from edge_agent.cache.embedding import MemoEmbedder
from edge_agent.cache.service import CacheService
from edge_agent.cache.stage import CacheStage
from edge_agent.cache.sync import GlobalCacheFollower
from edge_agent.hub_link import HubLink
from edge_agent.request import Answer, InferenceRequest
from edge_agent.tenancy import RequestContext
from shared.cache_judge import JudgeHead
from shared.config import CacheSettings, GlobalCacheSettings
from shared.embedding import Embedder
from shared.keys import enroll_public_key, init_keys, load_secret
from shared.routing.embed import load_default_embedder
from shared.taxonomy import Route
from shared.wire import ChatMessage, SamplingParams, TraceStep, Usage
from tests.cloud_hub.helpers import Keys, build_hub, make_keys
from tests.edge_agent.live import hub_in_thread

STORED, ASKED = "How do I reverse a list in Python?", "how can I reverse a python list"
FRANCE, FRANCE_ASKED = "What is the capital of France?", "which city is the capital of France"


@dataclass
class HubSide:
    hub: Hub
    cache: GlobalCache
    judge: HeadJudge
    thresholds: Path
    keys: Keys

    def set_threshold(self, value: float) -> None:
        self.thresholds.write_text(json.dumps({self.judge.name: {"general": value}}))
        later = time.time() + 1  # a new mtime even within the file system's timestamp granularity
        os.utime(self.thresholds, (later, later))


@pytest.fixture(scope="module")
def hub_side(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[tuple[HubSide, Path]]:
    root = tmp_path_factory.mktemp("hub-judge")
    keys = make_keys(root)
    enroll_public_key(init_keys(root / "edge2" / "keys")[0], keys.enrolled_dir)
    settings = GlobalCacheSettings(pub_bind="tcp://127.0.0.1:0", snapshot_bind="tcp://127.0.0.1:0")
    cache = GlobalCache(GlobalCacheStore(root / "global.db"), settings)
    judge = HeadJudge(load_default_embedder(models_dir), JudgeHead.load())
    thresholds = root / "judge_thresholds.json"
    cache.enable_judging([judge], thresholds)
    with hub_in_thread(build_hub(keys, heartbeat_s=0.3, global_cache=cache)) as hub:
        yield HubSide(hub, cache, judge, thresholds, keys), root


@dataclass
class Edge:
    service: CacheService
    stage: CacheStage
    link: HubLink | None
    follower: GlobalCacheFollower

    def aliases(self) -> list[tuple[str, str]]:
        conn = connect(self.service.db.path)
        try:
            return [(str(q), str(a)) for q, a in conn.execute("SELECT question, answer FROM sem_aliases")]
        finally:
            conn.close()


@pytest.fixture()
async def edges(
    hub_side: tuple[HubSide, Path], embedder: Embedder, tmp_path: Path
) -> AsyncIterator[tuple[Edge, Edge]]:
    side, root = hub_side
    hub_key = side.keys.hub_public
    publisher = side.cache.publisher
    assert publisher is not None
    made: list[Edge] = []
    for name, key_dir, linked in (
        ("edge", root / "edge" / "keys", True),
        ("edge2", root / "edge2" / "keys", False),
    ):
        secret_file = init_keys(key_dir)[1]
        public, secret = load_secret(secret_file)
        service = CacheService(tmp_path / f"{name}.db", CacheSettings(), embedder=MemoEmbedder(embedder))
        assert service.semantic is not None
        link = HubLink(side.hub.endpoint, hub_key, secret_file, heartbeat_s=0.3) if linked else None
        follower = GlobalCacheFollower(
            service.semantic,
            pub_endpoint=publisher.pub_endpoint,
            snapshot_endpoint=publisher.snapshot_endpoint,
            server_key=hub_key,
            public_key=public,
            secret_key=secret,
        )
        if link is not None:
            await link.start()
        await follower.start()
        made.append(Edge(service, CacheStage(service, judge=link), link, follower))
    linked_edge = made[0]
    assert linked_edge.link is not None
    await _until(lambda: linked_edge.link is not None and linked_edge.link.connected)
    yield made[0], made[1]
    for edge in made:
        await edge.stage.close()
        await edge.follower.close()
        if edge.link is not None:
            await edge.link.close()
        edge.service.close()


async def _until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


def _req(text: str, tenant: str = "acme", rid: str = "r") -> InferenceRequest:
    # the client's default sampling: an exact pool wants more answers, an alias serves at once
    return InferenceRequest(
        ctx=RequestContext(request_id=rid, tenant=tenant),
        model="qwen2.5-coder-0.5b-instruct",
        messages=(ChatMessage("user", text),),
        params=SamplingParams(max_tokens=64, temperature=1.0),
    )


def _answer(text: str) -> Answer:
    return Answer(text, "stop", Usage(3, 5), Route.HUB_OSS, "m", (TraceStep("hub", "reply", ""),))


async def _ask_and_answer(edge: Edge, text: str, answer: str, tenant: str = "acme") -> None:
    """One miss answered upstream: looked up, answered, its bookkeeping done (grey verdict included)."""
    req = _req(text, tenant)
    looked = await edge.stage.lookup(req)
    assert looked.hit is None
    await edge.stage.store(req, _answer(answer), looked)
    await edge.stage.drain()


async def test_an_approved_paraphrase_hits_at_the_edge_for_its_tenant_only(
    hub_side: tuple[HubSide, Path], edges: tuple[Edge, Edge]
) -> None:
    side, _ = hub_side
    edge, other_edge = edges
    side.set_threshold(0.0)  # reviews say this domain's grey pairs are reusable
    await _ask_and_answer(edge, STORED, "Use lst[::-1].")
    assert edge.stage.grey is not None and edge.stage.grey.sent == 0  # nothing cached yet to be grey
    await _ask_and_answer(edge, ASKED, "The hub's own answer.")
    assert edge.stage.grey.stats()["approved"] == 1
    await _until(lambda: edge.aliases() == [(ASKED, "Use lst[::-1].")])
    again = await edge.stage.lookup(_req(ASKED, rid="r2"))
    assert (
        again.hit is not None
        and again.hit.route is Route.SEMANTIC_CACHE
        and again.hit.text == "Use lst[::-1]."
    )
    step = next(s for s in again.steps if s.stage == Route.SEMANTIC_CACHE)
    assert (step.decision, step.reason, step.detail["origin"]) == ("hit", "alias", "alias")
    # the other tenant of the same edge, and the other edge, never see it
    assert (await edge.stage.lookup(_req(ASKED, tenant="globex", rid="r3"))).hit is None
    seq = side.cache.store.seq
    await _until(
        lambda: other_edge.service.semantic is not None and other_edge.service.semantic.hub_seq() >= seq
    )
    assert other_edge.aliases() == []


async def test_a_rejected_pair_is_not_judged_again(
    hub_side: tuple[HubSide, Path], edges: tuple[Edge, Edge]
) -> None:
    side, _ = hub_side
    edge, _ = edges
    judging = side.cache.judging
    assert judging is not None and edge.stage.grey is not None
    side.set_threshold(1.5)  # nothing is approved
    await _ask_and_answer(edge, FRANCE, "Paris.")
    before = judging.judged
    await _ask_and_answer(edge, FRANCE_ASKED, "Paris, on the Seine.")
    assert edge.stage.grey.rejected == 1 and judging.judged == before + 1
    # asked again (its own pool still filling): the same grey pair is found, and not sent again
    await _ask_and_answer(edge, FRANCE_ASKED, "Paris, the capital.")
    assert edge.stage.grey.known == 1 and edge.stage.grey.sent == 1 and judging.judged == before + 1
    assert all(question != FRANCE_ASKED for question, _ in edge.aliases())
