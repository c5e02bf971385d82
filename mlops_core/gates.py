"""Promotion gates: one evaluation for the CLI's ``promote`` and the controller.

A version may go live in an env only if its holdout metrics pass the project's
thresholds and it is no worse than the env's current version by more than
``max_regression`` (in R²).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlops_core.artifacts import Manifest
from mlops_core.project import Gates


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


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def merge(gates: Gates, overrides: Mapping[str, Any] | None) -> Gates:
    """Project gates with a deployment's non-null overrides applied."""
    if not overrides:
        return gates
    return gates.model_copy(update={k: v for k, v in overrides.items() if v is not None})


def evaluate(gates: Gates, candidate: Manifest, current: Manifest | None) -> list[GateResult]:
    m = candidate.metrics
    r2 = metric(m, "r2")
    results: list[GateResult] = []
    if r2 is None:
        return [GateResult("metrics", False, "the manifest has no holdout R² (retrain)")]
    if gates.min_r2 is not None:
        results.append(
            GateResult("min_r2", r2 >= gates.min_r2, f"R² {r2:.4f} vs minimum {gates.min_r2}")
        )
    if gates.max_mae is not None:
        mae = metric(m, "mae")
        ok = mae is not None and mae <= gates.max_mae
        results.append(GateResult("max_mae", ok, f"MAE {mae} vs maximum {gates.max_mae}"))
    if gates.must_beat_baseline:
        base = metric(m, "r2", of="baseline")
        ok = base is not None and r2 > base
        results.append(
            GateResult(
                "must_beat_baseline",
                ok,
                f"R² {r2:.4f} vs DummyRegressor {base if base is None else round(base, 4)}",
            )
        )
    if current is not None and current.version != candidate.version:
        cur = metric(current.metrics, "r2")
        if cur is not None:
            ok = r2 >= cur - gates.max_regression
            results.append(
                GateResult(
                    "max_regression",
                    ok,
                    f"R² {r2:.4f} vs current {current.version} {cur:.4f} "
                    f"(allowed drop {gates.max_regression})",
                )
            )
    return results


def failed(results: list[GateResult]) -> list[GateResult]:
    return [r for r in results if not r.passed]
