"""Where evaluation results are published besides the store: MLflow (one run per evaluation, a
local file store under the hub home by default) and a Prometheus collector that reads the latest
run from the store at scrape time, so the hub process exposes results of ``cloud-hub eval run``
executed anywhere against the same home.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from cloud_hub.evaluation.report import WeaknessReport, build_report
from cloud_hub.evaluation.results import ResultStore
from cloud_hub.telemetry.store import TelemetryStore


def _metric_key(*parts: str) -> str:
    # dots, not slashes: the file store maps "/" to folders, and "pass_rate" is also a metric
    return ".".join("".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in p) for p in parts)


def log_run(
    tracking_uri: str,
    run_id: str,
    params: dict[str, Any],
    summary: dict[str, float],
    report: WeaknessReport,
    artifacts: list[Path],
    experiment: str = "edgeroute-evaluation",
) -> str:
    """Returns the MLflow run id."""
    import mlflow

    if tracking_uri.startswith("file:"):
        # MLflow 3 keeps the file store in maintenance mode behind this opt-in; it is the one
        # backend that needs no database packages, which is what a light hub install wants
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found is not None else client.create_experiment(experiment)
    run = client.create_run(experiment_id, run_name=run_id, tags={"edgeroute.run_id": run_id})
    mlflow_id: str = run.info.run_id
    for key, value in params.items():
        client.log_param(mlflow_id, key, str(value)[:500])
    for key, value in summary.items():
        client.log_metric(mlflow_id, _metric_key(key), float(value))
    for cell in report.cells:
        client.log_metric(mlflow_id, _metric_key("pass_rate", cell.domain, cell.route), cell.pass_rate)
        client.log_metric(mlflow_id, _metric_key("ci_low", cell.domain, cell.route), cell.ci_low)
    for mode, n in report.failure_modes.items():
        client.log_metric(mlflow_id, _metric_key("failures", mode), float(n))
    if "flagged_cells" not in summary:  # the runner's summary has it already: log each metric once
        client.log_metric(mlflow_id, "flagged_cells", float(len(report.flagged())))
    for path in artifacts:
        if path.exists():
            client.log_artifact(mlflow_id, str(path))
    client.set_terminated(mlflow_id)
    return mlflow_id


def local_tracking_uri(home: Path) -> str:
    return (home / "mlruns").resolve().as_uri()


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
