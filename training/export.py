"""The served forms of a fitted pipeline: ``model.onnx`` (skl2onnx), else ``model.skops``.

ONNX is exported with a float32 input (``FloatTensorType``): skl2onnx's double-precision
path builds tree-ensemble nodes that onnxruntime does not load, and scikit-learn itself
compares each feature as float32 against the split thresholds. skl2onnx stores each
threshold as the largest float32 not above scikit-learn's float64 threshold, so
``float32(x) <= threshold`` decides identically in both; the parity gate
(:mod:`training.parity`) checks that at and one ULP either side of the thresholds.
Classifiers are exported without ZipMap: a label tensor and a probability matrix, which
serving reads directly.

An estimator skl2onnx has no converter for is saved with skops instead (trusted types
are checked by serving, :data:`serving.runtime.SKOPS_TRUSTED_TYPES`). The ONNX form is
byte-for-byte deterministic for the same fitted model, so the version id stays
content-derived; skops names its entries by object id, so a skops version's id differs
between two identical trainings (the rare fallback only).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.pipeline import Pipeline

from mlops_core.artifacts import ModelFormat
from mlops_core.features import FeatureSpec
from mlops_core.logs import get_logger
from mlops_core.modelformat import ONNX_INPUT, ParityReport

#: Pinned opsets: the default (newest) ai.onnx.ml opset may use tree-ensemble operators
#: older onnxruntime builds lack; opset 3 of ai.onnx.ml has TreeEnsembleRegressor/
#: Classifier with float thresholds, which every onnxruntime since 1.x runs.
TARGET_OPSET = {"": 18, "ai.onnx.ml": 3}

log = get_logger("training.export")


@dataclass(frozen=True)
class Exported:
    format: ModelFormat
    data: bytes
    #: Why ONNX was not possible, when format is "skops".
    onnx_error: str | None = None


def to_onnx(pipeline: Pipeline, n_features: int, *, classifier: bool) -> bytes:
    from skl2onnx import to_onnx as convert
    from skl2onnx.common.data_types import FloatTensorType

    # zipmap off: a probabilities tensor rather than a list of {label: p} maps.
    from training.parity import final_estimator

    options = {id(final_estimator(pipeline)): {"zipmap": False}} if classifier else None
    onx = convert(
        pipeline,
        initial_types=[(ONNX_INPUT, FloatTensorType([None, n_features]))],
        target_opset=TARGET_OPSET,
        options=options,
    )
    return onx.SerializeToString()


def to_skops(pipeline: Pipeline) -> bytes:
    import skops.io

    return skops.io.dumps(pipeline)


def export(pipeline: Pipeline, n_features: int, *, classifier: bool) -> Exported:
    """``model.onnx`` when skl2onnx can express the pipeline, else ``model.skops``."""
    try:
        return Exported("onnx", to_onnx(pipeline, n_features, classifier=classifier))
    except (RuntimeError, NotImplementedError) as exc:
        # skl2onnx's "no converter" errors (MissingConverter, MissingShapeCalculator, and
        # converters refusing a configuration such as a FunctionTransformer) are these.
        reason = str(exc).strip().splitlines()[0][:200]
        log.warning("no ONNX converter: saving model.skops instead", reason=reason)
        return Exported("skops", to_skops(pipeline), onnx_error=reason)


def export_checked(
    pipeline: Pipeline,
    x_holdout: np.ndarray,
    features: list[FeatureSpec],
    *,
    classifier: bool,
    target_scale: float,
    seed: int = 0,
) -> tuple[Exported, ParityReport | None]:
    """The served form of ``pipeline`` and, for ONNX, its parity report on ``x_holdout``
    (see :mod:`training.parity`): what training writes, and what tests and benchmarks
    that build versions by other means use too."""
    from training import parity

    exported = export(pipeline, len(features), classifier=classifier)
    if exported.format != "onnx":
        return exported, None
    report = parity.compare(
        pipeline,
        exported.data,
        x_holdout,
        features,
        classifier=classifier,
        target_scale=target_scale,
        seed=seed,
    )
    return exported, report
