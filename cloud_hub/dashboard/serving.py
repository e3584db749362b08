"""The dashboard as ``cloud-hub serve --dashboard-port`` runs it: on the hub's event loop, reading
the hub's own telemetry store, with the running hub's view of which edges it hears from."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from cloud_hub.dashboard.app import Dashboard, LiveEdges
from cloud_hub.dashboard.summary import Sources
from cloud_hub.dashboard.token import load_token
from cloud_hub.dashboard.traffic import frontier_price
from cloud_hub.sink import TelemetrySink
from cloud_hub.telemetry.store import TelemetryStore, store_path
from shared.config import HubSettings

DEFAULT_HOST = "127.0.0.1"


@dataclass(frozen=True)
class DashboardOptions:
    host: str
    port: int
    token: str


def dashboard_options(args: argparse.Namespace, home: Path) -> DashboardOptions | None:
    """None when ``--dashboard-port`` was not given; raises ``TokenError`` without a usable token."""
    if args.dashboard_port is None:
        return None
    if not 0 <= args.dashboard_port <= 65535:
        raise ValueError(f"--dashboard-port {args.dashboard_port} is not a TCP port")
    return DashboardOptions(args.dashboard_host or DEFAULT_HOST, args.dashboard_port, load_token(home))


class HubDashboard:
    """A started dashboard and the store it opened, if the hub's sink has none of its own."""

    def __init__(self, dashboard: Dashboard, owned_store: TelemetryStore | None) -> None:
        self.dashboard = dashboard
        self._owned = owned_store

    @property
    def url(self) -> str:
        return self.dashboard.url

    async def close(self) -> None:
        await self.dashboard.close()
        if self._owned is not None:
            self._owned.close()
            self._owned = None


async def open_dashboard(
    opts: DashboardOptions, settings: HubSettings, sink: TelemetrySink, live_edges: LiveEdges
) -> HubDashboard:
    store = getattr(sink, "store", None)
    owned = None
    if not isinstance(store, TelemetryStore):
        # a custom or in-memory sink: show what the store under --home holds (possibly nothing)
        store = owned = TelemetryStore(store_path(settings.home))
    sources = Sources(
        store=store,
        home=settings.home,
        frontier=frontier_price(settings.models),
        enrolled_dir=settings.enrolled_dir,
        heartbeat_s=settings.heartbeat_s,
    )
    board = Dashboard(sources, opts.token, live_edges)
    try:
        await board.start(opts.host, opts.port)
    except BaseException:
        if owned is not None:
            owned.close()
        raise
    return HubDashboard(board, owned)
