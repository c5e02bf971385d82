"""The model: an imputer and a random forest over the encoder's float matrix.

The pipeline takes exactly what :class:`mlops_core.features.FeatureEncoder` produces, in
schema order, with NaN for missing optional values; serving feeds it the same matrix.
"""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.dummy import DummyRegressor
from sklearn.ensemble import RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from sklearn.pipeline import Pipeline

from mlops_core.features import FeatureSpec
from mlops_core.project import ModelParams

#: Pickle protocol of model.pkl, fixed so the bytes (and the digest) do not depend on
#: the interpreter's default.
PICKLE_PROTOCOL = 5
IMPUTATION = {"number": "median", "category": "most_frequent"}


def build_pipeline(params: ModelParams, features: list[FeatureSpec]) -> Pipeline:
    numbers = [i for i, f in enumerate(features) if f.type != "category"]
    categories = [i for i, f in enumerate(features) if f.type == "category"]
    # keep_empty_features: a column that is all-missing in training still occupies its
    # place, so the forest's feature indexes keep meaning the schema's columns.
    impute = ColumnTransformer(
        [
            ("number", SimpleImputer(strategy="median", keep_empty_features=True), numbers),
            (
                "category",
                SimpleImputer(strategy="most_frequent", keep_empty_features=True),
                categories,
            ),
        ]
    )
    forest = RandomForestRegressor(
        n_estimators=params.n_estimators,
        max_depth=params.max_depth,
        min_samples_leaf=params.min_samples_leaf,
        max_features=params.max_features,
        random_state=params.random_state,
        # Trees are built on all cores; the result does not depend on n_jobs (each
        # tree's seed is drawn up front), which the determinism test checks.
        n_jobs=-1,
    )
    return Pipeline([("impute", impute), ("forest", forest)])


def fit(pipeline: Pipeline, x: np.ndarray, y: np.ndarray) -> Pipeline:
    pipeline.fit(x, y)
    # Predict single-threaded: serving scores one row at a time, where a thread pool
    # costs more than it saves, and the pickle must not depend on the training machine.
    pipeline.set_params(forest__n_jobs=None)
    return pipeline


def dumps(pipeline: Pipeline) -> bytes:
    return pickle.dumps(pipeline, protocol=PICKLE_PROTOCOL)


def scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    return {
        "mae": float(mean_absolute_error(y_true, y_pred)),
        "rmse": float(np.sqrt(mean_squared_error(y_true, y_pred))),
        "r2": float(r2_score(y_true, y_pred)),
    }


def evaluate(
    pipeline: Pipeline,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    test_size: float,
) -> tuple[dict[str, Any], np.ndarray]:
    """Holdout metrics of the model and of a mean predictor; also the model's predictions."""
    predictions = pipeline.predict(x_test)
    dummy = DummyRegressor(strategy="mean").fit(x_train, y_train)
    metrics = {
        "model": scores(y_test, predictions),
        "baseline": {**scores(y_test, dummy.predict(x_test)), "strategy": "mean"},
        "train_rows": int(len(y_train)),
        "test_rows": int(len(y_test)),
        "test_size": test_size,
    }
    return metrics, predictions
