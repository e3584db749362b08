"""``cloud-hub serve``: run the hub until SIGTERM/SIGINT.

Prints ``hub ready on <endpoint>`` on stdout once it accepts edges (port 0 is resolved to the
real port), which is what scripts and tests wait for. SIGHUP re-reads the enrolled keys now.
Before it, ``enrolment on <endpoint>`` names the socket ``edge-agent join`` redeems invites at
(``cloud_hub.enrolment``; the link's port+3 unless ``enrolment_bind`` says otherwise).
With ``--dashboard-port`` the operator dashboard (``cloud_hub.dashboard``) starts first and its
URL is printed as ``dashboard on <url>`` before the ready line.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import signal
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from cloud_hub.cache.sharing import GlobalCache
from cloud_hub.enrolment.server import EnrolmentServer, close_enrolment, open_enrolment
from cloud_hub.registry import ModelRegistry
from cloud_hub.server import Hub
from cloud_hub.sink import MemorySink, TelemetrySink
from shared.config import HubSettings, load_settings
from shared.keys import key_paths

if TYPE_CHECKING:
    from cloud_hub.dashboard.serving import DashboardOptions, HubDashboard
    from cloud_hub.images.hosting import ImageHosting

HELP = "serve enrolled edges on a CURVE-secured ZeroMQ socket"
log = logging.getLogger(__name__)

SinkFactory = Callable[[HubSettings], TelemetrySink]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--home", type=Path, help="hub home (keys/, enrolled/); default ~/.edgeroute/hub")
    parser.add_argument("--bind", help="ZeroMQ endpoint, e.g. tcp://127.0.0.1:5555 (port 0: any free port)")
    parser.add_argument("--config", type=Path, help="YAML file with HubSettings (models, heartbeat, ...)")
    parser.add_argument(
        "--telemetry-sink",
        metavar="MODULE:FACTORY",
        help="callable taking HubSettings and returning a TelemetrySink, or 'memory'; "
        "default: the SQLite store under --home",
    )
    parser.add_argument(
        "--dashboard-port",
        type=int,
        metavar="PORT",
        help="serve the operator dashboard on this port (0: any free port; needs <home>/dashboard.token)",
    )
    parser.add_argument(
        "--dashboard-host", default="127.0.0.1", help="address the dashboard listens on (default 127.0.0.1)"
    )


def _sink_factory(spec: str | None) -> SinkFactory:
    if not spec:
        from cloud_hub.telemetry.service import from_settings

        return from_settings
    if spec == "memory":
        return lambda _settings: MemorySink()
    module_name, _, attr = spec.partition(":")
    if not attr:
        raise ValueError(f"--telemetry-sink wants MODULE:FACTORY, got {spec!r}")
    factory: SinkFactory = getattr(importlib.import_module(module_name), attr)
    return factory


def run(args: argparse.Namespace) -> int:
    if args.config is not None and not args.config.is_file():
        print(f"error: config file {args.config} not found")
        return 2
    settings = load_settings(HubSettings, yaml_file=args.config, home=args.home, bind=args.bind)
    secret = key_paths(settings.keys_dir)[1]
    if not secret.is_file():
        print(
            f"error: no hub key pair in {settings.keys_dir}; run `cloud-hub keys init --home {settings.home}`"
        )
        return 2
    try:
        factory = _sink_factory(args.telemetry_sink)
    except (ImportError, AttributeError, ValueError) as exc:
        print(f"error: telemetry sink: {exc}")
        return 2
    from cloud_hub.dashboard.serving import dashboard_options
    from cloud_hub.dashboard.token import TokenError

    try:
        dashboard = dashboard_options(args, settings.home)
    except (TokenError, ValueError) as exc:
        print(f"error: dashboard: {exc}; `cloud-hub keys init --home {settings.home}` writes the token")
        return 2
    return asyncio.run(serve(settings, secret, factory, dashboard))


async def serve(
    settings: HubSettings,
    secret_key_file: Path,
    sink_factory: SinkFactory,
    dashboard: DashboardOptions | None = None,
) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    registry = await ModelRegistry.open(settings)
    sink = sink_factory(settings)
    cache_cfg = settings.global_cache
    global_cache = None
    if cache_cfg.enabled:  # the judge's models load here, off the event loop
        global_cache = await asyncio.to_thread(
            GlobalCache.open, cache_cfg, settings.home, settings.models_dir
        )
    images: ImageHosting | None = None
    if settings.images.enabled:
        from cloud_hub.images.hosting import open_images

        try:  # torch and diffusers load here, off the event loop
            images = await asyncio.to_thread(open_images, settings)
        except BaseException:
            await registry.close()
            raise
    hub = Hub(
        bind=settings.bind,
        secret_key_file=secret_key_file,
        enrolled_dir=settings.enrolled_dir,
        registry=registry,
        sink=sink,
        heartbeat_s=settings.heartbeat_s,
        max_frame=settings.max_frame_bytes,
        # the canary controller's state (`cloud-hub eval run --recalibrate`) goes out to every edge
        policy_file=settings.home / "policy.json",
        global_cache=global_cache,
        media=images.jobs if images is not None else None,
    )
    board: HubDashboard | None = None
    enrolment: EnrolmentServer | None = None
    try:
        endpoint = await hub.start()
        loop.add_signal_handler(signal.SIGHUP, hub.reload_enrolments)
        enrolment = await open_enrolment(settings, secret_key_file, endpoint, hub.reload_enrolments)
        if global_cache is not None and global_cache.publisher is not None:
            pub = global_cache.publisher
            print(f"global cache on {pub.pub_endpoint} snapshots {pub.snapshot_endpoint}", flush=True)
        if dashboard is not None:
            from cloud_hub.dashboard.serving import open_dashboard

            board = await open_dashboard(dashboard, settings, sink, lambda: hub.edges)
            # the URL only: the token stays in its file, out of logs
            print(f"dashboard on {board.url}", flush=True)
        print(f"hub ready on {endpoint}", flush=True)
        await stop.wait()
        log.info("shutting down")
    finally:
        if board is not None:
            await board.close()
        await close_enrolment(enrolment)
        await hub.close()
        await registry.close()
        if images is not None:
            images.close()
        sink.close()
    return 0
