"""Promotion gates: one evaluation for the CLI's ``promote`` and the controller.

A version may go live in an env only if its holdout metrics pass the project's
thresholds for its task and it is no worse than the env's current version by more than
``max_regression`` on the task's primary metric (R² for regression, macro F1 for
classification).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlops_core.artifacts import Manifest
from mlops_core.project import Gates, Task

#: The metric a task is judged and compared on (must_beat_baseline, max_regression).
PRIMARY_METRIC: dict[str, str] = {"regression": "r2", "classification": "f1_macro"}
#: How each metric is shown to people.
METRIC_LABELS: dict[str, str] = {
    "r2": "R²",
    "mae": "MAE",
    "rmse": "RMSE",
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced accuracy",
    "f1_macro": "macro F1",
    "roc_auc": "ROC AUC",
    "log_loss": "log loss",
}
#: Which Dummy estimator the baseline is, per task.
BASELINE_NAMES: dict[str, str] = {
    "regression": "DummyRegressor",
    "classification": "DummyClassifier",
}


@dataclass(frozen=True)
class GateResult:
    name: str
    passed: bool
    detail: str

    def __str__(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'} {self.name}: {self.detail}"


def metric(metrics: Mapping[str, Any], name: str, of: str = "model") -> float | None:
    """A holdout metric of the model (or ``of="baseline"``) from metrics.json's layout:
    ``{"model": {"r2": ...}, "baseline": {"r2": ...}}``."""
    section = metrics.get(of)
    if isinstance(section, Mapping) and isinstance(section.get(name), int | float):
        return float(section[name])
    return None


def primary(task: Task | str) -> str:
    return PRIMARY_METRIC[task]


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def summary(task: Task | str, metrics: Mapping[str, Any]) -> str:
    """One line for people: the task's headline metrics and the baseline's primary one."""
    names = ("r2", "mae") if task == "regression" else ("accuracy", "f1_macro", "roc_auc")
    key = primary(task)
    parts = [f"{METRIC_LABELS[n]} {_fmt(metric(metrics, n))}" for n in names]
    return (
        f"holdout {', '.join(parts)} "
        f"(baseline {METRIC_LABELS[key]} {_fmt(metric(metrics, key, of='baseline'))})"
    )


def gate_values(gates: Gates) -> dict[str, Any]:
    """The gates as plain values: what a pointer records as the gates that judged its
    version, and what ``mlopsctl policy`` compares."""
    return gates.model_dump(mode="json")


def merge(gates: Gates, overrides: Mapping[str, Any] | None) -> Gates:
    """Project gates with a deployment's non-null overrides applied."""
    if not overrides:
        return gates
    return gates.model_copy(update={k: v for k, v in overrides.items() if v is not None})


def _threshold(
    name: str, label: str, value: float | None, bound: float, *, at_least: bool
) -> GateResult:
    if value is None:
        return GateResult(name, False, f"the manifest has no holdout {label} (retrain)")
    ok = value >= bound if at_least else value <= bound
    kind = "minimum" if at_least else "maximum"
    return GateResult(name, ok, f"{label} {value:.4f} vs {kind} {bound}")


# (gate field, metric, at_least) for the plain thresholds of each task.
_THRESHOLDS: dict[str, tuple[tuple[str, str, bool], ...]] = {
    "regression": (("min_r2", "r2", True), ("max_mae", "mae", False)),
    "classification": (
        ("min_accuracy", "accuracy", True),
        ("min_f1", "f1_macro", True),
        ("min_auc", "roc_auc", True),
        ("max_log_loss", "log_loss", False),
    ),
}


def evaluate(gates: Gates, candidate: Manifest, current: Manifest | None) -> list[GateResult]:
    task = candidate.task
    try:
        gates = gates.for_task(task)
    except ValueError as exc:  # e.g. a deployment's minR2 override on a classifier
        return [GateResult("gates", False, str(exc))]
    key = primary(task)
    label = METRIC_LABELS[key]
    m = candidate.metrics
    score = metric(m, key)
    if score is None:
        return [GateResult("metrics", False, f"the manifest has no holdout {label} (retrain)")]
    results: list[GateResult] = []
    for field, name, at_least in _THRESHOLDS[task]:
        bound = getattr(gates, field)
        if bound is not None:
            results.append(
                _threshold(field, METRIC_LABELS[name], metric(m, name), bound, at_least=at_least)
            )
    if gates.must_beat_baseline:
        base = metric(m, key, of="baseline")
        ok = base is not None and score > base
        results.append(
            GateResult(
                "must_beat_baseline",
                ok,
                f"{label} {score:.4f} vs {BASELINE_NAMES[task]} {_fmt(base)}",
            )
        )
    if current is not None and current.version != candidate.version:
        if current.task != task:
            results.append(
                GateResult(
                    "max_regression",
                    False,
                    f"the current version {current.version} is a {current.task} model; "
                    f"a {task} model cannot be compared with it (promote with --force "
                    "--reason to change the project's task)",
                )
            )
        else:
            cur = metric(current.metrics, key)
            if cur is not None:
                ok = score >= cur - gates.max_regression
                results.append(
                    GateResult(
                        "max_regression",
                        ok,
                        f"{label} {score:.4f} vs current {current.version} {cur:.4f} "
                        f"(allowed drop {gates.max_regression})",
                    )
                )
    return results


def failed(results: list[GateResult]) -> list[GateResult]:
    return [r for r in results if not r.passed]
