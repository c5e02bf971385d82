"""Gates per task: thresholds, the Dummy baseline and regression on the primary metric."""

from __future__ import annotations

import pytest
from factories import make_artifacts

from mlops_core.gates import Override, check, evaluate, failed, primary
from mlops_core.project import DEFAULT_MIN_R2, Gates, ProjectConfig


def _names(results) -> dict[str, bool]:
    return {r.name: r.passed for r in results}


def test_classification_gates_judge_a_classifier(tmp_path):
    good = make_artifacts(tmp_path / "a", task="classification", f1=0.8)
    gates = Gates(min_accuracy=0.7, min_f1=0.75, min_auc=0.85, max_log_loss=0.6)
    assert _names(evaluate(gates, good, None)) == {
        "min_accuracy": True,
        "min_f1": True,
        "min_auc": True,
        "max_log_loss": True,
        "must_beat_baseline": True,
    }
    strict = Gates(min_f1=0.9, max_log_loss=0.4)
    bad = {r.name: str(r) for r in failed(evaluate(strict, good, None))}
    assert set(bad) == {"min_f1", "max_log_loss"}
    assert "macro F1 0.8000 vs minimum 0.9" in bad["min_f1"]


def test_max_regression_compares_the_primary_metric(tmp_path):
    current = make_artifacts(tmp_path / "c", task="classification", f1=0.9, seed=1)
    worse = make_artifacts(tmp_path / "w", task="classification", f1=0.8, seed=2)
    results = evaluate(Gates(max_regression=0.05), worse, current)
    (regression,) = [r for r in results if r.name == "max_regression"]
    assert not regression.passed and "macro F1 0.8000 vs current" in regression.detail
    assert primary("classification") == "f1_macro" and primary("regression") == "r2"


def test_a_change_of_task_fails_max_regression(tmp_path):
    current = make_artifacts(tmp_path / "r", seed=1)
    classifier = make_artifacts(tmp_path / "c", task="classification", seed=2)
    (regression,) = [
        r for r in evaluate(Gates(), classifier, current) if r.name == "max_regression"
    ]
    assert not regression.passed and "regression model" in regression.detail


def test_regression_defaults_are_unchanged(tmp_path):
    assert Gates().for_task("regression").min_r2 == DEFAULT_MIN_R2
    assert Gates(min_r2=None).for_task("regression").min_r2 is None  # explicitly off
    low = make_artifacts(tmp_path / "m", r2=0.3)
    assert "min_r2" in {r.name for r in failed(evaluate(Gates(), low, None))}


def test_another_tasks_gate_is_refused_in_project_yaml():
    doc = {
        "name": "iris",
        "data": {"source": "d.csv"},
        "task": "classification",
        "target": "y",
        "features": [{"name": "x"}],
        "gates": {"min_r2": 0.5},
    }
    with pytest.raises(ValueError, match=r"min_r2 do not apply to a classification project"):
        ProjectConfig.model_validate(doc)
    doc["gates"] = {"min_f1": 0.5}
    assert ProjectConfig.model_validate(doc).gates.min_r2 is None


def test_a_deployment_override_of_the_wrong_task_fails_as_a_gate(tmp_path):
    classifier = make_artifacts(tmp_path / "c", task="classification")
    (result,) = evaluate(Gates(min_r2=0.5), classifier, None)
    assert result.name == "gates" and not result.passed and "min_r2" in result.detail


def test_check_skips_regression_for_a_rollback_only(tmp_path):
    current = make_artifacts(tmp_path / "c", r2=0.9, seed=1)
    earlier = make_artifacts(tmp_path / "e", r2=0.6, seed=2)
    gates = Gates(min_r2=0.5, max_regression=0.05)
    fresh = check(gates, earlier, current, env="prod")
    assert not fresh.passed and [r.name for r in fresh.failed] == ["max_regression"]
    (reg,) = [r for r in fresh.results if r.name == "max_regression"]
    assert (reg.value, reg.threshold) == (0.6, 0.85)
    back = check(gates, earlier, current, env="prod", live_at=3)
    assert back.passed and back.rollback and back.current == current.version
    assert {r.name: r.verdict for r in back.results} == {
        "min_r2": "PASS",
        "must_beat_baseline": "PASS",
        "max_regression": "SKIP",
    }
    assert "SKIP max_regression: rollback" in back.summary()
    doc = back.to_dict()
    assert doc["verdict"] == "PASS" and doc["rollback"] == {"promotion_log_entry": 3}
    assert {g["name"]: (g["value"], g["threshold"]) for g in doc["gates"]}["min_r2"] == (0.6, 0.5)
    # Absolute gates still judge a rollback.
    strict = check(Gates(min_r2=0.7), earlier, current, env="prod", live_at=3)
    assert not strict.passed and [r.name for r in strict.failed] == ["min_r2"]


def test_an_override_counts_for_its_own_version_only(tmp_path):
    low = make_artifacts(tmp_path / "l", r2=0.3, seed=1)
    other = Override("20261128T000000Z-0000000", "incident", "alice")
    assert not check(Gates(), low, None, env="prod", override=other).passed
    mine = check(Gates(), low, None, env="prod", override=Override(low.version, "hotfix", "bob"))
    assert mine.passed and mine.forced and [r.name for r in mine.failed] == ["min_r2"]
    assert mine.forced_reason("hotfix") == "FORCED past min_r2: hotfix"
    assert mine.to_dict()["verdict"] == "FORCED" and "override by bob" in mine.summary()
