"""``edge-agent bench link``: what the hub link adds to a bare ZeroMQ round trip.

Three paths carry the same ~1 KB request over loopback TCP with CURVE, each server in its own
process so neither side competes with the client for the interpreter:

* raw pyzmq: a blocking DEALER against a ROUTER that sends the bytes straight back;
* raw pyzmq on asyncio: the same, from a ``zmq.asyncio`` socket (the edge runs on aiohttp's loop);
* HubLink → ``cloud-hub serve`` with the echo backend: codec, request map, hub dispatch, pricing
  and trace included, i.e. everything an escalation costs except the model.

The overhead is the HubLink p50 minus the raw p50 (goal: ≤ 0.3 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import zmq
import zmq.asyncio
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from edge_agent.hub_link import HubLink
from edge_agent.request import HubClient
from shared.codec import Codec
from shared.keys import enroll_public_key, init_keys, load_public, load_secret
from shared.sockets import CurveClient, CurveServer, SocketOptions, SocketT, open_socket
from shared.wire import ChatMessage, Escalate, SamplingParams

GOAL_OVERHEAD_MS = 0.3
ECHO_CONFIG = "models:\n  - name: echo\n    backend: echo\ndefault_model: echo\nheartbeat_s: 1.0\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--iterations", type=int, default=2000, help="timed round trips per path")
    parser.add_argument("--warmup", type=int, default=200, help="untimed round trips first")
    parser.add_argument("--payload-bytes", type=int, default=1024, help="size of the user message")


def _request(i: int, text: str) -> Escalate:
    return Escalate(f"bench-{i}", "echo", [ChatMessage("user", text)], SamplingParams(), time.time() + 30)


def _wait_line(proc: subprocess.Popen[str], prefix: str, timeout_s: float = 60.0) -> str:
    assert proc.stdout is not None
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith(prefix):
            return line.removeprefix(prefix).strip()
    proc.kill()
    raise RuntimeError(f"server did not print {prefix!r} (exit code {proc.poll()})")


async def _until_connected(link: HubClient, timeout_s: float = 60.0) -> None:
    """Polled: ``connected`` follows the hub's heartbeats, and nothing signals when it turns true."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while not link.connected:
        if loop.time() > end:
            raise RuntimeError(f"the hub link did not connect within {timeout_s:.0f}s")
        await asyncio.sleep(0.01)


def _spawn(cmd: list[str]) -> subprocess.Popen[str]:
    # stderr is discarded: a server logging into a pipe nobody reads would eventually block
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def _serve_raw(secret_file: Path) -> None:
    """The baseline server: a CURVE ROUTER that echoes every message (run in its own process)."""
    ctx = zmq.Context()
    public, secret = load_secret(secret_file)
    curve = CurveServer(public=public, secret=secret)
    sock = open_socket(ctx, zmq.ROUTER, curve=curve, bind="tcp://127.0.0.1:0")
    print(f"raw ready on {sock.getsockopt_string(zmq.LAST_ENDPOINT)}", flush=True)
    while True:
        sock.send_multipart(sock.recv_multipart())


def _raw_client(ctx: zmq.Context[SocketT], endpoint: str, hub_pub: bytes, secret_file: Path) -> SocketT:
    public, secret = load_secret(secret_file)
    curve = CurveClient(server_key=hub_pub, public=public, secret=secret)
    return open_socket(ctx, zmq.DEALER, options=SocketOptions(linger_ms=0), curve=curve, connect=endpoint)


def _percentiles(samples_ns: list[int]) -> dict[str, float]:
    ms = sorted(s / 1e6 for s in samples_ns)

    def pick(q: float) -> float:
        return ms[min(len(ms) - 1, int(q * len(ms)))]

    return {"p50": pick(0.5), "p90": pick(0.9), "p99": pick(0.99), "mean": statistics.fmean(ms)}


async def _time_async(
    label: str, call: Callable[[int], Awaitable[object]], n: int, warmup: int, progress: Progress
) -> list[int]:
    task = progress.add_task(label, total=n + warmup)
    samples: list[int] = []
    for i in range(n + warmup):
        t0 = time.perf_counter_ns()
        await call(i)
        if i >= warmup:
            samples.append(time.perf_counter_ns() - t0)
        progress.advance(task)
    return samples


def _homes(tmp: Path) -> tuple[bytes, Path, Path]:
    """(hub public key, hub secret file, enrolled edge secret file), and the hub's config written."""
    hub_pub_file, hub_secret = init_keys(tmp / "hub" / "keys")
    edge_pub_file, edge_secret = init_keys(tmp / "edge" / "keys")
    enroll_public_key(edge_pub_file, tmp / "hub" / "enrolled")
    (tmp / "hub.yaml").write_text(ECHO_CONFIG)
    return load_public(hub_pub_file), hub_secret, edge_secret


async def _measure(args: argparse.Namespace, tmp: Path, progress: Progress) -> dict[str, list[int]]:
    hub_pub, hub_secret, edge_secret = await asyncio.to_thread(_homes, tmp)
    text = ("x" * 9 + " ") * (args.payload_bytes // 10)
    frame = Codec().encode(_request(0, text))
    n, warmup = args.iterations, args.warmup
    hub_cli = str(Path(sys.executable).with_name("cloud-hub"))
    hub_cmd = [hub_cli, "serve", "--home", str(tmp / "hub"), "--bind", "tcp://127.0.0.1:0"]
    raw = _spawn([sys.executable, "-m", "edge_agent.bench.link", "--serve-raw", str(hub_secret)])
    hub = _spawn([*hub_cmd, "--config", str(tmp / "hub.yaml")])
    results: dict[str, list[int]] = {}
    try:
        raw_endpoint = await asyncio.to_thread(_wait_line, raw, "raw ready on ")
        hub_endpoint = await asyncio.to_thread(_wait_line, hub, "hub ready on ")

        # destroy() closes the context's sockets too, so a failed round trip leaves none open
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        try:
            sock = _raw_client(ctx, raw_endpoint, hub_pub, edge_secret)
            task = progress.add_task("raw pyzmq", total=n + warmup)
            samples: list[int] = []
            for i in range(n + warmup):
                t0 = time.perf_counter_ns()
                sock.send(frame)
                sock.recv()
                if i >= warmup:
                    samples.append(time.perf_counter_ns() - t0)
                progress.advance(task)
            results["raw pyzmq (blocking)"] = samples
        finally:
            ctx.destroy(linger=0)

        actx = zmq.asyncio.Context()
        try:
            asock = _raw_client(actx, raw_endpoint, hub_pub, edge_secret)

            async def raw_async(_i: int) -> object:
                await asock.send(frame)
                return await asock.recv()

            results["raw pyzmq (asyncio)"] = await _time_async(
                "raw pyzmq asyncio", raw_async, n, warmup, progress
            )
        finally:
            actx.destroy(linger=0)

        link = HubLink(hub_endpoint, hub_pub, edge_secret, heartbeat_s=1.0)
        await link.start()
        try:
            await _until_connected(link)
            results["HubLink → hub (echo)"] = await _time_async(
                "HubLink", lambda i: link.escalate(_request(i, text)), n, warmup, progress
            )
        finally:
            await link.close()
    finally:
        for proc in (raw, hub):
            proc.terminate()
            await asyncio.to_thread(proc.wait, 30)
            assert proc.stdout is not None
            proc.stdout.close()
    return results


def run(args: argparse.Namespace) -> int:
    console = Console()
    with (
        tempfile.TemporaryDirectory(prefix="edgeroute-bench-link-") as tmp,
        Progress(console=console) as progress,
    ):
        results = asyncio.run(_measure(args, Path(tmp), progress))
    table = Table(title=f"edge ↔ hub round trip, {args.payload_bytes} B payload, CURVE, loopback TCP")
    for col in ("path", "p50 ms", "p90 ms", "p99 ms", "mean ms"):
        table.add_column(col, justify="right" if col != "path" else "left")
    stats = {name: _percentiles(samples) for name, samples in results.items()}
    for name, s in stats.items():
        table.add_row(name, *(f"{s[k]:.3f}" for k in ("p50", "p90", "p99", "mean")))
    console.print(table)
    base = stats["raw pyzmq (blocking)"]
    link = stats["HubLink → hub (echo)"]
    over50, over99 = link["p50"] - base["p50"], link["p99"] - base["p99"]
    verdict = "within" if over50 <= GOAL_OVERHEAD_MS else "OVER"
    console.print(
        f"HubLink overhead vs raw pyzmq: p50 +{over50:.3f} ms, p99 +{over99:.3f} ms "
        f"({verdict} the {GOAL_OVERHEAD_MS} ms p50 goal); "
        f"asyncio alone adds p50 +{stats['raw pyzmq (asyncio)']['p50'] - base['p50']:.3f} ms"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edge-agent bench link", description=__doc__)
    add_arguments(parser)
    parser.add_argument("--serve-raw", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_raw is not None:
        _serve_raw(args.serve_raw)
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
