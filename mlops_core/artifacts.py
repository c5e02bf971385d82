"""The artifact layout: a model version is a folder of files named by ``manifest.json``.

Layout (locally under ``artifacts/``, in S3 under ``{project}/models/{version}/``)::

    model.pkl       the fitted scikit-learn pipeline, for notebooks and retraining;
                    never loaded by serving (unpickling runs code)
    model.onnx      the same pipeline for onnxruntime: what serving runs
    model.skops     instead of model.onnx, only for a model ONNX cannot express
                    (skops format, loaded with an explicit list of trusted types)
    baseline.json   per-feature statistics and a reference sample, for drift checks
    metrics.json    holdout metrics of the model and of a Dummy baseline, and the parity
                    report of model.onnx against scikit-learn
    manifest.json   the commit marker: every other file with its sha256, the task and
                    its labels, the feature schema, the data fingerprint,
                    hyper-parameters and library versions

``model_file``/``model_format`` name the file serving loads (``model.onnx``/``onnx`` or
``model.skops``/``skops``); :mod:`mlops_core.modelformat` says which versions may be
published and served. The version id is time-ordered and content-derived:
``20261128T064500Z-3f9a2c1`` is the training time (UTC) and the first 7 hex digits of the
served model file's sha256.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mlops_core.errors import IntegrityError, InvalidInput
from mlops_core.features import FeatureSpec
from mlops_core.project import Task

MANIFEST = "manifest.json"
MODEL_FILE = "model.pkl"
ONNX_FILE = "model.onnx"
SKOPS_FILE = "model.skops"
BASELINE_FILE = "baseline.json"
METRICS_FILE = "metrics.json"
SCHEMA_VERSION = 1

#: How a model file is stored. Serving loads only "onnx" and "skops"; "sklearn-pickle"
#: is what a version without either looks like (refused at publish and by serving).
ModelFormat = Literal["onnx", "skops", "sklearn-pickle"]
FORMAT_FILES: dict[str, str] = {
    "onnx": ONNX_FILE,
    "skops": SKOPS_FILE,
    "sklearn-pickle": MODEL_FILE,
}
#: The only file names a manifest may list. Names come from a manifest that may have been
#: written by anyone, and become paths on the reader's disk: a fixed set, never a path.
LAYOUT_FILES = frozenset({MODEL_FILE, ONNX_FILE, SKOPS_FILE, BASELINE_FILE, METRICS_FILE})
#: Class labels, in the order of the model's probability columns.
Labels = list[int] | list[str]

VERSION_RE = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{7}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_version(created_at: datetime, model_sha256: str) -> str:
    return f"{created_at.astimezone(UTC):%Y%m%dT%H%M%SZ}-{model_sha256[:7]}"


def check_version(version: str) -> str:
    if not VERSION_RE.fullmatch(version):
        raise InvalidInput(
            f"malformed model version {version!r}",
            hint="a version looks like 20261128T064500Z-3f9a2c1 ('mlopsctl models' lists them)",
        )
    return version


class FileEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sha256: str = Field(pattern=SHA256_RE.pattern)
    size: int = Field(ge=0)


class DataInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: str
    fingerprint: str = Field(description="sha256 of the training CSV's bytes")
    rows: int
    columns: list[str]


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION
    project: str
    version: str = Field(pattern=VERSION_RE.pattern)
    created_at: datetime
    model_file: str = Field(ONNX_FILE, description="The file serving loads.")
    model_format: ModelFormat = "onnx"
    files: dict[str, FileEntry]
    task: Task = "regression"
    labels: Labels | None = Field(
        None, description="Classification: the classes, in probability column order."
    )
    target: str
    features: list[FeatureSpec]
    data: DataInfo
    hyperparameters: dict[str, Any]
    metrics: dict[str, Any] = Field(default_factory=dict, description="Copy of metrics.json")
    runtime: dict[str, str] = Field(description="python and library versions")

    @field_validator("files")
    @classmethod
    def _layout_names(cls, files: dict[str, FileEntry]) -> dict[str, FileEntry]:
        unknown = sorted(set(files) - LAYOUT_FILES)
        if unknown:
            raise ValueError(
                f"files {unknown!r} are not part of the artifact layout "
                f"(allowed: {', '.join(sorted(LAYOUT_FILES))})"
            )
        return files

    @property
    def model_sha256(self) -> str:
        return self.files[self.model_file].sha256

    def to_json(self) -> str:
        return self.model_dump_json(indent=2) + "\n"


def read_manifest(folder: Path) -> Manifest:
    path = folder / MANIFEST
    if not path.is_file():
        raise InvalidInput(
            f"no {MANIFEST} in {folder}",
            hint="train first ('mlopsctl train') or point at a complete artifacts folder",
        )
    try:
        return Manifest.model_validate_json(path.read_text())
    except ValueError as exc:
        raise InvalidInput(f"malformed manifest: {exc}", where=str(path)) from None


def verify_folder(folder: Path, manifest: Manifest | None = None) -> Manifest:
    """Check every file the manifest names against its sha256; return the manifest."""
    manifest = manifest or read_manifest(folder)
    for name, entry in manifest.files.items():
        path = folder / name
        if not path.is_file():
            raise IntegrityError(f"{name} is missing", where=str(folder))
        actual = sha256_file(path)
        if actual != entry.sha256:
            raise IntegrityError(
                f"{name} has sha256 {actual[:12]}…, manifest says {entry.sha256[:12]}…",
                where=str(folder),
                hint="the file was changed after training; retrain or restore it",
            )
    return manifest


def write_json(path: Path, obj: Any) -> None:
    """Deterministic JSON (sorted keys) so identical content hashes identically."""
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_version_folder(
    dest: Path,
    *,
    model_bytes: bytes,
    baseline: dict[str, Any],
    metrics: dict[str, Any],
    project: str,
    created_at: datetime,
    target: str,
    features: list[FeatureSpec],
    data: DataInfo,
    hyperparameters: dict[str, Any],
    runtime: dict[str, str],
    serving_format: ModelFormat = "sklearn-pickle",
    serving_bytes: bytes | None = None,
    task: Task = "regression",
    labels: Labels | None = None,
) -> Manifest:
    """Write a complete version folder: the model (the pickle, and ``serving_bytes`` in
    ``serving_format``, the file serving loads), baseline and metrics, then
    ``manifest.json`` naming each with its sha256 (last: it marks the folder complete).

    The one writer of the layout, for training and for anything that builds a version
    by other means (tests, benchmarks)."""
    if (serving_bytes is None) != (serving_format == "sklearn-pickle"):
        raise ValueError("serving_bytes goes with an onnx or skops serving_format")
    if (labels is None) != (task == "regression"):
        raise ValueError("labels are given for a classification model, and only then")
    dest.mkdir(parents=True, exist_ok=True)
    model_file = FORMAT_FILES[serving_format]
    (dest / MODEL_FILE).write_bytes(model_bytes)
    if serving_bytes is not None:
        (dest / model_file).write_bytes(serving_bytes)
    write_json(dest / BASELINE_FILE, baseline)
    write_json(dest / METRICS_FILE, metrics)
    names = sorted({MODEL_FILE, model_file, BASELINE_FILE, METRICS_FILE})
    files = {
        name: FileEntry(sha256=sha256_file(dest / name), size=(dest / name).stat().st_size)
        for name in names
    }
    manifest = Manifest(
        project=project,
        version=make_version(created_at, files[model_file].sha256),
        created_at=created_at,
        model_file=model_file,
        model_format=serving_format,
        files=files,
        task=task,
        labels=labels,
        target=target,
        features=features,
        data=data,
        hyperparameters=hyperparameters,
        metrics=metrics,
        runtime=runtime,
    )
    write_json(dest / MANIFEST, manifest.model_dump(mode="json"))
    return manifest
