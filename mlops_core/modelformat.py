"""Which model versions may be published and served: formats that cannot execute code.

Serving loads ``model.onnx`` (run by onnxruntime) or, for an estimator ONNX cannot
express, ``model.skops`` (loaded with an explicit list of trusted types). ``model.pkl``
stays in every version folder for notebooks and retraining, and is never loaded by
serving: unpickling runs whatever code the file names.

An ONNX model is served only if training's **parity gate** passed: onnxruntime's
predictions equal scikit-learn's on the holdout rows and on adversarial rows (values at
and one float32 ULP either side of every sampled split threshold, large magnitudes,
missing values), within :data:`REGRESSION_RTOL`/:data:`REGRESSION_ATOL_SCALE` for
regression and with zero label flips for classification. The report is ``metrics.json``'s
``parity`` section (:class:`ParityReport`). :func:`check_servable` is the one rule, used
by ``publish`` and by serving, so a version serving would refuse is never published.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlops_core.artifacts import FORMAT_FILES, Manifest
from mlops_core.errors import GateFailed, IntegrityError, InvalidInput
from mlops_core.project import Task

SERVABLE_FORMATS = ("onnx", "skops")

# The ONNX graph's interface, written by training's export and checked by serving.
ONNX_INPUT = "input"
ONNX_REGRESSION_OUTPUT = "variable"
ONNX_LABEL_OUTPUT = "label"
ONNX_PROBABILITIES_OUTPUT = "probabilities"

#: Regression parity: |onnx - sklearn| <= RTOL * |sklearn| + ATOL_SCALE * max|training
#: target|. onnxruntime sums the trees' float32 leaf values, scikit-learn their float64
#: ones: a 50-tree forest differs by a few float32 epsilons (1.2e-7) relative, so these
#: bounds are ~30x the rounding and far below any real disagreement (a different leaf).
REGRESSION_RTOL = 1e-5
REGRESSION_ATOL_SCALE = 1e-6
#: Classification parity: probabilities within this (float32 sums of up to 2,000 trees'
#: leaf probabilities stay below it), and no label differs except where scikit-learn's
#: two best classes are tied within it (a tie either way is the same model; such rows
#: are counted as ``near_ties`` and reported, not failed).
PROBABILITY_ATOL = 1e-4


class ParityCheck(BaseModel):
    """One input set's comparison (the holdout, or the adversarial rows)."""

    model_config = ConfigDict(extra="forbid")

    rows: int
    max_abs_diff: float = Field(description="Largest |onnx - sklearn| (value or probability).")
    max_rel_diff: float | None = Field(None, description="Regression: largest relative diff.")
    violations: int = Field(
        description="Regression: rows beyond the tolerance; classification: label flips."
    )
    near_ties: int = Field(0, description="Classification: label differences at a tie.")


class ParityReport(BaseModel):
    """``metrics.json``'s ``parity``: model.onnx compared with the scikit-learn pipeline."""

    model_config = ConfigDict(extra="forbid")

    passed: bool
    task: Task
    runtime: str = Field(description="onnxruntime version the comparison ran on")
    tolerance: dict[str, float]
    holdout: ParityCheck
    adversarial: ParityCheck
    thresholds: dict[str, int] = Field(
        default_factory=dict, description="Split thresholds probed (sampled of total)."
    )
    worst: dict[str, Any] | None = Field(
        None, description="The row with the largest disagreement, for the report."
    )

    def describe(self) -> str:
        what = (
            "rows beyond tolerance"
            if self.task == "regression"
            else "rows with a flipped label or a probability beyond tolerance"
        )
        parts = [
            f"{name}: {c.violations} {what} of {c.rows}, max diff {c.max_abs_diff:.3g}"
            for name, c in (("holdout", self.holdout), ("adversarial", self.adversarial))
        ]
        tol = ", ".join(f"{k} {v:g}" for k, v in self.tolerance.items())
        return f"{'; '.join(parts)} (tolerance {tol}; {self.runtime})"


def parity_report(manifest: Manifest) -> ParityReport | None:
    raw = manifest.metrics.get("parity")
    if raw is None:
        return None
    try:
        return ParityReport.model_validate(raw)
    except ValidationError as exc:
        raise InvalidInput(
            f"metrics.json's parity report is malformed: {exc.errors()[0]['msg']}",
            where=f"model {manifest.project} {manifest.version}",
            hint="retrain with 'mlopsctl train', which writes the report",
        ) from None


def check_servable(manifest: Manifest) -> None:
    """Refuse a version that serving must not load. Raises InvalidInput (pickle only,
    inconsistent manifest), IntegrityError (the served file is not listed) or GateFailed
    (model.onnx failed the parity gate, with the report)."""
    where = f"model {manifest.project} {manifest.version}"
    fmt = manifest.model_format
    if fmt not in SERVABLE_FORMATS:
        raise InvalidInput(
            f"the only loadable form of this model is a pickle ({manifest.model_file}); "
            "serving never unpickles, because loading a pickle runs code",
            where=where,
            hint="retrain with 'mlopsctl train', which exports model.onnx (or model.skops "
            "for an estimator ONNX cannot express) next to model.pkl",
        )
    if manifest.model_file != FORMAT_FILES[fmt]:
        raise InvalidInput(
            f"model format {fmt!r} is stored as {FORMAT_FILES[fmt]}, "
            f"but the manifest names {manifest.model_file!r}",
            where=where,
            hint="retrain with 'mlopsctl train'",
        )
    if manifest.model_file not in manifest.files:
        raise IntegrityError(
            f"the manifest does not list {manifest.model_file} with its sha256", where=where
        )
    if (manifest.labels is None) != (manifest.task == "regression"):
        raise InvalidInput(
            f"a {manifest.task} manifest "
            + ("must list its class labels" if manifest.labels is None else "lists labels"),
            where=where,
            hint="retrain with 'mlopsctl train'",
        )
    if fmt != "onnx":
        return
    report = parity_report(manifest)
    if report is None:
        raise GateFailed(
            "model.onnx has no parity report: nothing shows that onnxruntime predicts "
            "what scikit-learn does",
            where=where,
            hint="retrain with 'mlopsctl train', which runs the parity gate",
        )
    if not report.passed or report.task != manifest.task:
        raise GateFailed(
            f"model.onnx failed the parity gate against scikit-learn: {report.describe()}",
            where=where,
            hint="serving will not run a model whose ONNX export disagrees with the "
            "trained pipeline; retrain (another seed or depth), and report the export bug "
            "with metrics.json",
        )
