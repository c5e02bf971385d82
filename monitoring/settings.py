"""The drift job's settings: one pydantic-settings object, read once at the edge.

``MLOPS_PROJECT`` and ``MLOPS_ENV`` say what to check (the scheduled task sets them);
``MLOPS_DRIFT_*`` tune the window and the decision rules. ``mlopsctl drift`` builds the
same object with its options as overrides, so the command and the job are one code path.

A ModelDeployment's ``spec.monitoring.drift`` reaches the job through the env's live
serving revision, where the controller pins it as ``MLOPS_DRIFT_*`` variables
(:func:`with_deployed`): what the job's own environment or the command line sets wins,
the deployment's rules fill in the rest, the defaults below the remainder.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import SettingsConfigDict

from mlops_core.artifacts import VERSION_RE
from mlops_core.config import PlatformSettings
from mlops_core.drift_result import Correction, DriftConfig, NumericEffect
from mlops_core.durations import parse_duration
from mlops_core.errors import InvalidInput
from mlops_core.naming import ENV_RE, PROJECT_RE


class DriftSettings(PlatformSettings):
    """The drift job's one settings object: the platform's (:mod:`mlops_core.config`) and
    its own ``MLOPS_DRIFT_*`` rules."""

    model_config = SettingsConfigDict(
        env_prefix="MLOPS_DRIFT_", extra="ignore", frozen=True, populate_by_name=True
    )

    # The platform's own names for what to check (never a bare PROJECT or ENV variable).
    project: str | None = Field(None, validation_alias="MLOPS_PROJECT", pattern=PROJECT_RE.pattern)
    env: str | None = Field(None, validation_alias="MLOPS_ENV", pattern=ENV_RE.pattern)
    version: str | None = Field(
        None, pattern=VERSION_RE.pattern, description="Default: the env's pointer."
    )
    window: timedelta = Field(
        timedelta(hours=24), description="The window ends now and lasts this long (e.g. 24h)."
    )
    correction: Correction = "bh"
    alpha: float = Field(0.05, gt=0, lt=1)
    numeric_effect: NumericEffect = "wasserstein"
    wasserstein_threshold: float = Field(0.1, ge=0)
    psi_threshold: float = Field(0.2, ge=0)
    ks_threshold: float = Field(0.1, ge=0, le=1)
    js_threshold: float = Field(0.1, ge=0, le=1)
    missing_threshold: float = Field(0.05, ge=0, le=1)
    drift_share: float = Field(0.5, ge=0, le=1)
    min_rows: int = Field(100, ge=1)
    publish_metrics: bool = Field(True, description="Put the run's CloudWatch metrics.")

    @field_validator("window", mode="before")
    @classmethod
    def _window(cls, value: object) -> object:
        return parse_duration(value) if isinstance(value, str) else value

    def decision(self) -> DriftConfig:
        return DriftConfig(
            correction=self.correction,
            alpha=self.alpha,
            numeric_effect=self.numeric_effect,
            thresholds={
                "wasserstein": self.wasserstein_threshold,
                "psi": self.psi_threshold,
                "ks": self.ks_threshold,
                "jensen_shannon": self.js_threshold,
                "missing_rate": self.missing_threshold,
            },
            drift_share=self.drift_share,
            min_rows=self.min_rows,
        )


def with_deployed(settings: DriftSettings, deployed: dict[str, str]) -> DriftSettings:
    """``settings`` with the deployment's ``MLOPS_DRIFT_*`` rules for every field that
    neither the environment nor an option set."""
    fields = DriftSettings.model_fields
    extra: dict[str, Any] = {}
    for name, value in deployed.items():
        field = name.removeprefix("MLOPS_DRIFT_").lower()
        if field in fields and field not in settings.model_fields_set:
            extra[field] = value
    if not extra:
        return settings
    try:
        return DriftSettings.model_validate({**settings.model_dump(exclude_unset=True), **extra})
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else ""
        raise InvalidInput(
            f"the deployment's drift rules are invalid: MLOPS_DRIFT_{field.upper()}="
            f"{err.get('input')!r}: {err['msg'].removeprefix('Value error, ')}",
            where="spec.monitoring.drift (the live serving revision's MLOPS_DRIFT_*)",
            hint="fix spec.monitoring.drift; the controller validates it on apply",
        ) from None


def load_settings(**overrides: object) -> DriftSettings:
    """Settings from the environment, with explicit ``overrides`` (None = not given)."""
    given: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
    try:
        return DriftSettings(**given)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else ""
        raise InvalidInput(
            f"invalid drift settings: {field}: {err['msg'].removeprefix('Value error, ')}",
            where=f"MLOPS_DRIFT_{field.upper()}" if field not in ("project", "env") else None,
            hint="see 'mlopsctl drift --help' for the options and their environment variables",
        ) from None
