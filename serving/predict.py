"""The predict path shared by ``/predict`` and the Open Inference Protocol's ``infer``.

Everything it touches was built at load time (the parser, the encoder, the onnxruntime
session, the metric children); per request it allocates the parsed records, the float32
matrix of them and the answer.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from serving.loader import LoadedModel
from serving.metrics import ServingMetrics
from serving.runtime import Prediction


def run(
    model: LoadedModel,
    records: list[dict[str, Any]],
    matrix: np.ndarray,
    metrics: ServingMetrics,
    *,
    probabilities: bool = False,
) -> Prediction:
    """Predict validated ``records`` (``matrix`` is their float32 encoding)."""
    prediction = model.runtime.predict(matrix, probabilities=probabilities)
    # The one place where the validated records and their predictions are both at hand:
    # inference capture hooks in here.
    metrics.observe_predictions(prediction.values)
    return prediction


def probability_maps(model: LoadedModel, proba: np.ndarray) -> list[dict[str, float]]:
    """Per record, ``{label: probability}`` (labels as strings: they are JSON keys)."""
    keys = [str(label) for label in model.manifest.labels or ()]
    return [dict(zip(keys, row, strict=True)) for row in proba.tolist()]
