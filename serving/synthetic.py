"""A small synthetic model version folder, for tests, benchmarks and image smoke checks.

It is written exactly as training writes one (:mod:`mlops_core.artifacts`): a pickled
scikit-learn pipeline fitted on the :class:`~mlops_core.features.FeatureEncoder`'s matrix,
its served form from training's own export (``model.onnx`` with the parity report, or
``model.skops`` when asked), ``baseline.json``, ``metrics.json`` and a ``manifest.json``
naming each with its sha256.
"""

from __future__ import annotations

import pickle
import platform
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import sklearn
from sklearn.ensemble import RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline

from mlops_core.artifacts import DataInfo, Manifest, ModelFormat, write_version_folder
from mlops_core.features import FeatureEncoder, FeatureSpec

FUELS = ["petrol", "diesel", "electric", "hybrid"]

FEATURES = [
    FeatureSpec(name="mileage", type="number", min=0, max=1_000_000),
    FeatureSpec(name="year", type="integer", min=1950, max=2030),
    FeatureSpec(name="fuel", type="category", categories=FUELS),
    FeatureSpec(name="engine_size", type="number", required=False, min=0, max=10),
]


def records(n: int, seed: int = 0) -> list[dict]:
    """Random valid records for :data:`FEATURES` (some without the optional feature)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        rec = {
            "mileage": float(rng.uniform(0, 250_000)),
            "year": int(rng.integers(1995, 2026)),
            "fuel": FUELS[int(rng.integers(0, len(FUELS)))],
        }
        if i % 5:
            rec["engine_size"] = round(float(rng.uniform(0.8, 5.0)), 1)
        out.append(rec)
    return out


def _price(rec: dict) -> float:
    base = 30_000 - 0.08 * rec["mileage"] + 900 * (rec["year"] - 2010)
    return base + 2_000 * FUELS.index(rec["fuel"]) + 1_500 * rec.get("engine_size", 1.6)


def write_model_folder(
    dest: Path,
    *,
    project: str = "usedcar-price",
    n_estimators: int = 5,
    max_depth: int = 8,
    rows: int = 400,
    seed: int = 0,
    created_at: datetime | None = None,
    runtime: dict[str, str] | None = None,
    serving_format: str = "onnx",
) -> Manifest:
    """Train a small forest on synthetic records and write a version folder to ``dest``;
    ``serving_format="skops"`` serves it with scikit-learn (as for an estimator ONNX
    cannot express) instead of onnxruntime."""
    from training.export import export_checked, to_skops

    dest.mkdir(parents=True, exist_ok=True)
    data = records(rows, seed)
    encoder = FeatureEncoder(FEATURES)
    x = encoder.encode_records(data)
    y = np.array([_price(r) for r in data])
    pipeline = Pipeline(
        [
            ("impute", SimpleImputer(strategy="median")),
            (
                "model",
                RandomForestRegressor(
                    n_estimators=n_estimators, max_depth=max_depth, random_state=seed
                ),
            ),
        ]
    ).fit(x, y)
    r2 = float(pipeline.score(x, y))
    fmt: ModelFormat
    if serving_format == "skops":
        fmt, served, parity = "skops", to_skops(pipeline), None
    else:
        exported, report = export_checked(
            pipeline, x[:100], FEATURES, classifier=False, target_scale=float(np.abs(y).max())
        )
        fmt, served = exported.format, exported.data
        parity = None if report is None else report.model_dump(mode="json")
    return write_version_folder(
        dest,
        model_bytes=pickle.dumps(pipeline, protocol=5),
        baseline={
            "features": {
                n: {"mean": float(np.nanmean(x[:, i]))} for i, n in enumerate(encoder.names)
            }
        },
        metrics={"model": {"r2": r2}, "task": "regression", "parity": parity},
        project=project,
        created_at=created_at or datetime.now(UTC),
        target="price",
        features=FEATURES,
        data=DataInfo(source="synthetic", fingerprint="0" * 64, rows=rows, columns=encoder.names),
        hyperparameters={
            "n_estimators": n_estimators,
            "max_depth": max_depth,
            "random_state": seed,
        },
        runtime=runtime
        or {
            "python": platform.python_version(),
            "scikit-learn": sklearn.__version__,
            "numpy": np.__version__,
        },
        serving_format=fmt,
        serving_bytes=served,
    )
