"""Logs each evaluation run to MLflow (a local file store under the hub home by default), so runs
are comparable over time in the MLflow UI and the training team can find the exported files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cloud_hub.evaluation.report import WeaknessReport


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
    client.log_metric(mlflow_id, "flagged_cells", float(len(report.flagged())))
    for path in artifacts:
        if path.exists():
            client.log_artifact(mlflow_id, str(path))
    client.set_terminated(mlflow_id)
    return mlflow_id


def local_tracking_uri(home: Path) -> str:
    return (home / "mlruns").resolve().as_uri()
