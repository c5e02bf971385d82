"""The parity gate: does ``model.onnx`` predict what the scikit-learn pipeline predicts?

Run at training on two input sets, through the same onnxruntime session options serving
uses (:func:`serving.runtime.new_session`):

- the holdout rows;
- adversarial rows, built from holdout rows by setting one feature to: each sampled split
  threshold of the forest as float32, and one float32 ULP below and above it (where a
  float64/float32 mix-up flips a branch); large magnitudes up to float32's largest
  value, zero and the feature's declared bounds (only values serving accepts: within
  the bounds); and missing (NaN, the imputer's path) for optional features.

Regression passes when every row is within :data:`~mlops_core.modelformat.REGRESSION_RTOL`
relative plus :data:`~mlops_core.modelformat.REGRESSION_ATOL_SCALE` times the largest
training target magnitude; classification when no label differs (a difference where
scikit-learn's two best classes tie within the probability tolerance is reported as a
near tie, not a flip). The report (:class:`~mlops_core.modelformat.ParityReport`) goes
into ``metrics.json``; ``publish`` refuses a model that failed it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.pipeline import Pipeline

from mlops_core.features import FeatureSpec
from mlops_core.modelformat import (
    ONNX_INPUT,
    ONNX_LABEL_OUTPUT,
    ONNX_PROBABILITIES_OUTPUT,
    ONNX_REGRESSION_OUTPUT,
    PROBABILITY_ATOL,
    REGRESSION_ATOL_SCALE,
    REGRESSION_RTOL,
    ParityCheck,
    ParityReport,
)
from serving.runtime import new_session, onnxruntime_version

#: Split thresholds probed (a seeded sample when the forest has more), 3 rows each.
MAX_THRESHOLDS = 20000
F32_MAX = float(np.finfo(np.float32).max)
MAGNITUDES = (F32_MAX, -F32_MAX, 1e30, -1e30, 1e9, -1e9, 0.0)


def final_estimator(model: Any) -> Any:
    """The last step of a Pipeline, or the estimator itself."""
    steps = getattr(model, "steps", None)
    return steps[-1][1] if steps else model


def _column_map(pipeline: Pipeline, n_features: int) -> list[int] | None:
    """For each input column of the final estimator, the schema column it comes from
    (training's ColumnTransformer reorders numbers before categories); None if the
    pipeline's preprocessing is not a column-preserving ColumnTransformer."""
    steps = getattr(pipeline, "steps", None)
    if steps is None or len(steps) == 1:  # a bare estimator sees the schema's columns
        return list(range(n_features))
    transformers = getattr(steps[0][1], "transformers_", None)
    if transformers is None or len(steps) != 2:
        return None
    out: list[int] = []
    for _, _, cols in transformers:
        if isinstance(cols, str):  # "drop" / "passthrough" remainder with no columns
            continue
        out.extend(int(c) for c in cols)
    return out if sorted(out) == list(range(n_features)) else None


def _thresholds(pipeline: Any, n_features: int, seed: int) -> tuple[np.ndarray, int]:
    """(schema column, float64 threshold) pairs of the forest's splits, sampled."""
    forest = final_estimator(pipeline)
    columns = _column_map(pipeline, n_features)
    trees = getattr(forest, "estimators_", None)
    if columns is None or trees is None:
        return np.empty((0, 2)), 0
    pairs = []
    for tree in trees:
        t = tree.tree_
        split = t.feature >= 0
        pairs.append(np.column_stack([t.feature[split], t.threshold[split]]))
    unique = np.unique(np.concatenate(pairs), axis=0)
    total = len(unique)
    if total > MAX_THRESHOLDS:
        pick = np.random.default_rng(seed).choice(total, MAX_THRESHOLDS, replace=False)
        unique = unique[np.sort(pick)]
    unique[:, 0] = np.asarray(columns)[unique[:, 0].astype(int)]
    return unique, total


def adversarial_rows(
    pipeline: Pipeline,
    base: np.ndarray,
    features: list[FeatureSpec],
    seed: int,
) -> tuple[np.ndarray, dict[str, int]]:
    """Rows of ``base`` (holdout rows, float64) with one feature set to a hard value."""
    n = len(features)
    pairs, total = _thresholds(pipeline, n, seed)
    values: list[tuple[int, float]] = []
    for col, threshold in pairs:
        at = np.float32(threshold)
        below = np.nextafter(at, np.float32(-np.inf))
        above = np.nextafter(at, np.float32(np.inf))
        values.extend((int(col), float(v)) for v in (below, at, above))
    for col, spec in enumerate(features):
        # Only what serving accepts for the feature: values within its bounds (float32's
        # range when it has none), and missing only when it is optional.
        low = -F32_MAX if spec.min is None else spec.min
        high = F32_MAX if spec.max is None else spec.max
        extremes = [v for v in MAGNITUDES if low <= v <= high] + [low, high]
        if not spec.required:
            extremes.append(np.nan)
        values.extend((col, float(v)) for v in extremes)
    rows = base[np.arange(len(values)) % len(base)].copy()
    for i, (col, value) in enumerate(values):
        rows[i, col] = value
    return rows, {"probed": len(pairs), "total": total}


def _regression(sk: np.ndarray, ox: np.ndarray, atol: float) -> tuple[ParityCheck, int]:
    diff = np.abs(ox - sk)
    allowed = REGRESSION_RTOL * np.abs(sk) + atol
    rel = diff / np.maximum(np.abs(sk), np.finfo(np.float64).tiny)
    worst = int(np.argmax(diff / allowed))
    check = ParityCheck(
        rows=len(sk),
        max_abs_diff=float(diff.max(initial=0.0)),
        max_rel_diff=float(rel.max(initial=0.0)),
        violations=int((diff > allowed).sum()),
    )
    return check, worst


def _classification(
    sk_labels: np.ndarray, sk_proba: np.ndarray, ox_labels: np.ndarray, ox_proba: np.ndarray
) -> tuple[ParityCheck, int]:
    differ = sk_labels != ox_labels
    top2 = np.sort(sk_proba, axis=1)[:, -2:] if sk_proba.shape[1] > 1 else None
    tied = (
        np.zeros(len(sk_labels), bool)
        if top2 is None
        else (top2[:, 1] - top2[:, 0]) <= PROBABILITY_ATOL
    )
    diff = np.abs(ox_proba - sk_proba).max(axis=1)
    flips = differ & ~tied
    worst = int(np.argmax(flips)) if flips.any() else int(np.argmax(diff))
    check = ParityCheck(
        rows=len(sk_labels),
        max_abs_diff=float(diff.max(initial=0.0)),
        violations=int((flips | (diff > PROBABILITY_ATOL)).sum()),
        near_ties=int((differ & tied).sum()),
    )
    return check, worst


def _jsonable_row(row: np.ndarray, features: list[FeatureSpec]) -> dict[str, Any]:
    return {f.name: (None if np.isnan(v) else float(v)) for f, v in zip(features, row, strict=True)}


def compare(
    pipeline: Pipeline,
    onnx_bytes: bytes,
    x_holdout: np.ndarray,
    features: list[FeatureSpec],
    *,
    classifier: bool,
    target_scale: float,
    seed: int = 0,
) -> ParityReport:
    """The parity report of ``onnx_bytes`` against ``pipeline`` (see the module docstring).

    ``target_scale`` is the largest training target magnitude (regression), which sets
    the absolute tolerance."""
    session = new_session(onnx_bytes)
    adversarial, thresholds = adversarial_rows(pipeline, x_holdout, features, seed)
    checks: dict[str, ParityCheck] = {}
    worst: dict[str, Any] | None = None
    worst_score = -1.0
    atol = REGRESSION_ATOL_SCALE * max(float(target_scale), 1.0)
    for name, rows in (("holdout", x_holdout), ("adversarial", adversarial)):
        as_f32 = rows.astype(np.float32)
        # scikit-learn's finiteness check sums the rows: ±float32 max overflows that sum
        # (a warning, then its exact check passes); the values themselves are finite.
        quiet = np.errstate(over="ignore", invalid="ignore")
        if classifier:
            with quiet:
                sk_labels = pipeline.predict(rows)
                sk_proba = pipeline.predict_proba(rows)
            ox_labels, ox_proba = session.run(
                [ONNX_LABEL_OUTPUT, ONNX_PROBABILITIES_OUTPUT], {ONNX_INPUT: as_f32}
            )
            check, i = _classification(sk_labels, sk_proba, ox_labels, ox_proba)
            # tolist() turns numpy ints and strs alike into JSON-ready Python values.
            seen = {
                "sklearn": sk_labels[i : i + 1].tolist()[0],
                "onnx": ox_labels[i : i + 1].tolist()[0],
            }
            score = float(check.violations)
        else:
            with quiet:
                sk = np.asarray(pipeline.predict(rows), dtype=np.float64).reshape(-1)
            (ox,) = session.run([ONNX_REGRESSION_OUTPUT], {ONNX_INPUT: as_f32})
            ox = ox.reshape(-1).astype(np.float64)
            check, i = _regression(sk, ox, atol)
            seen = {"sklearn": float(sk[i]), "onnx": float(ox[i])}
            score = float(check.violations) + check.max_abs_diff / (atol + 1.0)
        checks[name] = check
        if score > worst_score:
            worst_score = score
            worst = {"set": name, **seen, "row": _jsonable_row(rows[i], features)}
    tolerance = (
        {"label_flips": 0, "probability_atol": PROBABILITY_ATOL}
        if classifier
        else {"rtol": REGRESSION_RTOL, "atol": atol}
    )
    return ParityReport(
        passed=all(c.violations == 0 for c in checks.values()),
        task="classification" if classifier else "regression",
        runtime=onnxruntime_version(),
        tolerance=tolerance,
        holdout=checks["holdout"],
        adversarial=checks["adversarial"],
        thresholds=thresholds,
        worst=worst,
    )
