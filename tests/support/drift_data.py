"""Synthetic data for drift tests and the drift benchmark: a schema, its training rows, a
baseline built by training's own code, and captured windows with chosen shifts.

``training_rows`` and ``window_rows`` draw from the same distributions unless a column
is named in ``shift`` (numbers move by that many standard deviations; the category's
frequencies flip), so a test knows exactly which column should drift.
"""

from __future__ import annotations

import pickle
import platform as _platform
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from configured import env_platform

from mlops_core.artifacts import DataInfo, Manifest, write_version_folder
from mlops_core.capture import CaptureSchema, arrow_schema, schema_for
from mlops_core.drift_result import DriftConfig, DriftResult
from mlops_core.features import FeatureSpec
from mlops_core.pointer import ModelPointer, PointerStore
from mlops_core.registry import Registry
from training import baseline as baseline_mod

PROJECT = "drift-demo"
COLORS = ["red", "green", "blue"]
COLOR_P = np.array([0.6, 0.3, 0.1])


def schema_features(numeric: int = 4) -> list[FeatureSpec]:
    return [
        *[FeatureSpec(name=f"x{i}", type="number") for i in range(numeric)],
        FeatureSpec(name="items", type="integer", min=0),
        FeatureSpec(name="color", type="category", categories=COLORS, required=False),
    ]


def _predict(cols: dict[str, np.ndarray]) -> np.ndarray:
    return 10.0 + 2.0 * np.nan_to_num(cols["x0"]) + cols["items"]


def columns(
    features: list[FeatureSpec],
    rows: int,
    seed: int,
    shift: dict[str, float] | None = None,
    missing: dict[str, float] | None = None,
) -> dict[str, np.ndarray]:
    """Column arrays (numbers as float, items as int, color as object with None)."""
    rng = np.random.default_rng(seed)
    shift = shift or {}
    out: dict[str, np.ndarray] = {}
    for spec in features:
        s = shift.get(spec.name, 0.0)
        if spec.type == "number":
            out[spec.name] = rng.normal(100.0 + 15.0 * s, 15.0, rows)
        elif spec.type == "integer":
            out[spec.name] = rng.poisson(3.0 + 1.8 * s, rows).astype(np.int64)
        else:
            p = COLOR_P[::-1] if s else COLOR_P
            out[spec.name] = np.array(COLORS, dtype=object)[rng.choice(3, size=rows, p=p)]
    for name, rate in (missing or {}).items():
        hole = rng.random(rows) < rate
        if out[name].dtype == object:
            out[name][hole] = None
        else:
            out[name] = out[name].astype(np.float64)
            out[name][hole] = np.nan
    return out


def build_baseline(features: list[FeatureSpec], rows: int = 5000, seed: int = 0) -> dict:
    cols = columns(features, rows, seed)
    frame = pd.DataFrame({**cols, "target": _predict(cols)})
    return baseline_mod.build(frame, features, "target", _predict(cols), seed=seed)


def publish_version(
    tmp: Path, features: list[FeatureSpec], *, env: str = "prod", seed: int = 0
) -> Manifest:
    """Publish a version whose baseline is built from ``columns(features, 5000, seed)``
    and point ``env`` at it. The model files are placeholders: drift never loads them
    (skops, so publish needs no ONNX parity report)."""
    base = build_baseline(features, seed=seed)
    manifest = write_version_folder(
        tmp / f"v{seed}",
        model_bytes=pickle.dumps({"placeholder": seed}),
        baseline=base,
        metrics={"model": {"r2": 0.9}},
        project=PROJECT,
        created_at=datetime(2026, 11, 28, 6, 0, tzinfo=UTC) + timedelta(minutes=seed),
        target="target",
        features=features,
        data=DataInfo(source="synthetic", fingerprint="0" * 64, rows=5000, columns=[]),
        hyperparameters={},
        runtime={"python": _platform.python_version()},
        serving_format="skops",
        serving_bytes=b"placeholder: drift reads the baseline, never the model",
    )
    registry = Registry(env_platform())
    registry.publish(tmp / f"v{seed}")
    PointerStore(registry.platform).put(
        PROJECT,
        env,
        ModelPointer(
            version=manifest.version,
            uri=registry.platform.version_uri(PROJECT, manifest.version),
            sha256=manifest.model_sha256,
            promoted_at=datetime.now(UTC),
            promoted_by="tests",
        ),
    )
    return manifest


def capture_schema(manifest: Manifest) -> CaptureSchema:
    return schema_for(manifest)


def records(cols: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Validated request rows, as the serving path holds them."""
    names = list(cols)
    out = []
    for i in range(len(next(iter(cols.values())))):
        row = {}
        for n in names:
            v = cols[n][i]
            if v is None or (isinstance(v, float) and np.isnan(v)):
                row[n] = None
            elif isinstance(v, np.integer):
                row[n] = int(v)
            elif isinstance(v, np.floating):
                row[n] = float(v)
            else:
                row[n] = v
        out.append(row)
    return out


def window_table(
    schema: CaptureSchema, cols: dict[str, np.ndarray], start: datetime, span: timedelta
) -> pa.Table:
    """Captured records of ``cols`` as one table of the capture schema, times spread
    evenly over ``[start, start + span)``. Built column-wise: fast for a million rows."""
    arrow = arrow_schema(schema.features, schema.task)
    n = len(next(iter(cols.values())))
    start_us = int(start.timestamp() * 1_000_000)
    times = start_us + (np.arange(n, dtype=np.int64) * int(span.total_seconds() * 1e6)) // n
    input_type = arrow.field("input").type
    arrays = []
    for i, spec in enumerate(schema.features):
        values = cols[spec.name]
        if spec.type == "category":
            arrays.append(pa.array(list(values), type=pa.string()))
        else:
            v = np.asarray(values, dtype=np.float64)
            arr = pa.array(v, mask=np.isnan(v), type=pa.float64())
            arrays.append(arr.cast(input_type.field(i).type))
    inputs = pa.StructArray.from_arrays(arrays, fields=list(input_type))
    output_type = arrow.field("output").type
    preds = _predict(
        {
            "x0": np.asarray(cols["x0"], dtype=np.float64),
            "items": np.nan_to_num(np.asarray(cols["items"], dtype=np.float64)),
        }
    )
    outputs = pa.StructArray.from_arrays(
        [pa.array(preds, type=pa.float64()), pa.nulls(n, type=output_type.field(1).type)],
        fields=list(output_type),
    )
    return pa.Table.from_arrays(
        [
            pa.array([f"bench-{i}" for i in range(n)], type=pa.string()),
            pa.array(times, type=pa.timestamp("us", tz="UTC")),
            pa.array(np.full(n, schema.version, dtype=object), type=pa.string()),
            pa.nulls(n, type=pa.string()),
            inputs,
            outputs,
        ],
        schema=arrow,
    )


def drift_result_for(
    project: str, env: str, version: str, drifted: list[str], verdict: str = "drift"
) -> DriftResult:
    """A minimal drift result, as the job would write it, with ``drifted`` of 4 features."""
    end = datetime.now(UTC)
    return DriftResult(
        project=project,
        env=env,
        version=version,
        window_start=end - timedelta(hours=1),
        window_end=end,
        computed_at=end,
        rows=500,
        config=DriftConfig(thresholds={"wasserstein": 0.1}),
        verdict=verdict,  # type: ignore[arg-type]
        dataset_drift=bool(drifted),
        drift_share=len(drifted) / 4,
        tested_features=4,
        drifted_features=drifted,
        features=[],
    )
