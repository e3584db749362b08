"""Optional OTLP export: every newly stored request event becomes one span with the GenAI
attributes, sent over OTLP/HTTP (protobuf) so a deployment's existing collector (Jaeger, Tempo,
Datadog, ...) receives edgeroute traffic without a new pipeline. Needs the ``otel`` extra.

Prompts and answers are never exported: content stays in the hub store.
"""

from __future__ import annotations

from typing import Any

from shared.telemetry import TelemetryEvent

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
