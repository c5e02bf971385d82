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


class ModelParams(_Strict):
    """RandomForestRegressor hyper-parameters.

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


class Gates(_Strict):
    """Promotion gates: all must pass before a version's pointer is moved."""

    min_r2: float | None = Field(0.5, le=1.0, description="Minimum holdout R².")
    max_mae: float | None = Field(None, gt=0, description="Maximum holdout MAE.")
    must_beat_baseline: bool = Field(True, description="R² above the DummyRegressor's.")
    max_regression: float = Field(
        0.02,
        ge=0,
        description="Largest allowed drop in R² against the env's current version.",
    )


class ProjectConfig(_Strict):
    name: str = Field(pattern=PROJECT_RE.pattern)
    description: str = ""
    data: DataSource
    target: str
    features: list[FeatureSpec] = Field(min_length=1)
    model: ModelParams = ModelParams()
    evaluation: Evaluation = Evaluation()
    gates: Gates = Gates()
    envs: list[str] = Field(default_factory=lambda: list(DEFAULT_ENVS), min_length=1)

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
