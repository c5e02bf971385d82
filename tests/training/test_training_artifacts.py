"""A successful run: the artifacts folder, its manifest, metrics and determinism."""

from __future__ import annotations

import json
import pickle
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from training_helpers import example_config

import training
from mlops_core.artifacts import (
    BASELINE_FILE,
    MANIFEST,
    METRICS_FILE,
    MODEL_FILE,
    ONNX_FILE,
    VERSION_RE,
    read_manifest,
    sha256_bytes,
    sha256_file,
    verify_folder,
)
from mlops_core.errors import IntegrityError, InvalidInput
from mlops_core.features import FeatureEncoder
from mlops_core.project import load_project
from training import model
from training.dataset import load_dataset
from training.run import RUNTIME_PACKAGES, fit

WHEN = datetime(2026, 11, 28, 6, 45, tzinfo=UTC)
SEED_REQUEST = {"year": 2019, "odometer": 25000, "make_encoded": 9, "model_encoded": 42}


def test_writes_a_complete_verified_folder(make_project):
    project = make_project()
    manifest = training.train(project, created_at=WHEN)

    out = project / "artifacts"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [MODEL_FILE, ONNX_FILE, BASELINE_FILE, METRICS_FILE, MANIFEST]
    )
    assert verify_folder(out) == manifest == read_manifest(out)
    assert set(manifest.files) == {MODEL_FILE, ONNX_FILE, BASELINE_FILE, METRICS_FILE}
    # Serving runs the ONNX export; the pickle is for notebooks and retraining.
    assert (manifest.model_file, manifest.model_format) == (ONNX_FILE, "onnx")
    assert manifest.task == "regression" and manifest.labels is None
    for name, entry in manifest.files.items():
        assert entry.size == (out / name).stat().st_size
    assert manifest.project == "usedcar-price"
    assert VERSION_RE.fullmatch(manifest.version)
    assert manifest.version == f"20261128T064500Z-{manifest.model_sha256[:7]}"
    assert manifest.created_at == WHEN
    assert manifest.target == "price"
    assert [f.name for f in manifest.features] == [f.name for f in load_project(project).features]
    csv_bytes = (project / "data" / "usedcars.csv").read_bytes()
    assert manifest.data.fingerprint == sha256_bytes(csv_bytes)
    assert manifest.data.rows == 2000
    assert manifest.data.source == "data/usedcars.csv"
    assert manifest.data.columns[-1] == "price"
    assert set(manifest.runtime) == {"python", *RUNTIME_PACKAGES}
    assert {"scikit-learn", "skl2onnx", "onnxruntime"} <= set(manifest.runtime)
    assert manifest.hyperparameters["n_estimators"] == 20
    assert manifest.hyperparameters["test_size"] == 0.2
    assert manifest.metrics == json.loads((out / METRICS_FILE).read_text())
    # The commit marker is the newest file: written after everything it names.
    newest = max(out.iterdir(), key=lambda p: p.stat().st_mtime_ns)
    assert newest.name == MANIFEST


def test_metrics_beat_the_mean_baseline(make_project):
    manifest = training.train(make_project(), created_at=WHEN)
    m = manifest.metrics
    assert set(m["model"]) == {"mae", "rmse", "r2"}
    assert set(m["baseline"]) == {"mae", "rmse", "r2", "strategy"}
    assert m["train_rows"] == 1600 and m["test_rows"] == 400
    assert m["model"]["r2"] > 0.6
    assert m["model"]["r2"] > m["baseline"]["r2"] + 0.5
    assert m["model"]["mae"] < m["baseline"]["mae"]
    assert m["model"]["rmse"] >= m["model"]["mae"]


def test_model_predicts_from_the_shared_encoder(make_project):
    project = make_project()
    manifest = training.train(project, created_at=WHEN)
    pipeline = pickle.loads((project / "artifacts" / MODEL_FILE).read_bytes())
    encoder = FeatureEncoder(manifest.features)
    # Only the required features: the optional ones arrive as NaN and are imputed.
    x = encoder.encode_one(SEED_REQUEST)
    assert np.isnan(x).sum() == 3
    price = pipeline.predict(x)
    assert price.shape == (1,) and 1_000 < price[0] < 100_000
    newer = pipeline.predict(encoder.encode_one({**SEED_REQUEST, "year": 2024, "odometer": 5000}))
    assert newer[0] > price[0]


def test_same_data_and_config_give_the_same_model(make_project, tmp_path):
    project = make_project()
    first = training.train(project, out_dir=tmp_path / "a", created_at=WHEN)
    second = training.train(project, out_dir=tmp_path / "b", created_at=datetime.now(UTC))
    assert first.model_sha256 == second.model_sha256
    assert first.files == second.files  # baseline and metrics too
    assert first.version.split("-")[1] == second.version.split("-")[1]


def test_model_bytes_do_not_depend_on_n_jobs(make_project):
    project = make_project()
    cfg = load_project(project)
    dataset = load_dataset(cfg.data.source, cfg, project)
    parallel = fit(cfg, dataset).model_bytes

    x = FeatureEncoder(cfg.features).encode_frame(dataset.frame)
    y = dataset.frame[cfg.target].to_numpy()
    from sklearn.model_selection import train_test_split

    rows, _ = train_test_split(np.arange(len(y)), test_size=0.2, random_state=42)
    serial = model.build_pipeline(cfg.model, cfg.features).set_params(forest__n_jobs=1)
    assert model.dumps(model.fit(serial, x[rows], y[rows])) == parallel


def test_a_different_seed_gives_a_different_model(make_project, tmp_path):
    a = training.train(make_project(name="a"), created_at=WHEN)
    b = training.train(make_project(config=example_config(random_state=7), name="b"))
    assert a.model_sha256 != b.model_sha256


def test_retraining_replaces_the_folder_and_tampering_is_detected(make_project):
    project = make_project()
    out = project / "artifacts"
    training.train(project, created_at=WHEN)
    (out / METRICS_FILE).write_text("{}\n")
    with pytest.raises(IntegrityError, match="metrics.json"):
        verify_folder(out)
    manifest = training.train(project, created_at=WHEN)
    assert verify_folder(out) == manifest
    assert [p.name for p in project.iterdir() if p.name.startswith(".")] == []


def test_refuses_to_replace_a_folder_that_is_not_artifacts(make_project, tmp_path):
    project = make_project()
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(InvalidInput, match="notes.txt") as err:
        training.train(project, out_dir=out)
    assert "--out" in str(err.value)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_data_override_is_relative_to_the_working_directory(
    make_project, tmp_path, monkeypatch, csv_text
):
    project = make_project()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "cars.csv").write_text(csv_text)
    monkeypatch.chdir(elsewhere)
    manifest = training.train(project, data="cars.csv", out_dir=Path("out"), created_at=WHEN)
    assert manifest.data.source == "cars.csv"
    assert verify_folder(elsewhere / "out") == manifest


def test_model_file_digest_matches_manifest(make_project):
    project = make_project()
    manifest = training.train(project, created_at=WHEN)
    assert sha256_file(project / "artifacts" / ONNX_FILE) == manifest.model_sha256
    assert sha256_file(project / "artifacts" / MODEL_FILE) == manifest.files[MODEL_FILE].sha256


def test_a_failure_while_writing_keeps_the_previous_folder(make_project, monkeypatch):
    project = make_project()
    first = training.train(project, created_at=WHEN)

    import mlops_core.artifacts as artifacts

    real_write_json = artifacts.write_json

    def disk_full_at_the_manifest(path: Path, obj: object) -> None:
        if path.name == MANIFEST:
            raise OSError(28, "No space left on device")
        real_write_json(path, obj)

    monkeypatch.setattr(artifacts, "write_json", disk_full_at_the_manifest)
    with pytest.raises(OSError, match="No space left"):
        training.train(project, created_at=datetime(2026, 12, 1, tzinfo=UTC))
    assert verify_folder(project / "artifacts") == first
    assert sorted(p.name for p in project.iterdir()) == ["artifacts", "data", "project.yaml"]
