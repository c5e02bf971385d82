"""``project.yaml``: what a project trains on, what it predicts, and its quality gates."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mlops_core.errors import InvalidInput
from mlops_core.features import FeatureSpec
from mlops_core.naming import DEFAULT_ENVS, ENV_RE, PROJECT_RE
from mlops_core.yamlio import load_yaml_file

PROJECT_FILE = "project.yaml"
ARTIFACTS_DIR = "artifacts"  # where `mlopsctl train` writes and `publish` reads, per project


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataSource(_Strict):
    source: str = Field(description="CSV path (relative to the project) or s3:// URI.")


Task = Literal["regression", "classification"]
TASKS: tuple[Task, ...] = ("regression", "classification")


class ModelParams(_Strict):
    """Random forest hyper-parameters (a regressor or a classifier, by the project's task).

    Defaults keep the model small at the same accuracy. Measured on the usedcar-price
    example (20k rows, ``benchmarks/model_size.py``): a fully grown 100-tree forest
    pickles to 145 MB at holdout R² 0.849; these defaults (50 trees, depth 14, leaves of
    at least 3 rows) to 15 MB at R² 0.847, and predict in half the tree walks.
    """

    type: Literal["random_forest"] = "random_forest"
    n_estimators: int = Field(50, ge=1, le=2000)
    max_depth: int | None = Field(14, ge=1, le=100)
    min_samples_leaf: int = Field(3, ge=1)
    max_features: float | Literal["sqrt", "log2"] | None = 1.0
    random_state: int = 42


class Evaluation(_Strict):
    test_size: float = Field(0.2, gt=0.0, lt=0.9)


#: Gates that apply to one task only; the others apply to both.
REGRESSION_GATES = ("min_r2", "max_mae")
CLASSIFICATION_GATES = ("min_accuracy", "min_f1", "min_auc", "max_log_loss")
#: The regression default for min_r2, used when a regression project does not set it.
DEFAULT_MIN_R2 = 0.5


class Gates(_Strict):
    """Promotion gates: all must pass before a version's pointer is moved.

    ``min_r2``/``max_mae`` judge regression models; ``min_accuracy``, ``min_f1`` (macro),
    ``min_auc`` (ROC AUC, one-vs-rest for more than two classes) and ``max_log_loss``
    judge classifiers. ``must_beat_baseline`` and ``max_regression`` work on the task's
    primary metric (R² or macro F1, see :data:`mlops_core.gates.PRIMARY_METRIC`).
    """

    min_r2: float | None = Field(
        None, le=1.0, description=f"Minimum holdout R² (regression; {DEFAULT_MIN_R2} if unset)."
    )
    max_mae: float | None = Field(None, gt=0, description="Maximum holdout MAE (regression).")
    min_accuracy: float | None = Field(
        None, ge=0.0, le=1.0, description="Minimum holdout accuracy (classification)."
    )
    min_f1: float | None = Field(
        None, ge=0.0, le=1.0, description="Minimum holdout macro F1 (classification)."
    )
    min_auc: float | None = Field(
        None, ge=0.0, le=1.0, description="Minimum holdout ROC AUC (classification; OvR)."
    )
    max_log_loss: float | None = Field(
        None, gt=0, description="Maximum holdout log loss (classification)."
    )
    must_beat_baseline: bool = Field(
        True, description="Primary metric above the Dummy baseline's (mean / prior)."
    )
    max_regression: float = Field(
        0.02,
        ge=0,
        description="Largest allowed drop in the primary metric against the env's current version.",
    )

    def for_task(self, task: Task) -> Gates:
        """These gates checked against ``task``: another task's gate is an error; the
        regression default ``min_r2`` is filled in when unset."""
        other = CLASSIFICATION_GATES if task == "regression" else REGRESSION_GATES
        wrong = [name for name in other if getattr(self, name) is not None]
        if wrong:
            raise ValueError(
                f"gate(s) {', '.join(wrong)} do not apply to a {task} project "
                f"(task: {task}); {task} gates are "
                f"{', '.join(REGRESSION_GATES if task == 'regression' else CLASSIFICATION_GATES)}"
            )
        if task == "regression" and self.min_r2 is None and "min_r2" not in self.model_fields_set:
            return self.model_copy(update={"min_r2": DEFAULT_MIN_R2})
        return self


class ProjectConfig(_Strict):
    name: str = Field(pattern=PROJECT_RE.pattern)
    description: str = ""
    data: DataSource
    task: Task = Field(
        "regression",
        description="regression (a number per record) or classification (a label per "
        "record, with class probabilities).",
    )
    target: str
    features: list[FeatureSpec] = Field(min_length=1)
    model: ModelParams = ModelParams()
    evaluation: Evaluation = Evaluation()
    gates: Gates = Gates()
    envs: list[str] = Field(default_factory=lambda: list(DEFAULT_ENVS), min_length=1)
    approval_required: list[str] = Field(
        default_factory=list,
        description="Envs where each new version waits for 'mlopsctl approve' before "
        "production traffic shifts: a deployment must use a traffic-shifting strategy "
        "there and cannot set approval.required false (a rollback is never held).",
    )

    @field_validator("envs")
    @classmethod
    def _envs(cls, v: list[str]) -> list[str]:
        for env in v:
            if not ENV_RE.fullmatch(env):
                raise ValueError(f"invalid env name {env!r} (lowercase letters/digits)")
        return v

    @model_validator(mode="after")
    def _unique(self) -> ProjectConfig:
        names = [f.name for f in self.features]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"duplicate feature names: {sorted(dup)}")
        if self.target in names:
            raise ValueError(f"target {self.target!r} is also listed as a feature")
        unknown = [e for e in self.approval_required if e not in self.envs]
        if unknown:
            raise ValueError(f"approval_required names envs not in 'envs': {unknown}")
        # A gate of the other task is a mistake worth naming, not a silent no-op.
        checked = self.gates.for_task(self.task)
        if checked is not self.gates:
            self.gates = checked
        return self

    def check_env(self, env: str) -> str:
        if env not in self.envs:
            raise InvalidInput(
                f"unknown env {env!r} for project {self.name!r}",
                hint=f"use one of {self.envs} (the project's 'envs' list)",
            )
        return env


def find_project_dir(start: Path | None = None) -> Path:
    """The nearest directory at or above ``start`` holding a project.yaml."""
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / PROJECT_FILE).is_file():
            return d
    raise InvalidInput(
        f"no {PROJECT_FILE} found in {here} or its parents",
        hint="run inside a project (see 'mlopsctl init NAME') or pass --project-dir",
    )


def load_project(project_dir: Path) -> ProjectConfig:
    return load_yaml_file(project_dir / PROJECT_FILE, ProjectConfig)
