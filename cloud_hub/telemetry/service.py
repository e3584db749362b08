"""The hub's telemetry sink as the server runs it: the SQLite store, Prometheus metrics (served on
127.0.0.1 when ``metrics_port`` is set) and, optionally, OTLP export.

``cloud-hub serve`` uses ``from_settings`` as its default ``--telemetry-sink`` factory.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from cloud_hub.evaluation.metrics import EvalQualityCollector
from cloud_hub.telemetry.metrics import HubTelemetryMetrics
from cloud_hub.telemetry.otlp import OtlpExporter
from cloud_hub.telemetry.store import TelemetryStore, store_path
from shared.config import HubSettings
from shared.telemetry import TelemetryEvent
from shared.wire import TelemetryAck, TelemetryBatch

log = logging.getLogger(__name__)


class _Fanout:
    """Feeds every store observation to each observer; one failing observer never blocks ingest."""

    def __init__(self, observers: list[Any]) -> None:
        self.observers = observers

    def observe_ingest(self, event: TelemetryEvent, duplicate: bool) -> None:
        for o in self.observers:
            try:
                o.observe_ingest(event, duplicate)
            except Exception:
                log.exception("telemetry observer %r failed", o)

    def observe_reject(self, reason: str) -> None:
        for o in self.observers:
            try:
                o.observe_reject(reason)
            except Exception:
                log.exception("telemetry observer %r failed", o)


class HubTelemetry:
    """``TelemetrySink`` for ``cloud_hub.server.Hub``."""

    def __init__(
        self,
        store_file: Any,
        metrics: HubTelemetryMetrics | None = None,
        metrics_port: int | None = None,
        otlp_endpoint: str | None = None,
    ) -> None:
        self.metrics = metrics or HubTelemetryMetrics()
        self.otlp = OtlpExporter(otlp_endpoint) if otlp_endpoint else None
        observers: list[Any] = [self.metrics] + ([self.otlp] if self.otlp else [])
        self.store = TelemetryStore(store_file, observer=_Fanout(observers))
        self.metrics.set_drops(self.store.drops())
        self.metrics.registry.register(EvalQualityCollector(self.store))
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.metrics_port: int | None = None
        if metrics_port is not None:
            from prometheus_client import start_http_server

            self._server, self._thread = start_http_server(metrics_port, "127.0.0.1", self.metrics.registry)
            self.metrics_port = int(self._server.server_port)

    def ingest(self, edge_id: str, batch: TelemetryBatch) -> TelemetryAck:
        ack = self.store.ingest(edge_id, batch)
        if any(e.get("edgeroute.event.kind") == "spool_drops" for e in batch.events):
            self.metrics.set_drops(self.store.drops())
        self.metrics.registry.register(EvalQualityCollector(self.store))
        return ack

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self.otlp is not None:
            self.otlp.close()
            self.otlp = None
        self.store.close()


def from_settings(settings: HubSettings) -> HubTelemetry:
    return HubTelemetry(store_path(settings.home), None, settings.metrics_port, settings.otlp_endpoint)
