"""The ``Drifted`` condition: what the newest drift result says about the live version.

The drift job (``monitoring``) writes one result per run (:mod:`mlops_core.drift_result`);
observe reads the newest one for the version the env's pointer names, for deployments
that capture traffic (``spec.monitoring.capturePercent`` > 0: without capture there is
nothing to judge). The condition is informational: drift never rolls a model back or
writes to AWS (the inputs moved, not the model); progressive delivery and retraining
read it.

    True     Drifted           the run found drift (the features, most drifted first)
    False    NoDrift           the run found none
    Unknown  InsufficientData  too few captured rows to test (never "no drift")
    Unknown  NoResult          the job has not checked this version yet
    Unknown  ResultUnreadable  the newest result could not be read (and why)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from controller.api import ConditionStatus, ModelDeploymentSpec, ModelDeploymentStatus
from controller.api import set_condition as _set
from mlops_core import aws, drift_result
from mlops_core.drift_result import DriftResult
from mlops_core.errors import MlopsError
from mlops_core.naming import Platform

DRIFTED = "Drifted"


@dataclass(frozen=True)
class DriftObservation:
    """The newest drift result of ``version`` (None: none yet), or why it is unknown."""

    version: str
    result: DriftResult | None = None
    #: s3:// URI of the run's drift.json (its report.html sits beside it).
    uri: str = ""
    error: str = ""

    @property
    def report_uri(self) -> str:
        return drift_result.report_key(self.uri) if self.uri else ""


def observe(platform: Platform, project: str, env: str, version: str) -> DriftObservation:
    """Read the newest result of ``version`` (a few LISTs and one GET). Never raises: an
    unreadable result is an observation saying why (drift is informational)."""
    try:
        found = drift_result.latest_key(platform, project, env, version)
        if found is None:
            return DriftObservation(version)
        uri = f"s3://{platform.artifact_bucket}/{found}"
        return DriftObservation(version, drift_result.read(platform, found), uri)
    except MlopsError as exc:
        return DriftObservation(version, error=exc.render())
    except Exception as exc:  # noqa: BLE001 - never block a pass or a status on it
        if aws.error_code(exc) == "NoSuchBucket":
            return DriftObservation(version)
        return DriftObservation(version, error=f"cannot read drift results: {exc}")


def monitored(spec: ModelDeploymentSpec) -> bool:
    return spec.monitoring.capture_percent > 0


def condition(obs: DriftObservation) -> tuple[ConditionStatus, str, str]:
    """(status, reason, message) of the condition for one observation."""
    v = obs.version
    if obs.error:
        return "Unknown", "ResultUnreadable", f"{v}: {obs.error}"
    result = obs.result
    if result is None:
        return "Unknown", "NoResult", f"{v}: the drift job has not checked this version yet"
    at = f"checked {result.computed_at:%Y-%m-%dT%H:%M:%SZ}"
    where = f"; report {obs.report_uri}" if obs.report_uri else ""
    if result.verdict == "insufficient_data":
        return "Unknown", "InsufficientData", f"{v}: {result.summary()}, {at}{where}"
    if result.drifted:
        return "True", "Drifted", f"{v}: {result.summary()}, {at}{where}"
    return "False", "NoDrift", f"{v}: {result.summary()}, {at}{where}"


def with_drifted(
    status: ModelDeploymentStatus,
    spec: ModelDeploymentSpec,
    obs: DriftObservation | None,
    generation: int | None,
    now: datetime | None = None,
) -> ModelDeploymentStatus:
    """``status`` with its Drifted condition set from ``obs``; without monitoring (or a
    live version to judge) there is no Drifted condition at all."""
    if not monitored(spec) or obs is None:
        kept = [c for c in status.conditions if c.type != DRIFTED]
        if len(kept) == len(status.conditions):
            return status
        return status.model_copy(update={"conditions": kept})
    value, reason, message = condition(obs)
    conditions = _set(list(status.conditions), DRIFTED, value, reason, message, generation, now=now)
    return status.model_copy(update={"conditions": conditions})
