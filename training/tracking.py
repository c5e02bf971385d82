"""Optional MLflow tracking, on when ``MLFLOW_TRACKING_URI`` is set.

MLflow is the optional extra ``mlflow``; it is imported only when tracking is asked for,
and asking for it without it installed is an error before any training starts.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

from mlops_core.artifacts import Manifest
from mlops_core.errors import MlopsError

TRACKING_ENV = "MLFLOW_TRACKING_URI"


class MlflowTracker:
    """Logs one run per trained version: params, metrics, tags and the artifacts folder."""

    def __init__(self, mlflow: ModuleType, uri: str):
        self.mlflow = mlflow
        self.uri = uri

    def log(self, manifest: Manifest, folder: Path) -> str:
        mlflow = self.mlflow
        mlflow.set_tracking_uri(self.uri)
        mlflow.set_experiment(manifest.project)
        with mlflow.start_run(run_name=manifest.version) as run:
            mlflow.log_params({k: str(v) for k, v in manifest.hyperparameters.items()})
            mlflow.log_metrics(_flat_metrics(manifest.metrics))
            mlflow.set_tags(
                {
                    "mlops.version": manifest.version,
                    "mlops.model_sha256": manifest.model_sha256,
                    "mlops.data_fingerprint": manifest.data.fingerprint,
                    "mlops.data_source": manifest.data.source,
                }
            )
            mlflow.log_artifacts(str(folder), artifact_path="artifacts")
            return str(run.info.run_id)


def _flat_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    flat: dict[str, float] = {}
    for scope in ("model", "baseline"):
        for name, value in metrics.get(scope, {}).items():
            if isinstance(value, int | float):
                flat[f"{scope}_{name}"] = float(value)
    return flat


def tracker_for(uri: str | None) -> MlflowTracker | None:
    """The MLflow tracker of ``uri`` (``MLFLOW_TRACKING_URI``, from the entry point's
    settings), or None to train without tracking."""
    if not uri:
        return None
    try:
        import mlflow
    except ImportError:
        raise MlopsError(
            f"{TRACKING_ENV} is set ({uri}) but MLflow is not installed",
            hint="pip install 'mlops-platform[mlflow]', or unset "
            f"{TRACKING_ENV} to train without tracking",
        ) from None
    return MlflowTracker(mlflow, uri)
