"""The hub's telemetry sink as the server runs it: the SQLite store, Prometheus metrics (served on
127.0.0.1 when ``metrics_port`` is set) and, optionally, OTLP export.

OTLP: every newly stored request event becomes one span with the GenAI attributes, sent over
OTLP/HTTP (protobuf) so a deployment's existing collector (Jaeger, Tempo, Datadog, ...) receives
edgeroute traffic without a new pipeline. Needs the ``otel`` extra. Prompts and answers are never
exported: content stays in the hub store.

``cloud-hub serve`` uses ``from_settings`` as its default ``--telemetry-sink`` factory.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from cloud_hub.evaluation.publish import EvalQualityCollector
from cloud_hub.telemetry.metrics import HubTelemetryMetrics
from cloud_hub.telemetry.store import TelemetryStore, store_path
from shared.config import HubSettings
from shared.telemetry import TelemetryEvent
from shared.wire import TelemetryAck, TelemetryBatch

log = logging.getLogger(__name__)

_CONTENT = frozenset({"gen_ai.input.messages", "gen_ai.output.messages", "edgeroute.eval.reference"})


class OtlpExporter:
    """Implements the store's ``IngestObserver``; batching happens in the SDK's span processor."""

    def __init__(self, endpoint: str, service_name: str = "edgeroute-hub", timeout_s: float = 5.0) -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        # a private provider, not the global one: the hub must not capture other libraries' spans
        self._provider: Any = TracerProvider(resource=Resource.create({"service.name": service_name}))
        self._provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, timeout=timeout_s))
        )
        self._tracer = self._provider.get_tracer("edgeroute.telemetry")
        self._closed = False

    def observe_ingest(self, event: TelemetryEvent, duplicate: bool) -> None:
        if duplicate or event.kind != "request" or self._closed:
            return
        end_ns = int(event.timestamp * 1e9)
        start_ns = end_ns - int((event.latency_s or 0.0) * 1e9)
        attrs = {k: v for k, v in event.to_attributes().items() if v is not None and k not in _CONTENT}
        name = f"{event.operation} {event.response_model or event.request_model}".strip()
        span = self._tracer.start_span(name, start_time=start_ns, attributes=attrs)
        if event.error_type:
            from opentelemetry.trace import Status, StatusCode

            span.set_status(Status(StatusCode.ERROR, event.error_type))
        span.end(end_time=end_ns)

    def observe_reject(self, reason: str) -> None:
        return None

    def flush(self, timeout_ms: int = 5000) -> bool:
        return bool(self._provider.force_flush(timeout_ms))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._provider.shutdown()


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
