"""A classification project end to end through the CLI, on scikit-learn's iris dataset:
train, publish, promote, then serve labels and probabilities from the prod pointer."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from configured import env_platform
from fastapi.testclient import TestClient

from mlops_core.registry import Registry
from mlopsctl.cli import main
from serving.app import create_app
from serving.settings import ServingSettings

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "projects" / "iris-species"
SPECIES = ["setosa", "versicolor", "virginica"]
FLOWER = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
VIRGINICA = {"sepal_length": 6.9, "sepal_width": 3.1, "petal_length": 5.7, "petal_width": 2.3}


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def iris(tmp_path) -> Path:
    project = tmp_path / "iris-species"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("artifacts", "data"))
    subprocess.run(
        [sys.executable, "generate_data.py", "--out", "data/iris.csv"],
        cwd=project,
        check=True,
        capture_output=True,
    )
    return project


def test_iris_trains_publishes_promotes_and_serves_labels(iris, aws_env, capsys, monkeypatch):
    monkeypatch.chdir(iris)
    code, out, err = run(capsys, "train")
    assert code == 0, err
    assert "(classification)" in out and "macro F1" in out and "parity" in out
    manifest = json.loads((iris / "artifacts" / "manifest.json").read_text())
    assert manifest["task"] == "classification" and manifest["labels"] == SPECIES
    assert manifest["model_file"] == "model.onnx"
    metrics = manifest["metrics"]
    assert metrics["model"]["accuracy"] > metrics["baseline"]["accuracy"]
    assert set(metrics["model"]) == {"accuracy", "balanced_accuracy", "f1_macro", "roc_auc",
                                     "log_loss"}  # fmt: skip
    assert metrics["confusion_matrix"]["labels"] == SPECIES
    assert sum(map(sum, metrics["confusion_matrix"]["matrix"])) == metrics["test_rows"]
    assert metrics["parity"]["passed"] and metrics["parity"]["adversarial"]["violations"] == 0
    baseline = json.loads((iris / "artifacts" / "baseline.json").read_text())
    assert baseline["predictions"]["type"] == "category"
    assert set(baseline["predictions"]["counts"]) == set(SPECIES)

    assert run(capsys, "publish")[0] == 0
    code, out, _ = run(capsys, "models")
    assert code == 0 and "macro F1" in out and "classification" in out
    version = Registry(env_platform()).list_versions("iris-species")[-1].version
    code, out, err = run(capsys, "promote", version, "--env", "prod")
    assert code == 0, err
    assert "PASS min_f1" in out and "PASS min_auc" in out and "PASS must_beat_baseline" in out
    # status shows a classifier's primary metric, not an empty R² column.
    code, out, err = run(capsys, "status", "--json")
    assert code == 0, err
    prod = {e["env"]: e for e in json.loads(out)["envs"]}["prod"]
    assert prod["r2"] is None and prod["metric"]["name"] == "f1_macro"
    assert prod["metric"]["value"] == pytest.approx(metrics["model"]["f1_macro"])
    code, out, _ = run(capsys, "status")
    assert code == 0 and "macro F1" in out

    settings = ServingSettings(project="iris-species", env="prod")
    with TestClient(create_app(settings)) as client:
        ready = client.get("/ready").json()
        assert ready["model_version"] == version and ready["task"] == "classification"
        labels = client.post("/predict", json=[FLOWER, VIRGINICA]).json()
        assert labels["predictions"] == ["setosa", "virginica"]
        assert "probabilities" not in labels
        both = client.post("/predict?probabilities=true", json=[FLOWER, VIRGINICA]).json()
        assert both["predictions"] == ["setosa", "virginica"]
        for probs, label in zip(both["probabilities"], both["predictions"], strict=True):
            assert set(probs) == set(SPECIES)
            assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
            assert max(probs, key=probs.get) == label
        # The same model over the Open Inference Protocol, as an MLServer client sends it.
        infer = client.post(
            "/v2/models/iris-species/infer",
            json={
                "inputs": [
                    {"name": k, "shape": [2], "datatype": "FP64", "data": [FLOWER[k], VIRGINICA[k]]}
                    for k in FLOWER
                ]
            },
        ).json()
        outputs = {o["name"]: o for o in infer["outputs"]}
        assert outputs["predict"]["data"] == ["setosa", "virginica"]
        assert outputs["predict"]["datatype"] == "BYTES"
        assert outputs["predict_proba"]["shape"] == [2, 3]
        metadata = client.get("/v2/models/iris-species").json()
        assert metadata["parameters"]["labels"] == SPECIES
        exposition = client.get("/metrics").text
        assert 'mlops_serving_predicted_class_total{label="setosa"} 3.0' in exposition
        assert 'mlops_serving_predicted_class_total{label="virginica"} 3.0' in exposition
        assert 'mlops_serving_predicted_class_total{label="versicolor"} 0.0' in exposition


def test_regression_gates_in_a_classification_project_are_refused(iris, capsys, monkeypatch):
    cfg = iris / "project.yaml"
    cfg.write_text(cfg.read_text().replace("min_accuracy: 0.85", "min_r2: 0.5"))
    monkeypatch.chdir(iris)
    code, _, err = run(capsys, "train")
    assert code == 2
    assert "min_r2" in err and "task: classification" in err
