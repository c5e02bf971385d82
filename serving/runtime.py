"""The model runtime: the one small interface between the service and a model format.

The service calls ``predict(matrix)`` on a float32 matrix in the feature schema's column
order (built by :class:`mlops_core.features.FeatureEncoder`) and gets one prediction per
row: a number (regression) or a class label (classification), and, when asked, each
class's probability. Two formats can be served, neither of which can execute code when
loaded (:mod:`mlops_core.modelformat`):

- ``onnx``: :class:`OnnxRuntime`, an onnxruntime session, the normal case. One row takes
  a few microseconds (scikit-learn's per-call overhead is ~2 ms), so it runs inline on
  the event loop: a thread hand-off would cost more than the call.
- ``skops``: :class:`SkopsRuntime`, for an estimator ONNX cannot express: the skops file
  is loaded with an explicit list of trusted types (never a pickle), and predicts with
  scikit-learn, which must be the minor version it was trained with.

Session options, chosen for a one-row hot path in a service that runs one process per
core (:mod:`serving.server`):

- ``intra_op_num_threads = 1``, ``inter_op_num_threads = 1``, sequential execution: the
  graph is a short chain (imputers, one tree-ensemble node) and one row is microseconds
  of work; a thread pool would only add hand-offs and contend with the other workers.
- spinning off: an idle worker thread would otherwise spin on a core another process
  needs.
- ``ORT_ENABLE_ALL`` graph optimisation: done once, at load.
- the CPU memory arena and memory patterns stay on (the defaults), so the buffers a run
  needs are reused from one request to the next rather than allocated each time.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from mlops_core.artifacts import Manifest, sha256_bytes
from mlops_core.errors import IntegrityError, InvalidInput
from mlops_core.modelformat import (
    ONNX_INPUT,
    ONNX_LABEL_OUTPUT,
    ONNX_PROBABILITIES_OUTPUT,
    ONNX_REGRESSION_OUTPUT,
    check_servable,
)

_MINOR_RE = re.compile(r"^(\d+)\.(\d+)")

#: Every type a skops model file may contain: the pipelines training builds (imputation,
#: column routing, random forests of decision trees) and the numpy types they hold.
#: Anything else in the file is refused by name before loading.
SKOPS_TRUSTED_TYPES: tuple[str, ...] = (
    "numpy.dtype",
    "numpy.ndarray",
    "sklearn.compose._column_transformer.ColumnTransformer",
    "sklearn.ensemble._forest.RandomForestClassifier",
    "sklearn.ensemble._forest.RandomForestRegressor",
    "sklearn.impute._base.SimpleImputer",
    "sklearn.pipeline.Pipeline",
    "sklearn.tree._classes.DecisionTreeClassifier",
    "sklearn.tree._classes.DecisionTreeRegressor",
    "sklearn.tree._tree.Tree",
)


@dataclass(frozen=True)
class Prediction:
    """One call's answer: a value or label per row, and class probabilities if asked."""

    values: list[Any]
    probabilities: np.ndarray | None = None


class ModelRuntime(Protocol):
    """What serving needs from a model: a float32 matrix in, one prediction per row out."""

    format: str
    #: The runtime and its version, for /v2/models and the model info metric.
    platform: str

    def predict(self, matrix: np.ndarray, *, probabilities: bool = False) -> Prediction: ...


def session_options() -> Any:
    """onnxruntime options for a one-row hot path (see the module docstring)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only: warnings are about unused initialisers
    return options


def new_session(model_bytes: bytes) -> Any:
    """An onnxruntime session on the CPU for ``model_bytes`` (training's parity gate runs
    its comparison through this too, so it checks exactly what serving runs)."""
    import onnxruntime as ort

    return ort.InferenceSession(model_bytes, session_options(), providers=["CPUExecutionProvider"])


def onnxruntime_version() -> str:
    import onnxruntime as ort

    return f"onnxruntime {ort.__version__}"


class OnnxRuntime:
    format = "onnx"

    def __init__(self, model_bytes: bytes, manifest: Manifest):
        where = f"model {manifest.project} {manifest.version}"
        try:
            self.session = new_session(model_bytes)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise InvalidInput(
                f"onnxruntime cannot load {manifest.model_file}: {str(exc)[:300]}",
                where=where,
                hint="retrain with 'mlopsctl train' on the serving image's versions",
            ) from None
        self.platform = onnxruntime_version()
        self.classifier = manifest.task == "classification"
        inputs = self.session.get_inputs()
        outputs = {o.name for o in self.session.get_outputs()}
        wanted = (
            {ONNX_LABEL_OUTPUT, ONNX_PROBABILITIES_OUTPUT}
            if self.classifier
            else {ONNX_REGRESSION_OUTPUT}
        )
        n = len(manifest.features)
        if (
            len(inputs) != 1
            or inputs[0].name != ONNX_INPUT
            or inputs[0].type != "tensor(float)"
            or inputs[0].shape[1:] != [n]
            or not wanted <= outputs
        ):
            raise InvalidInput(
                f"{manifest.model_file} does not have the interface serving expects: one "
                f"float input {ONNX_INPUT!r} of {n} columns and outputs {sorted(wanted)}",
                where=where,
                hint="retrain with 'mlopsctl train', which exports that interface",
            )
        self._input = ONNX_INPUT
        self._values = [ONNX_LABEL_OUTPUT if self.classifier else ONNX_REGRESSION_OUTPUT]
        self._both = [ONNX_LABEL_OUTPUT, ONNX_PROBABILITIES_OUTPUT]

    def predict(self, matrix: np.ndarray, *, probabilities: bool = False) -> Prediction:
        if probabilities and self.classifier:
            labels, proba = self.session.run(self._both, {self._input: matrix})
            return Prediction(labels.tolist(), proba)
        (out,) = self.session.run(self._values, {self._input: matrix})
        return Prediction(out.reshape(-1).tolist())


class SkopsRuntime:
    format = "skops"

    def __init__(self, model_bytes: bytes, manifest: Manifest):
        import sklearn
        import skops.io

        check_sklearn_compatible(manifest)
        where = f"model {manifest.project} {manifest.version}"
        try:
            found = skops.io.get_untrusted_types(data=model_bytes)
        except Exception as exc:
            raise InvalidInput(
                f"{manifest.model_file} is not a readable skops file: {str(exc)[:200]}",
                where=where,
            ) from None
        unexpected = sorted(set(found) - set(SKOPS_TRUSTED_TYPES))
        if unexpected:
            raise InvalidInput(
                f"{manifest.model_file} contains types serving does not trust: "
                f"{', '.join(unexpected[:10])}",
                where=where,
                hint="only the pipelines 'mlopsctl train' builds are served from skops files",
            )
        self.estimator = skops.io.loads(model_bytes, trusted=sorted(found))
        self.platform = f"scikit-learn {sklearn.__version__}"
        self.classifier = manifest.task == "classification"

    def predict(self, matrix: np.ndarray, *, probabilities: bool = False) -> Prediction:
        values = self.estimator.predict(matrix)
        if not self.classifier:
            values = np.asarray(values, dtype=np.float64)
        proba = self.estimator.predict_proba(matrix) if probabilities and self.classifier else None
        return Prediction(values.reshape(-1).tolist(), proba)


def minor_version(version: str) -> tuple[int, int] | None:
    m = _MINOR_RE.match(version)
    return (int(m.group(1)), int(m.group(2))) if m else None


def trained_sklearn_version(manifest: Manifest) -> str | None:
    """The scikit-learn version the manifest records (key ``scikit-learn`` or ``sklearn``)."""
    return manifest.runtime.get("scikit-learn") or manifest.runtime.get("sklearn")


def check_sklearn_compatible(manifest: Manifest, running: str | None = None) -> None:
    """Refuse a scikit-learn model (skops) from another scikit-learn minor version.

    Estimators are only guaranteed to load and predict identically on the version that
    wrote them; patch releases keep the format, minor releases may not. (ONNX models do
    not depend on scikit-learn at all.)
    """
    if running is None:
        import sklearn

        running = sklearn.__version__
    trained = trained_sklearn_version(manifest)
    where = f"model {manifest.project} {manifest.version}"
    if trained is None:
        raise InvalidInput(
            "the manifest does not record the scikit-learn version the model was trained with",
            where=where,
            hint="retrain with 'mlopsctl train', which records runtime['scikit-learn']",
        )
    if minor_version(trained) is None or minor_version(trained) != minor_version(running):
        raise InvalidInput(
            f"the model was trained with scikit-learn {trained}, this service runs "
            f"scikit-learn {running}; minor versions must match",
            where=where,
            hint="retrain with the serving image's scikit-learn, or deploy a serving image "
            f"built with scikit-learn {trained}",
        )


_RUNTIMES: dict[str, Callable[[bytes, Manifest], ModelRuntime]] = {
    "onnx": OnnxRuntime,
    "skops": SkopsRuntime,
}


def load_runtime(manifest: Manifest, model_bytes: bytes, expected_sha256: str) -> ModelRuntime:
    """Build the runtime from the model file's bytes, whose digest the caller has checked.

    The digest is checked again here, on the exact bytes that get loaded, so nothing can
    change the file between verification and loading. Only formats that cannot execute
    code are loaded (:func:`mlops_core.modelformat.check_servable`); the format is the
    manifest's, never guessed or switched.
    """
    actual = sha256_bytes(model_bytes)
    if actual != expected_sha256:
        raise IntegrityError(
            f"{manifest.model_file} has sha256 {actual[:12]}…, expected {expected_sha256[:12]}…",
            where=f"model {manifest.project} {manifest.version}",
            hint="the file changed after it was published; republish or restore it",
        )
    check_servable(manifest)
    return _RUNTIMES[manifest.model_format](model_bytes, manifest)
