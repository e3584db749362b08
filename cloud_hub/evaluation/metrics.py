"""Prometheus view of the latest evaluation run, read from the store at scrape time, so the hub
process exposes results of ``cloud-hub eval run`` executed anywhere against the same home."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from cloud_hub.evaluation.report import build_report
from cloud_hub.evaluation.results import ResultStore
from cloud_hub.telemetry.store import TelemetryStore


class EvalQualityCollector(Collector):
    def __init__(self, store: TelemetryStore) -> None:
        self.results = ResultStore(store)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        rate = GaugeMetricFamily(
            "edgeroute_hub_eval_pass_rate", "Latest evaluated pass rate", labels=["domain", "route"]
        )
        low = GaugeMetricFamily(
            "edgeroute_hub_eval_pass_rate_ci_low", "Wilson 95% lower bound", labels=["domain", "route"]
        )
        flagged = GaugeMetricFamily(
            "edgeroute_hub_eval_cell_below_target",
            "1 when the cell is confidently below target",
            labels=["domain", "route"],
        )
        failures = GaugeMetricFamily(
            "edgeroute_hub_eval_failures", "Failures by mode in the latest run", labels=["mode"]
        )
        run_id = self.results.latest_run()
        if run_id is not None:
            info = self.results.run_info(run_id) or {}
            params = info.get("params") or {}
            report = build_report(
                run_id,
                self.results.results(run_id),
                None,
                params.get("default_target", 0.8),
                params.get("min_n", 10),
            )
            for cell in report.cells:
                rate.add_metric([cell.domain, cell.route], cell.pass_rate)
                low.add_metric([cell.domain, cell.route], cell.ci_low)
                flagged.add_metric([cell.domain, cell.route], float(cell.status == "below"))
            for mode, n in report.failure_modes.items():
                failures.add_metric([mode], float(n))
        yield from (rate, low, flagged, failures)
