"""Small, fast artifact folders for tests that need a published model but not training.

The folder follows the artifact layout of :mod:`mlops_core.artifacts` exactly, with a tiny
scikit-learn pipeline fitted on :class:`~mlops_core.features.FeatureEncoder` output and
exported (ONNX, parity-checked) by training's own :func:`training.export.export_checked`.
"""

from __future__ import annotations

import pickle
import platform as _platform
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import sklearn
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline

from mlops_core.artifacts import DataInfo, Manifest, write_version_folder
from mlops_core.features import FeatureEncoder, FeatureSpec
from mlops_core.project import ProjectConfig, Task
from training.export import export_checked

FEATURES = [
    FeatureSpec(name="year", type="integer", min=1990, max=2030),
    FeatureSpec(name="odometer", type="number", min=0),
    FeatureSpec(name="make_encoded", type="integer", min=0),
    FeatureSpec(name="model_encoded", type="integer", min=0),
    FeatureSpec(
        name="condition", type="category", required=False, categories=["fair", "good", "new"]
    ),
]

#: The labels of a classification factory model (price bands).
CLASSES = ["budget", "mid", "premium"]

SEED_REQUEST = {"year": 2019, "odometer": 25000, "make_encoded": 9, "model_encoded": 42}


def project_config(
    name: str = "usedcar-price", task: Task = "regression", **gates
) -> ProjectConfig:
    default = {"min_r2": 0.1} if task == "regression" else {"min_f1": 0.1}
    return ProjectConfig.model_validate(
        {
            "name": name,
            "data": {"source": "data/usedcars.csv"},
            "task": task,
            "target": "price" if task == "regression" else "price_band",
            "features": [f.model_dump() for f in FEATURES],
            "model": {"n_estimators": 3, "max_depth": 4},
            "gates": gates or {**default, "max_regression": 0.05},
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
    task: Task = "regression",
    f1: float = 0.8,
    offset: float = 0.0,
) -> Manifest:
    """Write a complete artifacts folder, as training writes one (model.pkl, model.onnx
    with its parity report, baseline, metrics, manifest). The holdout metrics are chosen
    by the caller so gate tests can pick them: ``r2`` for regression, ``f1`` (macro F1;
    accuracy and AUC follow it) for ``task="classification"``, whose labels are
    ``CLASSES``. Different seeds give different models and versions; ``offset`` moves
    every price (a model whose predictions shift away from the others')."""
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
    price = 30_000 - 0.05 * x[:, 1] + 800 * (x[:, 0] - 2000) + rng.normal(0, 1000, rows)
    price = price + offset
    classifier = task == "classification"
    if classifier:
        y = np.asarray(CLASSES, dtype=object)[
            np.digitize(price, np.quantile(price, [1 / 3, 2 / 3]))
        ]
        forest = RandomForestClassifier(n_estimators=3, max_depth=4, random_state=seed)
        metrics = {
            "model": {"accuracy": f1 + 0.02, "balanced_accuracy": f1, "f1_macro": f1,
                      "roc_auc": min(1.0, f1 + 0.1), "log_loss": 0.5},
            "baseline": {"accuracy": 0.34, "balanced_accuracy": 0.33, "f1_macro": 0.17,
                         "roc_auc": 0.5, "log_loss": 1.1, "strategy": "prior"},
        }  # fmt: skip
    else:
        y = price
        forest = RandomForestRegressor(n_estimators=3, max_depth=4, random_state=seed)
        metrics = {
            "model": {"r2": r2, "mae": 1000.0, "rmse": 1300.0},
            "baseline": {"r2": -0.001, "mae": 9000.0, "rmse": 11000.0},
        }
    model = make_pipeline(SimpleImputer(strategy="median"), forest).fit(x, y)
    exported, parity = export_checked(
        model, x[:50], FEATURES, classifier=classifier, target_scale=float(np.abs(price).max())
    )
    assert parity is not None and parity.passed, parity
    metrics |= {
        "task": task,
        "train_rows": rows,
        "test_rows": 0,
        "parity": parity.model_dump(mode="json"),
    }
    created = created_at or datetime(2026, 11, 28, 6, 0, tzinfo=UTC) + timedelta(minutes=seed)
    return write_version_folder(
        folder,
        model_bytes=pickle.dumps(model),
        baseline={"features": {}},
        metrics=metrics,
        project=project,
        created_at=created,
        target="price_band" if classifier else "price",
        features=FEATURES,
        data=DataInfo(source="synthetic", fingerprint="0" * 64, rows=rows, columns=[]),
        hyperparameters={"n_estimators": 3, "max_depth": 4, "random_state": seed},
        runtime={
            "python": _platform.python_version(),
            "scikit-learn": sklearn.__version__,
            "numpy": np.__version__,
        },
        serving_format=exported.format,
        serving_bytes=exported.data,
        task=task,
        labels=model.classes_.tolist() if classifier else None,
    )
