"""The task setting: degenerate targets refused, a label-like regression target warned
about, integer class labels, the parity gate, and what may be published at all."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pytest
from configured import env_platform
from structlog.testing import capture_logs
from training_helpers import example_config, read_rows, write_rows

import training
from mlops_core.artifacts import (
    MANIFEST,
    METRICS_FILE,
    MODEL_FILE,
    ONNX_FILE,
    DataInfo,
    write_version_folder,
)
from mlops_core.errors import GateFailed, InvalidInput
from mlops_core.features import FeatureSpec
from mlops_core.modelformat import check_servable
from mlops_core.project import ModelParams
from mlops_core.registry import Registry
from training import export, model, parity

WHEN = datetime(2026, 11, 28, 6, 45, tzinfo=UTC)


def _with_target(csv_text: str, values) -> str:
    rows = read_rows(csv_text)
    for i, row in enumerate(rows[1:]):
        row[-1] = str(values(i))
    return write_rows(rows)


def _classifier_config(**model_params) -> dict:
    cfg = example_config(**model_params)
    cfg["task"] = "classification"
    cfg["gates"] = {"min_f1": 0.1}
    return cfg


def test_a_constant_regression_target_is_refused(make_project, csv_text):
    project = make_project(data=_with_target(csv_text, lambda i: 12000))
    with pytest.raises(InvalidInput, match=r"the target is constant \(12000 in every row\)"):
        training.train(project, created_at=WHEN)
    assert not (project / "artifacts").exists()


def test_a_single_class_is_refused(make_project, csv_text):
    project = make_project(
        data=_with_target(csv_text, lambda i: "cheap"), config=_classifier_config()
    )
    with pytest.raises(InvalidInput, match=r"single class \('cheap'\)"):
        training.train(project, created_at=WHEN)


def test_a_class_with_fewer_than_two_rows_is_refused(make_project, csv_text):
    labels = lambda i: "rare" if i == 7 else ("cheap" if i % 2 else "dear")  # noqa: E731
    project = make_project(data=_with_target(csv_text, labels), config=_classifier_config())
    with pytest.raises(InvalidInput, match=r"class\(es\) 'rare' have fewer than 2 rows"):
        training.train(project, created_at=WHEN)


def test_a_regression_target_of_few_integers_warns_naming_the_task(make_project, csv_text):
    project = make_project(data=_with_target(csv_text, lambda i: i % 3))
    with capture_logs() as logs:
        training.train(project, created_at=WHEN)
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert warnings and "task: classification" in warnings[0]["warning"]
    assert "3 distinct whole-number values (0, 1, 2)" in warnings[0]["warning"]


def test_integer_labels_stay_integers(make_project, csv_text):
    project = make_project(
        data=_with_target(csv_text, lambda i: i % 3), config=_classifier_config()
    )
    manifest = training.train(project, created_at=WHEN)
    assert manifest.task == "classification" and manifest.labels == [0, 1, 2]
    assert manifest.metrics["parity"]["passed"]
    assert set(manifest.metrics["model"]) >= {"accuracy", "f1_macro", "roc_auc", "log_loss"}
    check_servable(manifest)


def test_the_parity_gate_fails_on_a_mismatched_model(make_project, csv_text, aws_env):
    """model.onnx from another model (a different seed): the report fails, training says
    so, and publish refuses the version with the report."""
    cfg = _classifier_config()
    data = _with_target(csv_text, lambda i: ("budget", "mid", "premium")[i % 3])
    project = make_project(data=data, config=cfg)
    manifest = training.train(project, created_at=WHEN)
    out = project / "artifacts"
    other_cfg = {**cfg, "model": {**cfg["model"], "random_state": 7}}
    other = training.train(make_project(data=data, config=other_cfg, name="o"), created_at=WHEN)
    assert other.version != manifest.version
    import pickle

    pipeline = pickle.loads((out / MODEL_FILE).read_bytes())
    mismatched = (project.parent / "o" / "artifacts" / ONNX_FILE).read_bytes()
    x = np.asarray(
        [[2015, 60000, 3, 20, np.nan, 4, 0], [2005, 150000, 10, 90, 2, np.nan, 1]] * 20,
        dtype=float,
    )
    report = parity.compare(
        pipeline, mismatched, x, manifest.features, classifier=True, target_scale=0.0
    )
    assert not report.passed
    assert report.holdout.violations + report.adversarial.violations > 0

    folder = project.parent / "mismatched"
    metrics = {**manifest.metrics, "parity": report.model_dump(mode="json")}
    bad = write_version_folder(
        folder,
        model_bytes=(out / MODEL_FILE).read_bytes(),
        baseline={},
        metrics=metrics,
        project=manifest.project,
        created_at=WHEN,
        target=manifest.target,
        features=manifest.features,
        data=manifest.data,
        hyperparameters=manifest.hyperparameters,
        runtime=manifest.runtime,
        serving_format="onnx",
        serving_bytes=mismatched,
        task="classification",
        labels=manifest.labels,
    )
    with pytest.raises(GateFailed, match="failed the parity gate") as exc:
        Registry(env_platform()).publish(folder)
    assert "label" in str(exc.value) and exc.value.exit_code == 6
    assert not Registry(env_platform()).exists(bad.project, bad.version)


def test_the_float32_threshold_trap_is_caught_by_the_adversarial_rows():
    """Thresholds rounded to the nearest float32 (not down, as skl2onnx does for
    scikit-learn's float32 comparison) flip branches only at the thresholds: the
    holdout passes, the rows one ULP around the thresholds do not."""
    import skl2onnx.common.tree_ensemble as tree_ensemble

    rng = np.random.default_rng(0)
    x = rng.normal(size=(1500, 3)) * [1.0, 1e3, 1e-3]
    y = x[:, 0] * 3 + np.sin(x[:, 1] / 300) + x[:, 2] * 1e3
    features = [FeatureSpec(name=f"f{i}") for i in range(3)]
    pipeline = model.fit(
        model.build_pipeline(ModelParams(n_estimators=10), features), x[:1200], y[:1200]
    )
    good = export.to_onnx(pipeline, 3, classifier=False)
    scale = float(np.abs(y).max())
    assert parity.compare(
        pipeline, good, x[1200:], features, classifier=False, target_scale=scale
    ).passed

    nearest = lambda value, dtype, mode: np.float64(np.float32(value))  # noqa: E731
    original = tree_ensemble.sklearn_threshold
    tree_ensemble.sklearn_threshold = nearest
    try:
        bad = export.to_onnx(pipeline, 3, classifier=False)
    finally:
        tree_ensemble.sklearn_threshold = original
    report = parity.compare(pipeline, bad, x[1200:], features, classifier=False, target_scale=scale)
    assert report.holdout.violations == 0
    assert report.adversarial.violations > 0 and not report.passed


def test_a_pickle_only_version_is_refused_at_publish(tmp_path, aws_env):
    folder = tmp_path / "old"
    write_version_folder(
        folder,
        model_bytes=b"not loaded",
        baseline={},
        metrics={"model": {"r2": 0.9}},
        project="usedcar-price",
        created_at=WHEN,
        target="price",
        features=[FeatureSpec(name="x")],
        data=DataInfo(source="s", fingerprint="0" * 64, rows=1, columns=[]),
        hyperparameters={},
        runtime={},
    )
    manifest = json.loads((folder / MANIFEST).read_text())
    assert (manifest["model_file"], manifest["model_format"]) == (MODEL_FILE, "sklearn-pickle")
    with pytest.raises(InvalidInput, match="only loadable form of this model is a pickle") as exc:
        Registry(env_platform()).publish(folder)
    assert "never unpickles" in str(exc.value)


def test_an_estimator_onnx_cannot_express_is_saved_with_skops():
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    x = np.random.default_rng(1).normal(size=(100, 2))
    pipeline = make_pipeline(FunctionTransformer(np.abs), model.RandomForestRegressor(3)).fit(
        x, x[:, 0]
    )
    exported = export.export(pipeline, 2, classifier=False)
    assert exported.format == "skops" and exported.onnx_error
    import skops.io

    reloaded = skops.io.loads(
        exported.data, trusted=skops.io.get_untrusted_types(data=exported.data)
    )
    assert np.allclose(reloaded.predict(x), pipeline.predict(x))


def test_metrics_file_holds_the_parity_report(make_project):
    project = make_project()
    manifest = training.train(project, created_at=WHEN)
    on_disk = json.loads((project / "artifacts" / METRICS_FILE).read_text())
    report = manifest.metrics["parity"]
    assert on_disk["parity"] == report
    assert report["passed"] and report["task"] == "regression"
    assert report["tolerance"]["rtol"] == 1e-5
    assert report["thresholds"]["probed"] > 0
    assert report["adversarial"]["rows"] > report["holdout"]["rows"]
    assert METRICS_FILE in manifest.files
