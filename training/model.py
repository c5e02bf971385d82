"""The model: an imputer and a random forest over the encoder's float matrix.

The pipeline takes exactly what :class:`mlops_core.features.FeatureEncoder` produces, in
schema order, with NaN for missing optional values; serving feeds the same matrix to
the pipeline's ONNX export. The forest is a regressor or a classifier by the project's
``task``; a classifier learns the labels themselves (numbers or strings), so
``model.pkl`` predicts them directly in a notebook.
"""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    mean_absolute_error,
    mean_squared_error,
    r2_score,
    roc_auc_score,
)
from sklearn.pipeline import Pipeline

from mlops_core.features import FeatureSpec
from mlops_core.gates import PRIMARY_METRIC
from mlops_core.project import ModelParams, Task

#: Pickle protocol of model.pkl, fixed so the bytes (and the digest) do not depend on
#: the interpreter's default.
PICKLE_PROTOCOL = 5
IMPUTATION = {"number": "median", "category": "most_frequent"}


def build_pipeline(
    params: ModelParams, features: list[FeatureSpec], task: Task = "regression"
) -> Pipeline:
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
    forest_type = RandomForestClassifier if task == "classification" else RandomForestRegressor
    forest = forest_type(
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


def classification_scores(
    y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray, labels: np.ndarray
) -> dict[str, float | None]:
    """Accuracy, balanced accuracy, macro F1, ROC AUC (binary, or one-vs-rest macro) and
    log loss. ROC AUC is None when the holdout lacks a class (it is then undefined)."""
    auc: float | None = None
    if len(np.unique(y_true)) == len(labels):
        if len(labels) == 2:
            auc = float(roc_auc_score(y_true == labels[1], proba[:, 1]))
        else:
            auc = float(roc_auc_score(y_true, proba, multi_class="ovr", labels=labels))
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
        "f1_macro": float(f1_score(y_true, y_pred, average="macro", labels=labels)),
        "roc_auc": auc,
        "log_loss": float(log_loss(y_true, proba, labels=labels)),
    }


def evaluate(
    pipeline: Pipeline,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    test_size: float,
    task: Task = "regression",
) -> tuple[dict[str, Any], np.ndarray]:
    """Holdout metrics of the model and of a Dummy baseline (the training mean, or the
    class priors); also the model's holdout predictions."""
    predictions = pipeline.predict(x_test)
    common = {
        "task": task,
        "primary_metric": PRIMARY_METRIC[task],
        "train_rows": int(len(y_train)),
        "test_rows": int(len(y_test)),
        "test_size": test_size,
    }
    if task == "regression":
        dummy = DummyRegressor(strategy="mean").fit(x_train, y_train)
        metrics = {
            "model": scores(y_test, predictions),
            "baseline": {**scores(y_test, dummy.predict(x_test)), "strategy": "mean"},
            **common,
        }
        return metrics, predictions
    labels = pipeline.classes_
    prior = DummyClassifier(strategy="prior").fit(x_train, y_train)
    matrix = confusion_matrix(y_test, predictions, labels=labels)
    metrics = {
        "model": classification_scores(y_test, predictions, pipeline.predict_proba(x_test), labels),
        "baseline": {
            **classification_scores(
                y_test, prior.predict(x_test), prior.predict_proba(x_test), labels
            ),
            "strategy": "prior",
        },
        # Rows are the true labels, columns the predicted ones, both in label order.
        "confusion_matrix": {"labels": labels.tolist(), "matrix": matrix.tolist()},
        **common,
    }
    return metrics, predictions
