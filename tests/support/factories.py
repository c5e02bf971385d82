"""Small, fast artifact folders for tests that need a published model but not training.

The folder follows the artifact layout of :mod:`mlops_core.artifacts` exactly, with a tiny
scikit-learn pipeline fitted on :class:`~mlops_core.features.FeatureEncoder` output.
"""

from __future__ import annotations

import pickle
import platform as _platform
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import sklearn
from sklearn.ensemble import RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline

from mlops_core.artifacts import DataInfo, Manifest, write_version_folder
from mlops_core.features import FeatureEncoder, FeatureSpec
from mlops_core.project import ProjectConfig

FEATURES = [
    FeatureSpec(name="year", type="integer", min=1990, max=2030),
    FeatureSpec(name="odometer", type="number", min=0),
    FeatureSpec(name="make_encoded", type="integer", min=0),
    FeatureSpec(name="model_encoded", type="integer", min=0),
    FeatureSpec(
        name="condition", type="category", required=False, categories=["fair", "good", "new"]
    ),
]

SEED_REQUEST = {"year": 2019, "odometer": 25000, "make_encoded": 9, "model_encoded": 42}


def project_config(name: str = "usedcar-price", **gates) -> ProjectConfig:
    return ProjectConfig.model_validate(
        {
            "name": name,
            "data": {"source": "data/usedcars.csv"},
            "target": "price",
            "features": [f.model_dump() for f in FEATURES],
            "model": {"n_estimators": 3, "max_depth": 4},
            "gates": gates or {"min_r2": 0.1, "max_regression": 0.05},
        }
    )


def make_artifacts(
    folder: Path,
    *,
    project: str = "usedcar-price",
    seed: int = 0,
    r2: float = 0.8,
    created_at: datetime | None = None,
    rows: int = 300,
) -> Manifest:
    """Write a complete artifacts folder; ``r2`` is recorded as the holdout metric so
    gate tests can choose it. Different seeds give different models and versions."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    records = [
        {
            "year": int(rng.integers(2000, 2025)),
            "odometer": float(rng.uniform(0, 200_000)),
            "make_encoded": int(rng.integers(0, 20)),
            "model_encoded": int(rng.integers(0, 80)),
            "condition": ["fair", "good", "new", None][int(rng.integers(0, 4))],
        }
        for _ in range(rows)
    ]
    x = FeatureEncoder(FEATURES).encode_records(records)
    y = 30_000 - 0.05 * x[:, 1] + 800 * (x[:, 0] - 2000) + rng.normal(0, 1000, rows)
    model = make_pipeline(
        SimpleImputer(strategy="median"),
        RandomForestRegressor(n_estimators=3, max_depth=4, random_state=seed),
    ).fit(x, y)
    metrics = {
        "model": {"r2": r2, "mae": 1000.0, "rmse": 1300.0},
        "baseline": {"r2": -0.001, "mae": 9000.0, "rmse": 11000.0},
        "train_rows": rows,
        "test_rows": 0,
    }
    created = created_at or datetime(2026, 11, 28, 6, 0, tzinfo=UTC) + timedelta(minutes=seed)
    return write_version_folder(
        folder,
        model_bytes=pickle.dumps(model),
        baseline={"features": {}},
        metrics=metrics,
        project=project,
        created_at=created,
        target="price",
        features=FEATURES,
        data=DataInfo(source="synthetic", fingerprint="0" * 64, rows=rows, columns=[]),
        hyperparameters={"n_estimators": 3, "max_depth": 4, "random_state": seed},
        runtime={
            "python": _platform.python_version(),
            "scikit-learn": sklearn.__version__,
            "numpy": np.__version__,
        },
    )
