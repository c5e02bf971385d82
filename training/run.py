"""``train``: from a project folder and its CSV to a committed artifacts folder.

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
    DataInfo,
    Manifest,
    write_version_folder,
)
from mlops_core.errors import InvalidInput
from mlops_core.features import FeatureEncoder
from mlops_core.logs import get_logger
from mlops_core.project import ARTIFACTS_DIR, ProjectConfig, load_project
from training import baseline, model
from training.dataset import Dataset, load_dataset
from training.tracking import tracker_from_env

ARTIFACT_FILES = (MODEL_FILE, BASELINE_FILE, METRICS_FILE, MANIFEST)
RUNTIME_PACKAGES = ("scikit-learn", "numpy", "scipy", "pandas")

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
) -> Manifest:
    """Train the project's model and write its artifacts folder; return the manifest.

    ``data`` overrides ``project.yaml``'s ``data.source``: an ``s3://`` URI or a path
    (relative paths are relative to the current directory, while ``data.source`` is
    relative to the project folder). ``out_dir`` defaults to ``PROJECT/artifacts`` and
    is replaced as a whole. ``created_at`` (default: now, UTC) stamps the version id.

    Raises :class:`~mlops_core.errors.InvalidInput` (bad project.yaml, data or output
    folder), :class:`~mlops_core.errors.NotFound` (no data) or
    :class:`~mlops_core.errors.MlopsError` (S3 unreachable, MLflow asked for but
    missing) before anything is written.
    """
    project_dir = Path(project_dir)
    cfg = load_project(project_dir)
    out_dir = Path(out_dir) if out_dir is not None else project_dir / ARTIFACTS_DIR
    _check_out_dir(out_dir)
    tracker = tracker_from_env()
    created = _created_at(created_at)
    # --data is as typed on the command line (relative to the working directory);
    # data.source is relative to the project folder.
    source, base = (data, Path()) if data is not None else (cfg.data.source, project_dir)

    dataset = load_dataset(source, cfg, base)
    log.info("data loaded", project=cfg.name, source=source, rows=dataset.rows)
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
        )
        _commit(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    log.info(
        "model trained",
        project=cfg.name,
        version=manifest.version,
        r2=round(metrics["model"]["r2"], 4),
        baseline_r2=round(metrics["baseline"]["r2"], 4),
        model_bytes=manifest.files[MODEL_FILE].size,
        out=str(out_dir),
    )
    if tracker is not None:
        run_id = tracker.log(manifest, out_dir)
        log.info("logged to mlflow", run_id=run_id, uri=tracker.uri)
    return manifest


@dataclass(frozen=True)
class Fitted:
    model_bytes: bytes
    baseline: dict[str, Any]
    metrics: dict[str, Any]


def fit(cfg: ProjectConfig, dataset: Dataset) -> Fitted:
    """Split, fit and score in memory: the pickled model, its baseline and its metrics."""
    frame = dataset.frame
    x = FeatureEncoder(cfg.features).encode_frame(frame)
    y = frame[cfg.target].to_numpy()
    seed = cfg.model.random_state
    train_rows, test_rows = train_test_split(
        np.arange(len(frame)), test_size=cfg.evaluation.test_size, random_state=seed
    )
    pipeline = model.fit(
        model.build_pipeline(cfg.model, cfg.features), x[train_rows], y[train_rows]
    )
    metrics, predictions = model.evaluate(
        pipeline,
        x[train_rows],
        y[train_rows],
        x[test_rows],
        y[test_rows],
        cfg.evaluation.test_size,
    )
    doc = baseline.build(frame.iloc[train_rows], cfg.features, cfg.target, predictions, seed)
    return Fitted(model_bytes=model.dumps(pipeline), baseline=doc, metrics=metrics)
