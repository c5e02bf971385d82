"""Drift decisions on synthetic windows with known shifts (no AWS: windows in memory)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from drift_data import build_baseline, columns, schema_features, window_table

from mlops_core.capture import CaptureSchema, Window
from mlops_core.drift_result import DriftConfig, DriftResult
from mlops_core.errors import IntegrityError
from monitoring import drift
from monitoring.settings import DriftSettings

FEATURES = schema_features(numeric=6)
BASELINE = build_baseline(FEATURES)
SCHEMA = CaptureSchema("drift-demo", "20261128T060000Z-abcdef0", tuple(FEATURES))
START = datetime(2026, 12, 1, 10, tzinfo=UTC)


def config(**overrides) -> DriftConfig:
    return DriftSettings(**overrides).decision()


def run(cols, cfg: DriftConfig | None = None, baseline=BASELINE) -> DriftResult:
    table = window_table(SCHEMA, cols, START, timedelta(hours=1))
    window = Window(start=START, end=START + timedelta(hours=1), table=table, files=1)
    return drift.compute(
        project="drift-demo",
        env="prod",
        version=SCHEMA.version,
        baseline=baseline,
        features=FEATURES,
        window=window,
        config=cfg or config(),
        computed_at=START + timedelta(hours=1),
    )


@pytest.mark.parametrize("shifted", ["x3", "items", "color"])
def test_one_shifted_feature_is_flagged_and_only_it(shifted):
    # Several independent windows: the shifted column is flagged in every one, no other
    # column in any (BH at alpha 0.05 with the effect thresholds).
    for seed in range(1, 6):
        result = run(columns(FEATURES, 20_000, seed, shift={shifted: 0.5}))
        assert result.drifted_features == [shifted], (seed, result.summary())
        assert result.features[0].name == shifted and result.features[0].status == "drift"
        assert all(c.status == "ok" for c in result.features[1:])


def test_false_positive_rate_without_shift():
    # 20 unshifted windows x 8 features: with the corrected tests and the effect
    # thresholds, no column is flagged (the expected count at alpha 0.05 is below one).
    flagged = []
    for seed in range(100, 120):
        result = run(columns(FEATURES, 5_000, seed))
        assert result.verdict == "no_drift"
        flagged += result.drifted_features
    assert flagged == []


def test_significance_alone_does_not_flag_a_shift_below_the_effect_threshold():
    # A 0.3-sd shift is highly significant (the 1,000-row reference bounds the power) but
    # below a 0.5 normalised-Wasserstein threshold: not drift. At the default 0.1, drift.
    cols = columns(FEATURES, 50_000, 3, shift={"x1": 0.3})
    result = run(cols, config(wasserstein_threshold=0.5))
    x1 = next(c for c in result.features if c.name == "x1")
    assert x1.test is not None and x1.test.p_adjusted < 1e-6
    assert x1.effect is not None and 0.1 < x1.effect.value < 0.5
    assert x1.status == "ok" and result.drifted_features == []
    assert run(cols).drifted_features == ["x1"]


def test_dataset_drift_follows_the_drift_share():
    cols = columns(FEATURES, 10_000, 4, shift={"x0": 1.0, "x1": 1.0})
    low = run(cols, config(drift_share=0.2))
    assert set(low.drifted_features) == {"x0", "x1"}
    assert low.drift_share == pytest.approx(2 / 8)
    assert low.dataset_drift and low.verdict == "drift"
    high = run(cols, config(drift_share=0.5))
    assert not high.dataset_drift
    # x0 drives the prediction: the predictions drifted, so the run did.
    assert high.prediction_drift is True and high.verdict == "drift"
    quiet = run(columns(FEATURES, 10_000, 4, shift={"x1": 1.0}), config(drift_share=0.5))
    assert quiet.drifted_features == ["x1"] and quiet.prediction_drift is False
    assert quiet.verdict == "no_drift"


def test_missing_rate_drift_is_detected():
    result = run(columns(FEATURES, 10_000, 5, missing={"x2": 0.3}))
    x2 = next(c for c in result.features if c.name == "x2")
    assert x2.status == "drift" and x2.missing is not None and x2.missing.drifted
    assert x2.missing.reference_rate == 0.0 and x2.missing.current_rate == pytest.approx(0.3, 0.1)
    assert x2.rows == 10_000 - round(x2.missing.current_rate * 10_000)
    assert result.drifted_features == ["x2"]


def test_unseen_categories_get_their_own_bucket():
    cols = columns(FEATURES, 10_000, 6)
    cols["color"][:3000] = "purple"
    result = run(cols)
    color = next(c for c in result.features if c.name == "color")
    assert color.status == "drift"
    assert color.distribution is not None and color.distribution.categories[-1] == "(unseen)"
    assert color.distribution.current[-1] == pytest.approx(0.3)


def test_too_few_rows_is_reported_never_as_no_drift():
    result = run(columns(FEATURES, 40, 7, shift={"x0": 3.0}))
    assert result.verdict == "insufficient_data" and not result.drifted
    assert {c.status for c in result.features} == {"too_few_rows"}
    assert "40 values in the window, 100 needed" in result.features[0].reason
    assert result.drift_share is None and result.tested_features == 0
    assert "too few captured rows" in result.summary()
    # An empty window too.
    empty = run(columns(FEATURES, 0, 7))
    assert empty.verdict == "insufficient_data" and empty.rows == 0


def test_bonferroni_is_more_conservative_than_bh():
    cols = columns(FEATURES, 3_000, 8, shift={"x0": 0.12, "x1": 0.12, "x2": 0.12})
    bh = run(cols, config(correction="bh", wasserstein_threshold=0.0))
    bonf = run(cols, config(correction="bonferroni", wasserstein_threshold=0.0))
    for name in ("x0", "x1", "x2"):
        p_bh = next(c for c in bh.features if c.name == name).test.p_adjusted
        p_bonf = next(c for c in bonf.features if c.name == name).test.p_adjusted
        assert p_bonf >= p_bh
    assert set(bonf.drifted_features) <= set(bh.drifted_features)


@pytest.mark.parametrize("metric", ["wasserstein", "psi", "ks"])
def test_the_numeric_effect_metric_is_configurable(metric):
    result = run(columns(FEATURES, 10_000, 9, shift={"x4": 1.0}), config(numeric_effect=metric))
    x4 = result.features[0]
    assert x4.name == "x4" and x4.effect is not None and x4.effect.metric == metric
    assert x4.effect.value == x4.scores[metric]


def test_classification_predictions_are_compared_as_categories():
    baseline = {
        **BASELINE,
        "predictions": {
            "type": "category",
            "count": 1000,
            "missing": 0,
            "counts": {"no": 700, "yes": 300},
            "frequencies": {"no": 0.7, "yes": 0.3},
        },
    }
    schema = CaptureSchema(SCHEMA.project, SCHEMA.version, SCHEMA.features, "classification")
    cols = columns(FEATURES, 5_000, 10)
    table = window_table(SCHEMA, cols, START, timedelta(hours=1))
    import pyarrow as pa

    labels = pa.array(np.where(np.arange(5_000) % 2 == 0, "yes", "no"))
    output = pa.StructArray.from_arrays(
        [labels, table.column("output").combine_chunks().field("probabilities")],
        fields=list(schema.arrow_schema.field("output").type),
    )
    table = table.set_column(5, schema.arrow_schema.field("output"), output)
    window = Window(start=START, end=START + timedelta(hours=1), table=table, files=1)
    result = drift.compute(
        project="drift-demo",
        env="prod",
        version=SCHEMA.version,
        baseline=baseline,
        features=FEATURES,
        window=window,
        config=config(),
        computed_at=START,
    )
    assert result.prediction is not None and result.prediction.kind == "category"
    assert result.prediction.test is not None and result.prediction.test.name == "chi2"
    assert result.prediction_drift is True and result.verdict == "drift"
    assert result.drifted_features == []


def test_result_round_trips_through_json():
    result = run(columns(FEATURES, 2_000, 11, shift={"x0": 1.0}))
    again = DriftResult.model_validate_json(result.model_dump_json())
    assert again == result


def test_baselines_written_before_psi_bins_still_work():
    old = copy.deepcopy(BASELINE)
    for summary in old["features"].values():
        summary.pop("psi_bins", None)
    cols = columns(FEATURES, 10_000, 12, shift={"x5": 1.0})
    result, current = run(cols, baseline=old), run(cols)
    assert result.drifted_features == current.drifted_features == ["x5"]
    x5 = next(c for c in result.features if c.name == "x5")
    # Deciles of the sample instead of the training column: close, not equal.
    assert x5.scores["psi"] == pytest.approx(current.features[0].scores["psi"], rel=0.25)


def test_a_baseline_without_a_feature_is_an_integrity_error():
    broken = copy.deepcopy(BASELINE)
    del broken["features"]["x0"]
    with pytest.raises(IntegrityError, match="no summary for feature 'x0'"):
        run(columns(FEATURES, 200, 13), baseline=broken)
    broken = copy.deepcopy(BASELINE)
    del broken["features"]["x1"]["sample"]
    with pytest.raises(IntegrityError, match="feature 'x1'"):
        run(columns(FEATURES, 200, 13), baseline=broken)


def test_an_integer_beyond_float64_precision_does_not_fail_the_run():
    """Serving accepts integers up to float32's range and captures them as int64: one
    above 2**53 made pyarrow's checked cast raise, so every run over its window failed."""
    cols = columns(FEATURES, 500, seed=8)
    cols["items"] = cols["items"].astype(np.float64)
    cols["items"][0] = 1e17  # exact as a double, above 2**53 as an int64
    result = run(cols)
    items = next(c for c in result.features if c.name == "items")
    assert items.rows == 500 and items.test is not None


def test_unreadable_capture_files_are_said_in_the_summary():
    """The CLI's last line and the Drifted condition's message: "too few rows" alone would
    send the operator to wait for traffic when the writer is what is broken."""
    table = window_table(SCHEMA, columns(FEATURES, 0, 7), START, timedelta(hours=1))
    window = Window(START, START + timedelta(hours=1), table, files=0, skipped=["a", "b"])
    result = drift.compute(
        project="drift-demo", env="prod", version=SCHEMA.version, baseline=BASELINE,
        features=FEATURES, window=window, config=config(), computed_at=START,
    )  # fmt: skip
    assert result.verdict == "insufficient_data"
    assert "2 capture files unreadable" in result.summary()
    assert "unreadable" not in run(columns(FEATURES, 500, 7)).summary()


def test_values_serving_never_captures_are_missing_not_measured():
    """An infinity or a double beyond float32's range in a capture file (written by
    something other than serving) made the Wasserstein distance NaN: the job wrote a
    result its own reader refused. They count as missing instead."""
    cols = columns(FEATURES, 500, seed=9)
    cols["x1"] = cols["x1"].astype(np.float64)
    cols["x1"][:3] = [np.inf, -np.inf, 1.7e308]
    result = run(cols)
    x1 = next(c for c in result.features if c.name == "x1")
    assert x1.rows == 497 and x1.test is not None
    assert all(np.isfinite(v) for v in x1.scores.values()), x1.scores
    assert x1.missing is not None and x1.missing.current_rate == pytest.approx(3 / 500)
    # What the job writes, its reader reads back.
    assert DriftResult.model_validate_json(result.model_dump_json()) == result
