"""The model runtime: the one small interface between the service and a model format.

The service only ever calls ``predict(matrix)`` on a float matrix in the feature schema's
column order (built by :class:`mlops_core.features.FeatureEncoder`). scikit-learn pickles
are the first implementation; an onnxruntime session can sit behind the same interface.
"""

from __future__ import annotations

import pickle
import re
from typing import Protocol, runtime_checkable

import numpy as np
import sklearn

from mlops_core.artifacts import Manifest, sha256_bytes
from mlops_core.errors import IntegrityError, InvalidInput

SKLEARN_FORMAT = "sklearn-pickle"
_MINOR_RE = re.compile(r"^(\d+)\.(\d+)")


@runtime_checkable
class ModelRuntime(Protocol):
    """What serving needs from a model: a float matrix in, one prediction per row out."""

    format: str
    #: True: predict() is slow enough, and releases the GIL, so the service runs it on a
    #: worker thread (concurrent requests use every core; the event loop stays free).
    #: False: it is cheaper than a thread hand-off, so it runs inline.
    offload: bool

    def predict(self, matrix: np.ndarray) -> np.ndarray: ...


class SklearnRuntime:
    """A fitted scikit-learn estimator (usually a Pipeline) called on numpy arrays."""

    format = SKLEARN_FORMAT
    # A forest walks its trees in Cython without the GIL, taking milliseconds per call.
    offload = True

    def __init__(self, estimator: object):
        if not callable(getattr(estimator, "predict", None)):
            raise InvalidInput(
                f"the unpickled model is a {type(estimator).__name__}, which has no predict()",
                hint="the model file must hold a fitted scikit-learn estimator or Pipeline",
            )
        self.estimator = estimator

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        return np.asarray(self.estimator.predict(matrix), dtype=np.float64).reshape(-1)


def minor_version(version: str) -> tuple[int, int] | None:
    m = _MINOR_RE.match(version)
    return (int(m.group(1)), int(m.group(2))) if m else None


def trained_sklearn_version(manifest: Manifest) -> str | None:
    """The scikit-learn version the manifest records (key ``scikit-learn`` or ``sklearn``)."""
    return manifest.runtime.get("scikit-learn") or manifest.runtime.get("sklearn")


def check_sklearn_compatible(manifest: Manifest, running: str = sklearn.__version__) -> None:
    """Refuse a pickle from another scikit-learn minor version.

    Pickles are only guaranteed to load and predict identically on the version that
    wrote them; patch releases keep the format, minor releases may not.
    """
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


def load_runtime(manifest: Manifest, model_bytes: bytes, expected_sha256: str) -> ModelRuntime:
    """Build the runtime from the model file's bytes, whose digest the caller has checked.

    The digest is checked again here, on the exact bytes that get unpickled, so nothing
    can change the file between verification and loading.
    """
    actual = sha256_bytes(model_bytes)
    if actual != expected_sha256:
        raise IntegrityError(
            f"{manifest.model_file} has sha256 {actual[:12]}…, expected {expected_sha256[:12]}…",
            where=f"model {manifest.project} {manifest.version}",
            hint="the file changed after it was published; republish or restore it",
        )
    if manifest.model_format != SKLEARN_FORMAT:
        raise InvalidInput(
            f"unsupported model format {manifest.model_format!r}",
            where=f"model {manifest.project} {manifest.version}",
            hint=f"this service loads {SKLEARN_FORMAT!r} models",
        )
    check_sklearn_compatible(manifest)
    return SklearnRuntime(pickle.loads(model_bytes))  # noqa: S301 - digest verified above
