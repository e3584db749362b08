"""The hub's sink as served: Prometheus scrape over HTTP and OTLP/HTTP export to a local receiver."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from cloud_hub.telemetry.service import HubTelemetry, from_settings
from cloud_hub.telemetry.store import store_path
from shared.config import HubSettings
from shared.telemetry import TelemetryEvent
from shared.wire import TelemetryBatch


class _Collector(BaseHTTPRequestHandler):
    received: list[ExportTraceServiceRequest] = []  # noqa: RUF012 - per-class, reset by the fixture

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        type(self).received.append(request)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def collector() -> Iterator[tuple[str, list[ExportTraceServiceRequest]]]:
    handler: type[_Collector] = type("Collector", (_Collector,), {"received": []})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v1/traces", handler.received
    server.shutdown()
    server.server_close()


def _batch() -> TelemetryBatch:
    events = [
        TelemetryEvent(event_id="a", route="semantic_cache", latency_s=0.02, prompt="secret question"),
        TelemetryEvent(event_id="b", route="hub_oss", escalation_reason="low_confidence", latency_s=1.2,
                       request_model="qwen", cost_usd=0.001),
        TelemetryEvent(event_id="c", route="edge_local", fallback=True, regeneration=True, latency_s=0.5),
    ]  # fmt: skip
    return TelemetryBatch("b1", [e.to_attributes() for e in events])


def test_metrics_are_scraped_over_http_and_not_inflated_by_resends(tmp_path: Path) -> None:
    sink = HubTelemetry(tmp_path / "t.db", metrics_port=0)
    sink.ingest("edge", _batch())
    sink.ingest("edge", _batch())  # a re-send after a lost ack
    assert sink.metrics_port is not None
    text = httpx.get(f"http://127.0.0.1:{sink.metrics_port}/metrics").text
    assert 'edgeroute_hub_fleet_requests_total{domain="general",model="",route="semantic_cache"} 1.0' in text
    assert 'edgeroute_hub_fleet_escalations_total{reason="low_confidence",route="hub_oss"} 1.0' in text
    assert 'edgeroute_hub_fleet_fallbacks_total{route="edge_local"} 1.0' in text
    assert 'edgeroute_hub_fleet_regenerations_total{route="edge_local"} 1.0' in text
    assert "edgeroute_hub_telemetry_duplicates_total 3.0" in text
    sink.close()
    sink.close()  # idempotent


def test_otlp_export_sends_genai_spans_without_content(
    tmp_path: Path, collector: tuple[str, list[ExportTraceServiceRequest]]
) -> None:
    endpoint, received = collector
    sink = HubTelemetry(tmp_path / "t.db", otlp_endpoint=endpoint)
    sink.ingest("edge", _batch())
    assert sink.otlp is not None and sink.otlp.flush()
    spans = [s for r in received for rs in r.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert len(spans) == 3
    by_id = {}
    for span in spans:
        attrs = {a.key: a.value for a in span.attributes}
        by_id[attrs["edgeroute.event.id"].string_value] = (span, attrs)
    span, attrs = by_id["b"]
    assert attrs["gen_ai.request.model"].string_value == "qwen"
    assert attrs["edgeroute.escalation.reason"].string_value == "low_confidence"
    assert span.end_time_unix_nano - span.start_time_unix_nano == pytest.approx(1.2e9, rel=1e-3)
    assert "gen_ai.input.messages" not in by_id["a"][1]  # content never leaves the store
    sink.close()


def test_default_factory_stores_under_the_hub_home(tmp_path: Path) -> None:
    sink = from_settings(HubSettings(home=tmp_path))
    sink.ingest("edge", _batch())
    sink.close()
    assert store_path(tmp_path).is_file()


def test_latest_evaluation_is_exposed_on_the_hub_scrape(tmp_path: Path) -> None:
    from cloud_hub.evaluation.runner import EvalConfig, EvalRunner

    sink = HubTelemetry(tmp_path / "t.db", metrics_port=0)
    before = httpx.get(f"http://127.0.0.1:{sink.metrics_port}/metrics").text
    assert "edgeroute_hub_eval_pass_rate{" not in before
    events = [
        TelemetryEvent(route="edge_local", domain="math", completion="", response_id=f"r{i}")
        for i in range(12)
    ]
    sink.ingest("edge", TelemetryBatch("b", [e.to_attributes() for e in events]))
    EvalRunner(sink.store).run(EvalConfig())
    text = httpx.get(f"http://127.0.0.1:{sink.metrics_port}/metrics").text
    assert 'edgeroute_hub_eval_pass_rate{domain="math",route="edge_local"} 0.0' in text
    assert 'edgeroute_hub_eval_cell_below_target{domain="math",route="edge_local"} 1.0' in text
    assert 'edgeroute_hub_eval_failures{mode="empty"} 12.0' in text
    sink.close()
