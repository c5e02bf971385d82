"""``train``: from a project folder and its CSV to a committed artifacts folder.

The pipeline is fitted, scored against a Dummy baseline on a seeded holdout (stratified
by class for classification), exported to ONNX (or skops, see :mod:`training.export`)
and, for ONNX, compared with itself under onnxruntime by the parity gate
(:mod:`training.parity`), whose report goes into ``metrics.json``. A failed parity gate
does not stop training (the folder is useful for a bug report) but is logged as an
error, and ``publish`` refuses the version.

Everything is computed in memory, then written into a temporary sibling of the output
folder and renamed into place, so a failed run leaves no half-written artifacts and a
previous complete folder stays intact until the new one is ready. ``manifest.json`` is
written last: a folder with a manifest is complete.
"""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split

from mlops_core.artifacts import (
    BASELINE_FILE,
    MANIFEST,
    METRICS_FILE,
    MODEL_FILE,
    ONNX_FILE,
    SKOPS_FILE,
    DataInfo,
    Manifest,
    ModelFormat,
    write_version_folder,
)
from mlops_core.errors import InvalidInput
from mlops_core.features import FeatureEncoder
from mlops_core.gates import primary
from mlops_core.logs import get_logger
from mlops_core.modelformat import ParityReport
from mlops_core.project import ARTIFACTS_DIR, ProjectConfig, load_project
from training import baseline, model
from training.dataset import Dataset, load_dataset
from training.export import export_checked
from training.tracking import tracker_for

ARTIFACT_FILES = (MODEL_FILE, ONNX_FILE, SKOPS_FILE, BASELINE_FILE, METRICS_FILE, MANIFEST)
RUNTIME_PACKAGES = (
    "scikit-learn",
    "numpy",
    "scipy",
    "pandas",
    "skl2onnx",
    "onnx",
    "onnxruntime",
    "skops",
)

log = get_logger("training")


def runtime_versions() -> dict[str, str]:
    return {"python": platform.python_version()} | {
        name: metadata.version(name) for name in RUNTIME_PACKAGES
    }


def _check_out_dir(out_dir: Path) -> None:
    """Refuse to replace a folder that is not a previous training's output."""
    if out_dir.exists() and not out_dir.is_dir():
        raise InvalidInput(
            f"output path {out_dir} exists and is not a folder", hint="choose another --out"
        )
    if not out_dir.is_dir() or (out_dir / MANIFEST).is_file():
        return
    foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in ARTIFACT_FILES)
    if foreign:
        raise InvalidInput(
            f"output folder {out_dir} holds files that are not training artifacts "
            f"({', '.join(foreign[:5])}); training replaces the whole folder",
            hint="choose a new or empty folder for --out",
        )


def _commit(tmp: Path, out_dir: Path) -> None:
    """Move the finished ``tmp`` folder to ``out_dir``, replacing a previous one."""
    old: Path | None = None
    if out_dir.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
        os.replace(out_dir, old / out_dir.name)
    os.replace(tmp, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _created_at(value: datetime | None) -> datetime:
    if value is None:
        return datetime.now(UTC)  # full precision: orders versions made within one second
    # A naive time is taken as UTC: version ids are UTC and must not depend on the host's TZ.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _hyperparameters(cfg: ProjectConfig) -> dict[str, Any]:
    return {
        **cfg.model.model_dump(),
        "imputation": model.IMPUTATION,
        "test_size": cfg.evaluation.test_size,
        "split_seed": cfg.model.random_state,
    }


def train(
    project_dir: Path,
    data: str | None = None,
    out_dir: Path | None = None,
    created_at: datetime | None = None,
    tracking_uri: str | None = None,
) -> Manifest:
    """Train the project's model and write its artifacts folder; return the manifest.

    ``data`` overrides ``project.yaml``'s ``data.source``: an ``s3://`` URI or a path
    (relative paths are relative to the current directory, while ``data.source`` is
    relative to the project folder). ``out_dir`` defaults to ``PROJECT/artifacts`` and
    is replaced as a whole. ``created_at`` (default: now, UTC) stamps the version id.
    ``tracking_uri`` (``MLFLOW_TRACKING_URI``) logs the run to MLflow.

    Raises :class:`~mlops_core.errors.InvalidInput` (bad project.yaml, data or output
    folder), :class:`~mlops_core.errors.NotFound` (no data) or
    :class:`~mlops_core.errors.MlopsError` (S3 unreachable, MLflow asked for but
    missing) before anything is written.
    """
    project_dir = Path(project_dir)
    cfg = load_project(project_dir)
    out_dir = Path(out_dir) if out_dir is not None else project_dir / ARTIFACTS_DIR
    _check_out_dir(out_dir)
    tracker = tracker_for(tracking_uri)
    created = _created_at(created_at)
    # --data is as typed on the command line (relative to the working directory);
    # data.source is relative to the project folder.
    source, base = (data, Path()) if data is not None else (cfg.data.source, project_dir)

    dataset = load_dataset(source, cfg, base)
    log.info("data loaded", project=cfg.name, source=source, rows=dataset.rows, task=cfg.task)
    for warning in dataset.warnings:
        log.warning("check the task", project=cfg.name, warning=warning)
    fitted = fit(cfg, dataset)
    metrics = fitted.metrics
    data_info = DataInfo(
        source=source, fingerprint=dataset.fingerprint, rows=dataset.rows, columns=dataset.columns
    )

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it owner-only; the artifacts are meant to be shared
        manifest = write_version_folder(
            tmp,
            model_bytes=fitted.model_bytes,
            baseline=fitted.baseline,
            metrics=metrics,
            project=cfg.name,
            created_at=created,
            target=cfg.target,
            features=cfg.features,
            data=data_info,
            hyperparameters=_hyperparameters(cfg),
            runtime=runtime_versions(),
            serving_format=fitted.format,
            serving_bytes=fitted.serving_bytes,
            task=cfg.task,
            labels=fitted.labels,
        )
        _commit(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    key = primary(cfg.task)
    log.info(
        "model trained",
        project=cfg.name,
        version=manifest.version,
        task=cfg.task,
        **{key: _round(metrics["model"][key]), f"baseline_{key}": _round(metrics["baseline"][key])},
        format=manifest.model_format,
        model_bytes=manifest.files[manifest.model_file].size,
        out=str(out_dir),
    )
    if fitted.parity is not None and not fitted.parity.passed:
        log.error(
            "parity gate failed: publish will refuse this version",
            project=cfg.name,
            version=manifest.version,
            report=fitted.parity.describe(),
        )
    if tracker is not None:
        run_id = tracker.log(manifest, out_dir)
        log.info("logged to mlflow", run_id=run_id, uri=tracker.uri)
    return manifest


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


@dataclass(frozen=True)
class Fitted:
    model_bytes: bytes
    baseline: dict[str, Any]
    metrics: dict[str, Any]
    format: ModelFormat = "sklearn-pickle"
    serving_bytes: bytes | None = None
    labels: list[Any] | None = None
    parity: ParityReport | None = None


def _split(cfg: ProjectConfig, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Seeded holdout rows; stratified by class, so every class is in both splits."""
    rows = np.arange(len(y))
    stratify = y if cfg.task == "classification" else None
    try:
        return train_test_split(
            rows,
            test_size=cfg.evaluation.test_size,
            random_state=cfg.model.random_state,
            stratify=stratify,
        )
    except ValueError as exc:  # too few rows for one of each class in the holdout
        raise InvalidInput(
            f"cannot hold out every class: {exc}",
            hint="add rows, or raise evaluation.test_size so the holdout has a row of each class",
        ) from None


def fit(cfg: ProjectConfig, dataset: Dataset) -> Fitted:
    """Split, fit, score and export in memory: the pickled model, its served form (with
    the parity report), its baseline and its metrics."""
    frame = dataset.frame
    x = FeatureEncoder(cfg.features).encode_frame(frame)
    y = frame[cfg.target].to_numpy()
    seed = cfg.model.random_state
    train_rows, test_rows = _split(cfg, y)
    classifier = cfg.task == "classification"
    pipeline = model.fit(
        model.build_pipeline(cfg.model, cfg.features, cfg.task), x[train_rows], y[train_rows]
    )
    metrics, predictions = model.evaluate(
        pipeline,
        x[train_rows],
        y[train_rows],
        x[test_rows],
        y[test_rows],
        cfg.evaluation.test_size,
        cfg.task,
    )
    labels = pipeline.classes_.tolist() if classifier else None
    exported, report = export_checked(
        pipeline,
        x[test_rows],
        cfg.features,
        classifier=classifier,
        target_scale=0.0 if classifier else float(np.abs(y[train_rows]).max()),
        seed=seed,
    )
    metrics["parity"] = None if report is None else report.model_dump(mode="json")
    if exported.onnx_error is not None:
        metrics["onnx_unavailable"] = exported.onnx_error
    doc = baseline.build(
        frame.iloc[train_rows], cfg.features, cfg.target, predictions, seed, labels=labels
    )
    return Fitted(
        model_bytes=model.dumps(pipeline),
        baseline=doc,
        metrics=metrics,
        format=exported.format,
        serving_bytes=exported.data,
        labels=labels,
        parity=report,
    )
