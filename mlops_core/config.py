"""The platform's configuration: one pydantic-settings object, read where a process starts
and passed down.

The edges that build it: ``mlopsctl`` (once per invocation, :func:`mlopsctl.context.settings`),
``mlopsctl controller run``, serving's entry point (from the same mapping as its own
settings), the drift job and the local data plane. Everything below them takes a
:class:`~mlops_core.naming.Platform` (or the values it needs) as an argument; no
constructor reads the environment.

Every field names its variable explicitly (``validation_alias``), so the component
settings that extend this class (the controller's ``MLOPS_CONTROLLER_*``, the drift job's
``MLOPS_DRIFT_*``) read the platform's variables under the same names. ``AWS_*`` variables
other than the region (credentials, endpoint, ``AWS_MAX_ATTEMPTS``) belong to the AWS SDK's
own configuration chain and stay there; ``MLFLOW_TRACKING_URI`` is MLflow's own name.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import AliasChoices, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from mlops_core.errors import InvalidInput
from mlops_core.naming import (
    DEFAULT_OBJECT_LOCK_DAYS,
    DEFAULT_PLATFORM,
    DEFAULT_REGION,
    PLATFORM_RE,
    Platform,
    artifact_bucket_name,
    os_user,
)

LoadBalancers = Literal["none", "terraform", "managed"]
LB_MODES: tuple[str, ...] = ("none", "terraform", "managed")

_HINTS: dict[str, str] = {
    "MLOPS_PLATFORM": "use 3-22 lowercase letters, digits and '-'",
    "MLOPS_OBJECT_LOCK_DAYS": "a whole number of days (0 turns retention off)",
    "MLOPS_LOAD_BALANCERS": "terraform (the module's load balancers), managed (the "
    "controller creates them) or none",
    "MLOPS_ASSIGN_PUBLIC_IP": "true or false",
    "MLOPS_LOG_FORMAT": "json or console",
}


def _split(value: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in value.split(",") if x.strip())


class PlatformSettings(BaseSettings):
    """What every component of the platform is configured with (``MLOPS_*``)."""

    model_config = SettingsConfigDict(
        extra="ignore", frozen=True, env_ignore_empty=True, populate_by_name=True
    )

    platform: str = Field(
        DEFAULT_PLATFORM,
        validation_alias="MLOPS_PLATFORM",
        pattern=PLATFORM_RE.pattern,
        description="Terraform's var.platform: the prefix of every name.",
    )
    artifact_bucket: str | None = Field(
        None,
        validation_alias="MLOPS_ARTIFACT_BUCKET",
        description="The artifact bucket (default: {platform}-artifacts).",
    )
    region: str = Field(
        DEFAULT_REGION, validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION")
    )
    signing_key: str = Field(
        "", validation_alias="MLOPS_SIGNING_KEY", description="Model-signing KMS key."
    )
    promotion_key: str = Field(
        "", validation_alias="MLOPS_PROMOTION_KEY", description="Promotion-signing KMS key."
    )
    object_lock_days: int = Field(
        DEFAULT_OBJECT_LOCK_DAYS, ge=0, validation_alias="MLOPS_OBJECT_LOCK_DAYS"
    )
    actor: str = Field(
        "",
        validation_alias="MLOPS_ACTOR",
        description="Who this process acts as in records (default: the OS user).",
    )
    log_level: str = Field("INFO", validation_alias="MLOPS_LOG_LEVEL")
    log_format: Literal["json", "console"] | None = Field(
        None, validation_alias="MLOPS_LOG_FORMAT", description="Default: console on a TTY."
    )
    # Where Fargate tasks run: Terraform's outputs (controller_environment).
    subnets: str = Field("", validation_alias="MLOPS_SUBNETS", description="Comma-separated.")
    security_groups: str = Field("", validation_alias="MLOPS_SECURITY_GROUPS")
    assign_public_ip: bool = Field(False, validation_alias="MLOPS_ASSIGN_PUBLIC_IP")
    execution_role_arn: str | None = Field(None, validation_alias="MLOPS_EXECUTION_ROLE_ARN")
    task_role_arn: str | None = Field(None, validation_alias="MLOPS_TASK_ROLE_ARN")
    infrastructure_role_arn: str | None = Field(
        None,
        validation_alias="MLOPS_ECS_INFRASTRUCTURE_ROLE_ARN",
        description="The role ECS shifts traffic with (Canary, Linear, BlueGreen).",
    )
    load_balancers: LoadBalancers = Field("none", validation_alias="MLOPS_LOAD_BALANCERS")
    health_check_grace_seconds: int = Field(
        60,
        ge=0,
        le=2_147_483_647,
        validation_alias="MLOPS_HEALTH_CHECK_GRACE_SECONDS",
        description="How long ECS ignores a new task's failing health checks while its "
        "model loads (healthCheckGracePeriodSeconds of the services the controller makes).",
    )
    # Where cost estimates take their prices (mlops_core.cost.prices).
    prices: Literal["auto", "api", "table"] = Field("auto", validation_alias="MLOPS_PRICES")
    price_cache_seconds: float = Field(86400.0, ge=0, validation_alias="MLOPS_PRICE_CACHE_SECONDS")
    price_retry_seconds: float = Field(3600.0, ge=0, validation_alias="MLOPS_PRICE_RETRY_SECONDS")
    # A price table file used instead of the shipped one (mlops_core.cost.prices.load_table).
    price_table: Path | None = Field(None, validation_alias="MLOPS_PRICE_TABLE")
    # The CLI's defaults.
    serving_image: str | None = Field(None, validation_alias="MLOPS_SERVING_IMAGE")
    training_image: str | None = Field(None, validation_alias="MLOPS_TRAINING_IMAGE")
    deploy_source: str = Field("s3", validation_alias="MLOPS_DEPLOY_SOURCE")
    tracking_uri: str | None = Field(None, validation_alias="MLFLOW_TRACKING_URI")
    dev_state_dir: Path | None = Field(
        None,
        validation_alias="MLOPS_STATE_DIR",
        description="Where `mlopsctl dev` keeps its state.",
    )

    @classmethod
    def load(cls, **overrides: object) -> Self:
        """The settings from the process environment, with ``overrides`` by field name
        (None: not given); a bad value is an :class:`InvalidInput` naming its variable."""
        try:
            given: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
            return cls(**given)
        except ValidationError as exc:
            raise settings_error(cls, exc) from None

    # -- what the components are built from ---------------------------------------------
    def names(self) -> Platform:
        return Platform(
            platform=self.platform,
            artifact_bucket=self.artifact_bucket or artifact_bucket_name(self.platform),
            region=self.region,
            signing_key=self.signing_key.strip(),
            promotion_log_key=self.promotion_key.strip(),
            object_lock_days=self.object_lock_days,
            actor=self.actor.strip() or os_user(),
        )

    @property
    def subnet_ids(self) -> tuple[str, ...]:
        return _split(self.subnets)

    @property
    def security_group_ids(self) -> tuple[str, ...]:
        return _split(self.security_groups)

    @property
    def log_json(self) -> bool | None:
        """JSON logs if asked; None: decide by whether stderr is a terminal."""
        return None if self.log_format is None else self.log_format == "json"


def settings_error(
    cls: type[BaseSettings], exc: ValidationError, hint: str | None = None
) -> InvalidInput:
    """``exc`` from building ``cls`` from the environment, as one line naming the
    variable (its alias, else the class' ``env_prefix`` and the field) and its value."""
    err = exc.errors()[0]
    name = str(err["loc"][0]) if err["loc"] else ""
    f = cls.model_fields.get(name)
    alias = f.validation_alias if f is not None else None
    if isinstance(alias, AliasChoices):
        alias = alias.choices[0]
    prefix = str(cls.model_config.get("env_prefix") or "")
    variable = str(alias or (f"{prefix}{name}".upper() if prefix else name))
    value = os.environ.get(variable, err.get("input"))
    msg = err["msg"].removeprefix("Value error, ")
    return InvalidInput(
        f"invalid value {value!r}: {msg}",
        where=variable,
        hint=hint or _HINTS.get(variable, "fix or unset the variable"),
    )
