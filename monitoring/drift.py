"""From a baseline and a window of captured records to a :class:`DriftResult`.

The rules are the ones documented in :mod:`mlops_core.drift_result`; the statistics are
:mod:`monitoring.stats`. Every column is tested independently, then all p-values of the
run are corrected as one family, then each column is judged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlops_core.capture import Window
from mlops_core.drift_result import (
    ColumnDrift,
    Distribution,
    DriftConfig,
    DriftResult,
    Effect,
    MissingDrift,
    StatTest,
)
from mlops_core.errors import IntegrityError
from mlops_core.features import F32_MAX, FeatureSpec
from mlops_core.logs import get_logger
from monitoring import stats

log = get_logger("monitoring.drift")

UNSEEN = "(unseen)"
#: Probabilities at which both distributions are kept for the report's ECDF overlay.
ECDF_POINTS = np.linspace(0.0, 1.0, 41)

Kind = Literal["numeric", "category"]
Role = Literal["feature", "prediction"]


@dataclass(frozen=True)
class Reference:
    """One column of ``baseline.json``, as arrays."""

    name: str
    role: Role
    kind: Kind
    count: int
    missing: int
    sample: np.ndarray = field(default_factory=lambda: np.empty(0))  # sorted
    std: float = 0.0
    psi_edges: np.ndarray = field(default_factory=lambda: np.empty(0))
    psi_fractions: np.ndarray = field(default_factory=lambda: np.empty(0))
    categories: tuple[str, ...] = ()
    counts: np.ndarray = field(default_factory=lambda: np.empty(0))

    @property
    def missing_rate(self) -> float:
        total = self.count + self.missing
        return self.missing / total if total else 0.0


def reference_from_summary(name: str, role: Role, summary: dict[str, Any]) -> Reference:
    """A column's reference from its baseline summary (numeric or category)."""
    try:
        if summary.get("type") == "category":
            counts = summary["counts"]
            return Reference(
                name=name,
                role=role,
                kind="category",
                count=int(summary["count"]),
                missing=int(summary.get("missing", 0)),
                categories=tuple(str(c) for c in counts),
                counts=np.array([int(v) for v in counts.values()], dtype=np.int64),
            )
        sample = np.asarray(summary["sample"], dtype=np.float64)
        if sample.size > 1 and not bool(np.all(sample[1:] >= sample[:-1])):
            # Training stores it sorted; an older or hand-made baseline may not be.
            log.warning("baseline sample not sorted; sorting it", column=name)
            sample = np.sort(sample)
        bins = summary.get("psi_bins")
        if bins and bins.get("edges"):
            edges = np.asarray(bins["edges"], dtype=np.float64)
            fractions = np.asarray(bins["fractions"], dtype=np.float64)
        elif sample.size:
            # Baselines written before psi_bins: deciles of the sample.
            edges = np.unique(np.quantile(sample, np.linspace(0.1, 0.9, 9)))
            fractions = stats.bin_fractions_sorted(sample, edges)
        else:
            edges = fractions = np.empty(0)
        return Reference(
            name=name,
            role=role,
            kind="numeric",
            count=int(summary["count"]),
            missing=int(summary.get("missing", 0)),
            sample=sample,
            std=float(summary.get("std") or 0.0),
            psi_edges=edges,
            psi_fractions=fractions,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise IntegrityError(
            f"baseline.json has no usable summary for {role} {name!r} ({exc})",
            hint="retrain: the baseline is written by training",
        ) from None


def references(
    baseline: dict[str, Any], features: Sequence[FeatureSpec]
) -> tuple[list[Reference], Reference | None]:
    """The references of every feature of the schema and of the predictions."""
    summaries = baseline.get("features", {})
    refs = []
    for spec in features:
        if spec.name not in summaries:
            raise IntegrityError(
                f"baseline.json has no summary for feature {spec.name!r}",
                hint="the baseline and the manifest's schema disagree; retrain",
            )
        refs.append(reference_from_summary(spec.name, "feature", summaries[spec.name]))
    pred = baseline.get("predictions")
    prediction = reference_from_summary("prediction", "prediction", pred) if pred else None
    return refs, prediction


# -- per column -------------------------------------------------------------------------
@dataclass
class _Column:
    """A column's computed statistics before the run's correction."""

    ref: Reference
    rows: int
    total: int
    too_few: str = ""
    test: StatTest | None = None
    effect: Effect | None = None
    scores: dict[str, float] = field(default_factory=dict)
    missing: MissingDrift | None = None
    distribution: Distribution | None = None


def _as_float(column: pa.ChunkedArray) -> np.ndarray:
    """A fresh, writable float array (nulls as NaN): the job sorts it in place.

    A value serving never captures (infinite, or beyond float32's range, which bounds
    every number it accepts) can only come from a file written by something else: it is
    counted as missing, not measured (an infinity made the Wasserstein distance NaN, and
    the result one its own reader refused)."""
    # Unchecked: an integer above 2**53 (in a capture written before serving bounded
    # integers to it) rounds to the nearest double rather than failing the run.
    floats = column.cast(pa.float64(), safe=False)
    if floats.null_count:
        floats = floats.fill_null(float("nan"))
    values = floats.to_numpy()
    values = values if values.flags.writeable else values.copy()
    values[~(np.abs(values) <= F32_MAX)] = np.nan  # NaN compares False: stays missing
    return values


def _numeric(ref: Reference, values: np.ndarray, config: DriftConfig, col: _Column) -> None:
    current, _ = stats.sort_present(values, in_place=True)
    col.rows = int(current.size)
    if current.size < config.min_rows or ref.sample.size == 0:
        col.too_few = _too_few(current.size, ref.sample.size, config.min_rows)
        return
    d, p = stats.ks_2samp_sorted(ref.sample, current)
    w = stats.wasserstein_sorted(ref.sample, current)
    scale = ref.std if ref.std > 0 else 1.0  # a constant training column: absolute distance
    scores = {
        "ks": d,
        "wasserstein": w / scale,
        "psi": stats.psi(ref.psi_fractions, stats.bin_fractions_sorted(current, ref.psi_edges)),
    }
    col.scores = scores
    col.test = StatTest(name="ks", statistic=d, p_value=p)
    metric = config.numeric_effect
    col.effect = Effect(metric=metric, value=scores[metric], threshold=config.thresholds[metric])
    col.distribution = Distribution(
        kind="numeric",
        probabilities=ECDF_POINTS.tolist(),
        reference=stats.quantiles_sorted(ref.sample, ECDF_POINTS).tolist(),
        current=stats.quantiles_sorted(current, ECDF_POINTS).tolist(),
    )


def _category(ref: Reference, column: pa.ChunkedArray, config: DriftConfig, col: _Column) -> None:
    present = column.drop_null()
    col.rows = len(present)
    if col.rows < config.min_rows or ref.counts.sum() == 0:
        col.too_few = _too_few(col.rows, int(ref.counts.sum()), config.min_rows)
        return
    strings = present.cast(pa.string()) if present.type != pa.string() else present
    counted = pc.value_counts(strings)
    observed = dict(
        zip(
            counted.field("values").to_pylist(),
            counted.field("counts").to_pylist(),
            strict=True,
        )
    )
    current = np.array([observed.pop(c, 0) for c in ref.categories] + [sum(observed.values())])
    reference = np.append(ref.counts, 0)
    chi2, p = stats.chi2_homogeneity(reference, current)
    js = stats.js_distance(reference, current)
    col.scores = {"chi2": chi2, "jensen_shannon": js}
    col.test = StatTest(name="chi2", statistic=chi2, p_value=p)
    col.effect = Effect(
        metric="jensen_shannon", value=js, threshold=config.thresholds["jensen_shannon"]
    )
    keep = [i for i in range(len(reference)) if i < len(ref.categories) or current[i] > 0]
    names = [*ref.categories, UNSEEN]
    col.distribution = Distribution(
        kind="category",
        categories=[names[i] for i in keep],
        reference=[float(reference[i] / reference.sum()) for i in keep],
        current=[float(current[i] / current.sum()) for i in keep],
    )


def _missing(ref: Reference, missing: int, total: int, config: DriftConfig) -> MissingDrift | None:
    if total == 0 or (missing == 0 and ref.missing == 0):
        return None
    rate = missing / total
    stat, p = stats.missing_rate_test(ref.missing, ref.count + ref.missing, missing, total)
    return MissingDrift(
        reference_rate=ref.missing_rate,
        current_rate=rate,
        test=StatTest(name="missing_rate", statistic=stat, p_value=p),
        effect=Effect(
            metric="missing_rate_diff",
            value=abs(rate - ref.missing_rate),
            threshold=config.thresholds["missing_rate"],
        ),
    )


def _too_few(rows: int, reference_rows: int, needed: int) -> str:
    if reference_rows == 0:
        return "the baseline has no values of this column"
    return f"{rows} values in the window, {needed} needed"


def _column(ref: Reference, column: pa.ChunkedArray, config: DriftConfig) -> _Column:
    total = len(column)
    col = _Column(ref=ref, rows=0, total=total)
    if ref.kind == "numeric":
        _numeric(ref, _as_float(column), config, col)
    else:
        _category(ref, column, config, col)
    if ref.role == "feature":
        col.missing = _missing(ref, total - col.rows, total, config)
    return col


# -- the run ----------------------------------------------------------------------------
def _judge(col: _Column, config: DriftConfig) -> ColumnDrift:
    reasons = []
    drifted = False
    if col.test is not None and col.effect is not None:
        p_adj = col.test.p_adjusted if col.test.p_adjusted is not None else col.test.p_value
        if p_adj < config.alpha and col.effect.reached:
            drifted = True
            reasons.append(
                f"{col.test.name} p={p_adj:.2g} < {config.alpha:g} and "
                f"{col.effect.metric} {col.effect.value:.3g} >= {col.effect.threshold:g}"
            )
    if col.missing is not None:
        m = col.missing
        p_adj = m.test.p_adjusted if m.test.p_adjusted is not None else m.test.p_value
        m.drifted = p_adj < config.alpha and m.effect.reached
        if m.drifted:
            drifted = True
            reasons.append(f"missing {m.reference_rate:.1%} -> {m.current_rate:.1%}")
    if col.too_few and not drifted:
        status, reason = "too_few_rows", col.too_few
    else:
        status, reason = ("drift" if drifted else "ok"), "; ".join(reasons)
    return ColumnDrift(
        name=col.ref.name,
        role=col.ref.role,
        kind=col.ref.kind,
        status=status,
        reason=reason,
        rows=col.rows,
        reference_rows=col.ref.count if col.ref.kind == "category" else int(col.ref.sample.size),
        test=col.test,
        effect=col.effect,
        scores=col.scores,
        missing=col.missing,
        distribution=col.distribution,
    )


def _order(c: ColumnDrift) -> tuple[int, float, str]:
    rank = {"drift": 0, "ok": 1, "too_few_rows": 2}[c.status]
    return rank, -c.severity, c.name


def compute(
    *,
    project: str,
    env: str,
    version: str,
    baseline: dict[str, Any],
    features: Sequence[FeatureSpec],
    window: Window,
    config: DriftConfig,
    computed_at: datetime,
) -> DriftResult:
    refs, pred_ref = references(baseline, features)
    columns = [_column(ref, window.input_column(ref.name), config) for ref in refs]
    prediction = (
        _column(pred_ref, window.prediction_column(), config) if pred_ref is not None else None
    )
    everything = [*columns, *([prediction] if prediction is not None else [])]

    # One family: every test of the run, corrected together.
    family = [c.test for c in everything if c.test is not None] + [
        c.missing.test for c in everything if c.missing is not None
    ]
    for t, p_adj in zip(
        family, stats.adjust([t.p_value for t in family], config.correction), strict=True
    ):
        t.p_adjusted = float(p_adj)

    judged = sorted((_judge(c, config) for c in columns), key=_order)
    judged_pred = _judge(prediction, config) if prediction is not None else None
    tested = [c for c in judged if c.status != "too_few_rows"]
    drifted = [c.name for c in judged if c.drifted]
    share = len(drifted) / len(tested) if tested else None
    dataset_drift = bool(drifted) and share is not None and share >= config.drift_share
    prediction_drift = (
        None if judged_pred is None or judged_pred.status == "too_few_rows" else judged_pred.drifted
    )
    if not tested:
        verdict = "insufficient_data"
    elif dataset_drift or prediction_drift:
        verdict = "drift"
    else:
        verdict = "no_drift"
    return DriftResult(
        project=project,
        env=env,
        version=version,
        window_start=window.start,
        window_end=window.end,
        computed_at=computed_at,
        rows=window.rows,
        files=window.files,
        skipped_files=window.skipped,
        config=config,
        verdict=verdict,
        dataset_drift=dataset_drift,
        drift_share=share,
        tested_features=len(tested),
        drifted_features=drifted,
        prediction_drift=prediction_drift,
        features=judged,
        prediction=judged_pred,
    )
