"""Promotion gates: one check for ``promote``, ``deploy``, ``gates check`` and the controller.

A version may go live in an env only if its holdout metrics pass the project's
thresholds for its task and it is no worse than the env's current version by more than
``max_regression`` on the task's primary metric (R² for regression, macro F1 for
classification).

:func:`check` is the one verdict every entry point uses. Two things change it:

- **A rollback is never judged by regression.** A version the env's promotion log shows
  live before (``live_at``, the entry that held it) is where the env has been: the
  regression gate is skipped (verdict SKIP, with the reason) and only the absolute
  gates (thresholds, the baseline) judge it.
- **An override is bound to one version.** ``--force --reason`` records an
  :class:`Override` naming the version; failed gates of that version (and of no other)
  are reported FAIL but do not stop it, and the override travels into the pointer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"


@dataclass(frozen=True)
class GateResult:
    """One gate's verdict; ``value`` and ``threshold`` are the numbers it compared (None
    where a gate has none, e.g. a missing metric)."""

    name: str
    passed: bool
    detail: str
    value: float | None = None
    threshold: float | None = None
    #: Not judged (a rollback's max_regression): passed, verdict SKIP.
    skipped: bool = False

    @property
    def verdict(self) -> str:
        return SKIP if self.skipped else PASS if self.passed else FAIL

    def __str__(self) -> str:
        return f"{self.verdict} {self.name}: {self.detail}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "verdict": self.verdict,
            "value": self.value,
            "threshold": self.threshold,
            "detail": self.detail,
        }


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
    return GateResult(name, ok, f"{label} {value:.4f} vs {kind} {bound}", value, bound)


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
                score,
                base,
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
                        score,
                        round(cur - gates.max_regression, 10),
                    )
                )
    return results


def failed(results: Sequence[GateResult]) -> list[GateResult]:
    return [r for r in results if not r.passed]


@dataclass(frozen=True)
class Override:
    """``--force --reason``: the failed gates of ``version`` (only) do not stop it."""

    version: str
    reason: str
    by: str

    def note(self) -> str:
        return f"override by {self.by}: {self.reason}"


@dataclass(frozen=True)
class GateReport:
    """The verdict on ``version`` going live in ``env``: every gate's result, what it was
    compared with, and whether a rollback or an override changed the verdict."""

    version: str
    env: str
    results: tuple[GateResult, ...]
    #: The env's current version, the one max_regression compares with (None: first).
    current: str | None = None
    #: The promotion log entry at which ``version`` was live in ``env`` before: a
    #: rollback, whose max_regression is skipped. None: never live there.
    live_at: int | None = None
    #: The override bound to ``version``, if one was given (used only when gates fail).
    override: Override | None = None

    @property
    def failed(self) -> list[GateResult]:
        return failed(self.results)

    @property
    def skipped(self) -> list[GateResult]:
        return [r for r in self.results if r.skipped]

    @property
    def forced(self) -> bool:
        """Gates failed and the override let the version through."""
        return bool(self.failed) and self.override is not None

    @property
    def passed(self) -> bool:
        """The version may go live (every gate passed or was skipped, or it is forced)."""
        return not self.failed or self.override is not None

    @property
    def rollback(self) -> bool:
        return self.live_at is not None

    def summary(self) -> str:
        """One line for a status message or a log: failures, skips and the override."""
        if self.failed:
            line = f"version {self.version} failed gate(s) " + "; ".join(
                f"{r.name} ({r.detail})" for r in self.failed
            )
            if self.forced:
                assert self.override is not None
                line = (
                    f"FORCED past {', '.join(r.name for r in self.failed)} "
                    f"({self.override.note()}); {line}"
                )
        else:
            line = f"version {self.version} passed the gates"
        for r in self.skipped:
            line += f"; SKIP {r.name}: {r.detail}"
        return line

    def forced_reason(self, reason: str) -> str:
        """A pointer's reason, naming the gates an override forced it past."""
        if not self.forced:
            return reason
        return f"FORCED past {', '.join(r.name for r in self.failed)}: {reason}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "env": self.env,
            "verdict": (PASS if not self.failed else "FORCED" if self.forced else FAIL),
            "current": self.current,
            "rollback": None if self.live_at is None else {"promotion_log_entry": self.live_at},
            "override": None
            if self.override is None
            else {
                "version": self.override.version,
                "reason": self.override.reason,
                "by": self.override.by,
            },
            "gates": [r.to_dict() for r in self.results],
        }


def check(
    gates: Gates,
    candidate: Manifest,
    current: Manifest | None,
    *,
    env: str,
    live_at: int | None = None,
    override: Override | None = None,
) -> GateReport:
    """The one gate check: ``candidate`` going live in ``env``, where ``current`` is live
    now. ``live_at`` (the promotion log entry that held ``candidate`` in ``env`` before)
    makes it a rollback: max_regression is skipped, the absolute gates still apply. An
    ``override`` counts only if it names ``candidate``'s version."""
    compare = current if current is not None and current.version != candidate.version else None
    if live_at is not None and compare is not None:
        results = evaluate(gates, candidate, None)
        if len(results) != 1 or results[0].name not in ("gates", "metrics"):
            results.append(
                GateResult(
                    "max_regression",
                    True,
                    f"rollback: {candidate.version} was live in {env} before (promotion log "
                    f"entry {live_at}), so it is not compared with {compare.version}",
                    skipped=True,
                )
            )
    else:
        results = evaluate(gates, candidate, compare)
    bound = override if override is not None and override.version == candidate.version else None
    return GateReport(
        version=candidate.version,
        env=env,
        results=tuple(results),
        current=compare.version if compare is not None else None,
        live_at=live_at,
        override=bound,
    )
