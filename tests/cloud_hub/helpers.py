"""Real pieces for hub and link tests: key sets, an in-process hub, a hub subprocess, a raw client.

Nothing here fakes ZeroMQ or CURVE; the extra backends are real ``Backend`` implementations whose
behaviour (slow, failing) is what the tests need.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.asyncio

from cloud_hub.backends import Completion, HubBackendError, StreamItem
from cloud_hub.backends.echo import EchoBackend
from cloud_hub.cache.sharing import GlobalCache
from cloud_hub.registry import ModelRegistry, RegisteredModel
from cloud_hub.server import Hub
from cloud_hub.sink import TelemetrySink
from shared.codec import DEFAULT_MAX_FRAME, Codec
from shared.config import CostModel, HubModelEntry
from shared.keys import enroll_public_key, init_keys, load_public, load_secret
from shared.procs import ChildProcess
from shared.taxonomy import Tier
from shared.wire import Body, ChatMessage, Heartbeat, SamplingParams

HUB_CLI = Path(sys.executable).with_name("cloud-hub")


@dataclass(frozen=True)
class Keys:
    hub_home: Path
    hub_public: bytes
    hub_secret_file: Path
    edge_public_file: Path
    edge_secret_file: Path

    @property
    def enrolled_dir(self) -> Path:
        return self.hub_home / "enrolled"


def make_keys(root: Path, *, enroll: bool = True) -> Keys:
    hub_pub, hub_sec = init_keys(root / "hub" / "keys")
    edge_pub, edge_sec = init_keys(root / "edge" / "keys")
    (root / "hub" / "enrolled").mkdir(parents=True, exist_ok=True)
    if enroll:
        enroll_public_key(edge_pub, root / "hub" / "enrolled")
    return Keys(root / "hub", load_public(hub_pub), hub_sec, edge_pub, edge_sec)


class SlowBackend:
    """Echo after a delay: long enough to overrun deadlines, short enough to keep tests fast."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.cancelled = 0  # how many calls were stopped from outside (deadline, edge cancel)
        self.active = 0
        self.peak = 0  # most calls in progress at once
        self._echo = EchoBackend()

    async def _pause(self) -> None:
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            await asyncio.sleep(self.delay_s)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.active -= 1

    async def generate(self, messages: Sequence[ChatMessage], params: SamplingParams) -> Completion:
        await self._pause()
        return await self._echo.generate(messages, params)

    async def stream(
        self, messages: Sequence[ChatMessage], params: SamplingParams
    ) -> AsyncIterator[StreamItem]:
        async for item in self._echo.stream(messages, params):
            await self._pause()
            yield item

    async def close(self) -> None:
        await self._echo.close()


class FailingBackend:
    def __init__(self, retryable: bool) -> None:
        self.retryable = retryable

    async def generate(self, messages: Sequence[ChatMessage], params: SamplingParams) -> Completion:
        raise HubBackendError("model server is overloaded", retryable=self.retryable)

    async def stream(
        self, messages: Sequence[ChatMessage], params: SamplingParams
    ) -> AsyncIterator[StreamItem]:
        yield "partial"
        raise HubBackendError("model server dropped the stream", retryable=self.retryable)

    async def close(self) -> None:
        return None


ECHO_COST = CostModel(usd_per_1k_prompt=0.5, usd_per_1k_completion=1.5)


def build_registry(slow_s: float = 0.3) -> ModelRegistry:
    def entry(name: str, tier: Tier = Tier.OSS, cost: CostModel | None = None) -> HubModelEntry:
        return HubModelEntry(name=name, backend="echo", tier=tier, cost=cost or CostModel())

    return ModelRegistry(
        [
            RegisteredModel(entry("echo", cost=ECHO_COST), EchoBackend()),
            RegisteredModel(entry("frontier-echo", Tier.FRONTIER), EchoBackend()),
            RegisteredModel(entry("slow"), SlowBackend(slow_s)),
            RegisteredModel(entry("flaky"), FailingBackend(retryable=True)),
            RegisteredModel(entry("broken"), FailingBackend(retryable=False)),
        ],
        default_model="echo",
    )


def build_hub(
    keys: Keys,
    *,
    sink: TelemetrySink | None = None,
    max_frame: int = DEFAULT_MAX_FRAME,
    heartbeat_s: float = 0.2,
    max_inflight: int = 256,
    global_cache: GlobalCache | None = None,
) -> Hub:
    """A hub on a free loopback port serving ``build_registry()`` to the enrolled edge; not started."""
    return Hub(
        bind="tcp://127.0.0.1:0",
        secret_key_file=keys.hub_secret_file,
        enrolled_dir=keys.enrolled_dir,
        registry=build_registry(),
        sink=sink,
        heartbeat_s=heartbeat_s,
        max_frame=max_frame,
        enrol_poll_s=0.1,
        max_inflight=max_inflight,
        global_cache=global_cache,
    )


async def start_hub(
    keys: Keys,
    *,
    sink: TelemetrySink | None = None,
    max_frame: int = 64 * 1024,
    heartbeat_s: float = 0.2,
    max_inflight: int = 256,
) -> Hub:
    hub = build_hub(keys, sink=sink, max_frame=max_frame, heartbeat_s=heartbeat_s, max_inflight=max_inflight)
    await hub.start()
    return hub


class RawClient:
    """A bare CURVE DEALER: sends any bytes, so tests can play a broken or hostile edge."""

    def __init__(self, endpoint: str, hub_public: bytes, secret_file: Path) -> None:
        self.context = zmq.asyncio.Context()
        self.socket = self.context.socket(zmq.DEALER)
        try:
            self.socket.linger = 0
            self.socket.curve_serverkey = hub_public
            self.socket.curve_publickey, self.socket.curve_secretkey = load_secret(secret_file)
            self.socket.reconnect_ivl = 50
            self.socket.connect(endpoint)
        except BaseException:
            self.close()  # a half-built client would otherwise be left to the garbage collector
            raise
        self.codec = Codec(max_frame=1 << 24)

    async def send(self, body: Body, timeout: float = 3.0) -> None:
        await self.send_frames([self.codec.encode(body)], timeout)

    async def send_frames(self, frames: list[bytes], timeout: float = 3.0) -> None:
        # a DEALER whose handshake was refused has no peer left and would block forever
        await asyncio.wait_for(self.socket.send_multipart(frames), timeout)

    async def recv(self, timeout: float = 3.0, *, hub_beats: bool = False) -> Body | None:
        """The next frame from the hub; the hub's own liveness beats are skipped unless asked for,
        since they arrive whenever the hub's beat timer fires, between any two replies."""
        end = asyncio.get_running_loop().time() + timeout
        while True:
            left = end - asyncio.get_running_loop().time()
            if left <= 0 or not await self.socket.poll(int(left * 1000)):
                return None
            body = self.codec.decode(await self.socket.recv())
            if hub_beats or not (isinstance(body, Heartbeat) and body.from_hub):
                return body

    def close(self) -> None:
        self.socket.close(linger=0)
        self.context.term()


def write_config(
    path: Path, models: Sequence[dict[str, object]], default: str, heartbeat_s: float = 0.2
) -> Path:
    import yaml

    path.write_text(
        yaml.safe_dump({"models": list(models), "default_model": default, "heartbeat_s": heartbeat_s})
    )
    return path


class HubProcess(ChildProcess):
    """``cloud-hub serve`` as a child process, answering on ``endpoint`` once it printed so."""

    def __init__(self, home: Path, config: Path, bind: str = "tcp://127.0.0.1:0") -> None:
        self.home, self.config, self.bind = home, config, bind
        super().__init__("hub", self._argv(), home / "hub.log", ready_prefix="hub ready on ")

    def _argv(self) -> list[str]:
        serve = [str(HUB_CLI), "serve", "--home", str(self.home), "--bind", self.bind]
        return [*serve, "--config", str(self.config)]

    def start(self, timeout_s: float = 30.0) -> str:
        self.argv = self._argv()  # a restart may pin ``bind`` to the port the last run resolved
        return super().start(timeout_s)

    @property
    def endpoint(self) -> str:
        return self.address

    def terminate(self, timeout_s: float = 60.0) -> int | None:
        """SIGTERM, then the exit status; SIGKILL only if the hub overstays ``timeout_s``."""
        return self.stop(grace_s=timeout_s)
