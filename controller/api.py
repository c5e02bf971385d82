"""``ModelDeployment`` (mlops.platform.io/v1alpha1): the one definition.

These pydantic models are the single source for validating manifests from every source
(Kubernetes, S3, a folder), for the CRD's openAPIV3Schema (``crds/``, generated), and for
documentation. Field names are camelCase on the wire, as Kubernetes APIs are; Python code
uses snake_case attributes.

Status follows the Kubernetes API conventions: ``observedGeneration`` and a list of
``conditions`` (type, status, reason, message, lastTransitionTime, observedGeneration).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator, model_validator
from pydantic.alias_generators import to_camel

from mlops_core.artifacts import VERSION_RE
from mlops_core.durations import DURATION_PATTERN, parse_duration
from mlops_core.naming import ENV_RE, PROJECT_RE

# Spelled out once, as a literal the type checker sees; group and version derive from it.
API_VERSION: Final = "mlops.platform.io/v1alpha1"
GROUP, _, VERSION = API_VERSION.partition("/")
KIND: Final = "ModelDeployment"
PLURAL = "modeldeployments"
SINGULAR = "modeldeployment"
SHORT_NAMES = ["mdep"]
CATEGORIES = ["mlops"]

#: The namespace of a deployment whose manifest names none (folder and S3 manifests).
DEFAULT_NAMESPACE = "default"

# What deleting a ModelDeployment does to AWS, for every source: ``Retain`` (the default)
# leaves the service and the pointer as they are and releases the ownership claim, so a
# new ModelDeployment can adopt the env; ``ScaleToZero`` also scales the service to zero.
# The controller's setting is the default; the annotation overrides it per object.
DeletePolicy = Literal["Retain", "ScaleToZero"]
DELETE_POLICIES: tuple[DeletePolicy, ...] = ("Retain", "ScaleToZero")
DELETE_POLICY_ANNOTATION = f"{GROUP}/delete-policy"
# Approving a rollout from Kubernetes: 'kubectl annotate mdep NAME
# mlops.platform.io/approve=VERSION' (or reject=VERSION), with who and why beside it.
ANNOTATION_APPROVE = f"{GROUP}/approve"
ANNOTATION_REJECT = f"{GROUP}/reject"
ANNOTATION_APPROVED_BY = f"{GROUP}/approved-by"
ANNOTATION_APPROVAL_REASON = f"{GROUP}/approval-reason"


def deployment_key(namespace: str | None, name: str) -> str:
    """``namespace/name``: the one way a deployment is named in keys, tags and logs."""
    return f"{namespace or DEFAULT_NAMESPACE}/{name}"


def delete_policy(annotations: Mapping[str, str] | None, default: DeletePolicy) -> DeletePolicy:
    """The delete policy an object asks for (its annotation), else ``default``.

    Raises ValueError naming the bad value; callers decide whether that blocks anything
    (a typo must never keep an object from being deleted)."""
    value = (annotations or {}).get(DELETE_POLICY_ANNOTATION, default)
    if value not in DELETE_POLICIES:
        raise ValueError(
            f"annotation {DELETE_POLICY_ANNOTATION}: unknown delete policy {value!r}; "
            f"use one of {', '.join(DELETE_POLICIES)}"
        )
    return value


# A container image reference: [registry[:port]/]path[:tag][@sha256:digest].
IMAGE_RE = re.compile(
    r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9.-]*[a-zA-Z0-9])?(?::[0-9]+)?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$"
)
DNS1123_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
CANDIDATE_RE = re.compile(r"^(s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/.+|/.+|file://.+)$")

# Fargate's valid task sizes: cpu units -> allowed memory (MiB).
FARGATE_SIZES: dict[int, tuple[int, ...]] = {
    256: (512, 1024, 2048),
    512: tuple(range(1024, 4096 + 1, 1024)),
    1024: tuple(range(2048, 8192 + 1, 1024)),
    2048: tuple(range(4096, 16384 + 1, 1024)),
    4096: tuple(range(8192, 30720 + 1, 1024)),
    8192: tuple(range(16384, 61440 + 1, 4096)),
    16384: tuple(range(32768, 122880 + 1, 8192)),
}


class _Wire(BaseModel):
    """camelCase on the wire, unknown fields rejected."""

    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True
    )


class ModelRef(_Wire):
    """Which model to serve: a published ``version``, or a ``candidate`` to publish first."""

    # The same rule as ``_exactly_one``, in CEL, so the API server enforces it too (CRD).
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.version) != has(self.candidate)",
                    "message": "set exactly one of model.version or model.candidate",
                }
            ]
        }
    )

    version: str | None = Field(
        None,
        pattern=VERSION_RE.pattern,
        description="A version in the registry, e.g. 20261128T064500Z-3f9a2c1.",
    )
    candidate: str | None = Field(
        None,
        pattern=CANDIDATE_RE.pattern,
        description=(
            "URI of a trained artifacts folder not yet in the registry (s3://... or an "
            "absolute path). The controller verifies it, checks the gates and publishes it."
        ),
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> ModelRef:
        if (self.version is None) == (self.candidate is None):
            raise ValueError("set exactly one of model.version or model.candidate")
        return self


def _fargate_cel() -> str:
    """``FARGATE_SIZES`` as one CEL rule over ``self.cpu`` and ``self.memory`` (CRD)."""
    terms = []
    for cpu, mems in FARGATE_SIZES.items():
        step = mems[1] - mems[0]
        if len(mems) > 3 and mems == tuple(range(mems[0], mems[-1] + 1, step)):
            mem = (
                f"self.memory >= {mems[0]} && self.memory <= {mems[-1]}"
                f" && self.memory % {step} == 0"
            )
        else:
            mem = f"self.memory in [{', '.join(map(str, mems))}]"
        terms.append(f"(self.cpu == {cpu} && {mem})")
    return " || ".join(terms)


class Serving(_Wire):
    # The same rule as ``_pair``, in CEL, so the API server enforces it too (CRD).
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": _fargate_cel(),
                    "message": "memory (MiB) is not valid with cpu on Fargate; see "
                    "https://docs.aws.amazon.com/AmazonECS/latest/developerguide/fargate-tasks-services.html",
                }
            ]
        }
    )

    image: str = Field(
        pattern=IMAGE_RE.pattern,
        description="Serving image, e.g. ACCOUNT.dkr.ecr.REGION.amazonaws.com/mlops/serving:0.1",
    )
    cpu: int = Field(
        512,
        description="Fargate CPU units (256, 512, 1024, ...).",
        json_schema_extra={"enum": list[JsonValue](sorted(FARGATE_SIZES))},
    )
    memory: int = Field(1024, description="Fargate memory in MiB; must pair with cpu.")
    replicas: int = Field(2, ge=0, le=100, description="Desired running tasks.")
    port: int = Field(8080, ge=1, le=65535)

    @field_validator("cpu")
    @classmethod
    def _cpu(cls, v: int) -> int:
        if v not in FARGATE_SIZES:
            raise ValueError(f"cpu {v} is not a Fargate size; use one of {sorted(FARGATE_SIZES)}")
        return v

    @model_validator(mode="after")
    def _pair(self) -> Serving:
        allowed = FARGATE_SIZES.get(self.cpu, ())
        if self.memory not in allowed:
            raise ValueError(
                f"memory {self.memory} MiB is not valid with cpu {self.cpu} on Fargate; "
                f"use {allowed[0]}..{allowed[-1]} in steps of {allowed[1] - allowed[0]}"
            )
        return self


class CanaryStep(_Wire):
    percent: float = Field(
        5.0, ge=0.1, le=100.0, description="Share of production traffic the canary gets."
    )
    bake_minutes: int = Field(10, ge=0, le=1440, description="How long the canary share holds.")

    @field_validator("percent")
    @classmethod
    def _tenths(cls, value: float) -> float:
        if abs(value * 10 - round(value * 10)) > 1e-9:
            raise ValueError("percent is in steps of 0.1 (ECS's canaryPercent)")
        return value


class LinearSteps(_Wire):
    step_percent: float = Field(10.0, ge=3.0, le=100.0, description="Traffic added per step.")
    step_bake_minutes: int = Field(6, ge=0, le=1440, description="How long each step holds.")


class Strategy(_Wire):
    """How a new revision replaces the old one: ECS's own deployment strategies.

    ``Rolling`` replaces tasks (min/max percent). ``Canary``, ``Linear`` and ``BlueGreen``
    shift traffic between the env's two target groups (the old revision keeps running
    until the shift and ``bakeMinutes`` are over); they need the env's load balancer."""

    type: Literal["Rolling", "Canary", "Linear", "BlueGreen"] = Field(
        "Rolling", description="ECS's ROLLING, CANARY, LINEAR or BLUE_GREEN."
    )
    min_healthy_percent: int = Field(100, ge=0, le=100)
    max_percent: int = Field(200, ge=100, le=400)
    progress_deadline_seconds: int = Field(
        900, ge=60, le=86400, description="A rollout not done by then is failed and rolled back."
    )
    canary: CanaryStep | None = Field(None, description="With type Canary (default 5 %, 10 min).")
    linear: LinearSteps | None = Field(
        None, description="With type Linear (default 10 % every 6 min)."
    )
    bake_minutes: int = Field(
        0,
        ge=0,
        le=1440,
        description="After all traffic shifted: how long the old revision stays, ready to "
        "take the traffic back (traffic-shifting types).",
    )

    @model_validator(mode="after")
    def _settings_match_type(self) -> Strategy:
        if self.canary is not None and self.type != "Canary":
            raise ValueError(f"strategy.canary is for type Canary, not {self.type}")
        if self.linear is not None and self.type != "Linear":
            raise ValueError(f"strategy.linear is for type Linear, not {self.type}")
        if self.bake_minutes and self.type == "Rolling":
            raise ValueError("strategy.bakeMinutes is for the traffic-shifting types")
        return self

    @property
    def shifts_traffic(self) -> bool:
        return self.type != "Rolling"


class Analysis(_Wire):
    """How each traffic step of a Canary, Linear or BlueGreen rollout is judged.

    ECS pauses after each step's bake (a PAUSE hook at PRODUCTION_TRAFFIC_SHIFT); the
    controller compares the new revision with the stable one over the step, from the load
    balancer's per-target-group metrics and the capture, then continues the deployment or
    rolls it back through ECS. Below ``minRequests`` a step waits for traffic instead of
    passing or failing; ECS takes ``timeoutAction`` if nobody judges it in time (the
    controller is down)."""

    max_error_rate_increase: float = Field(
        0.01,
        ge=0,
        le=1,
        description="How much higher the new revision's 5xx share may be than the stable one's.",
    )
    max_error_rate: float = Field(
        0.05,
        gt=0,
        le=1,
        description="The new revision's 5xx share at most; also the threshold of the "
        "CloudWatch alarm on its target group that ECS rolls back on by itself (when the "
        "controller is down).",
    )
    max_latency_p99_ratio: float | None = Field(
        1.5, gt=0, description="The new revision's p99 latency over the stable one's, at most."
    )
    max_latency_p99_ms: float | None = Field(
        None, gt=0, description="The new revision's p99 latency in milliseconds, at most."
    )
    max_prediction_shift: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Largest shift between the two revisions' captured predictions: the KS "
        "statistic (regression) or the Jensen-Shannon distance of predicted labels "
        "(classification). Needs monitoring.capturePercent.",
    )
    min_requests: int = Field(
        50, ge=1, le=10_000_000, description="Requests the new revision needs before a verdict."
    )
    failure_limit: int = Field(
        0, ge=0, le=10, description="Failed measurements tolerated before rolling back."
    )
    timeout_minutes: int = Field(
        60, ge=1, le=1440, description="How long ECS waits for a verdict at each pause."
    )
    timeout_action: Literal["ROLLBACK", "CONTINUE"] = Field(
        "ROLLBACK", description="What ECS does when a pause is not judged in time."
    )


class Approval(_Wire):
    """A person's go-ahead before production traffic shifts (a PAUSE hook at
    POST_TEST_TRAFFIC_SHIFT): 'mlopsctl approve' continues, 'mlopsctl reject' rolls back."""

    required: bool = Field(True, description="Hold every new revision for approval.")
    timeout_minutes: int = Field(
        1440, ge=1, le=1440, description="How long ECS holds before rolling back unapproved."
    )


class GateOverride(_Wire):
    """Who let which version past its gates, and why."""

    version: str = Field(
        pattern=VERSION_RE.pattern, description="The only version this override applies to."
    )
    reason: str = Field(min_length=1, max_length=500, description="Why the gates are overridden.")
    by: str = Field(min_length=1, max_length=200, description="Who gave the override.")


class DeploymentGates(_Wire):
    """Gates checked before a model goes live; unset fields fall back to the project's."""

    # Regression models.
    min_r2: float | None = Field(None, le=1.0)
    max_mae: float | None = Field(None, gt=0)
    # Classifiers (macro F1; ROC AUC one-vs-rest), as in project.yaml's gates.
    min_accuracy: float | None = Field(None, ge=0.0, le=1.0)
    min_f1: float | None = Field(None, ge=0.0, le=1.0)
    min_auc: float | None = Field(None, ge=0.0, le=1.0)
    max_log_loss: float | None = Field(None, gt=0)
    # Either task: the largest drop of the primary metric against the live version.
    max_regression: float | None = Field(None, ge=0)
    override: GateOverride | None = Field(
        None,
        description="Let one version go live although gates fail ('mlopsctl deploy --force "
        "--reason'); recorded in the pointer and the promotion log. Ignored for any other "
        "version.",
    )

    def thresholds(self) -> dict[str, float | None]:
        """The gate values set here, as overrides of the project's gates."""
        return self.model_dump(exclude={"override"})


class RollbackPolicy(_Wire):
    on_failure: bool = Field(
        True, description="Return to the last good version when a rollout fails or gates fail."
    )


# Far above what one load balancer serves: a bound that keeps every estimate finite.
MAX_EXPECTED_REQUESTS_PER_SECOND = 10_000_000


class Budget(_Wire):
    """A cost limit, checked against the spec's estimated monthly cost before any change."""

    max_monthly_usd: float | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        alias="maxMonthlyUSD",
        description="Refuse (Degraded, BudgetExceeded) a spec whose estimated monthly cost "
        "exceeds this many USD; unset: no limit.",
    )
    expected_requests_per_second: float = Field(
        0.0,
        ge=0,
        le=MAX_EXPECTED_REQUESTS_PER_SECOND,
        allow_inf_nan=False,
        alias="expectedRequestsPerSecond",
        description="Traffic the estimate assumes (load balancer LCUs, log ingestion); "
        "0 estimates the fixed costs only.",
    )

    @field_validator("max_monthly_usd", "expected_requests_per_second", mode="before")
    @classmethod
    def _a_number_not_a_flag(cls, value: Any) -> Any:
        # YAML's true/yes would otherwise be a budget of 1 USD.
        if isinstance(value, bool):
            raise ValueError("must be a number, not a boolean")
        return value


# EventBridge schedule expressions, as Terraform's drift_schedule_expression takes them.
SCHEDULE_RE = re.compile(r"^(rate\(\d+ (minute|minutes|hour|hours|day|days)\)|cron\(.+\))$")


class DriftPolicy(_Wire):
    """How the drift job judges this deployment's captured traffic (unset: the job's
    defaults, ``MLOPS_DRIFT_*``). The controller pins these into the serving revision
    (``MLOPS_DRIFT_*``), where the job reads them for the env's live service."""

    schedule: str | None = Field(
        None,
        pattern=SCHEDULE_RE.pattern,
        description="When the job should run, e.g. rate(1 day) or cron(0 6 * * ? *). "
        "Informational: the schedule itself is Terraform's drift_schedule_expression.",
    )
    window: str | None = Field(
        None, pattern=DURATION_PATTERN, description="How far back a run looks, e.g. 24h."
    )
    correction: Literal["bonferroni", "bh"] | None = Field(
        None, description="Multiple-testing correction: bonferroni or bh (Benjamini-Hochberg)."
    )
    alpha: float | None = Field(None, gt=0, lt=1, description="Significance after correction.")
    numeric_effect: Literal["wasserstein", "psi", "ks"] | None = Field(
        None, description="The effect size that numeric features must reach."
    )
    wasserstein_threshold: float | None = Field(None, ge=0)
    psi_threshold: float | None = Field(None, ge=0)
    ks_threshold: float | None = Field(None, ge=0, le=1)
    js_threshold: float | None = Field(
        None, ge=0, le=1, description="Jensen-Shannon distance a category must reach."
    )
    missing_threshold: float | None = Field(
        None, ge=0, le=1, description="Change of a missing-value rate that counts."
    )
    drift_share: float | None = Field(
        None, ge=0, le=1, description="Share of drifted features that makes dataset drift."
    )
    min_rows: int | None = Field(None, ge=1, description="Values a column needs to be tested.")

    @field_validator("window")
    @classmethod
    def _window(cls, value: str | None) -> str | None:
        # The job's own parser: a window accepted here is one the job runs (not 0h).
        if value is not None:
            parse_duration(value)
        return value

    def job_environment(self) -> dict[str, str]:
        """The set fields as the drift job's ``MLOPS_DRIFT_*`` variables."""
        out = {}
        for name, value in self.model_dump(exclude_none=True).items():
            if name != "schedule":
                out[f"MLOPS_DRIFT_{name.upper()}"] = str(value)
        return out


class Monitoring(_Wire):
    capture_percent: float = Field(
        0,
        ge=0,
        le=100,
        description="Share of requests serving captures for the drift job "
        "(MLOPS_CAPTURE_PERCENT); 0 = off. A change rolls a new revision.",
    )
    capture_flush_seconds: float | None = Field(
        None,
        ge=1,
        le=60,
        description="How often serving writes what it captured (default 60 s); shorter for "
        "analysis steps of a few minutes that judge predictions.",
    )
    drift: DriftPolicy = DriftPolicy()


class ModelDeploymentSpec(_Wire):
    project: str = Field(pattern=PROJECT_RE.pattern)
    env: str = Field(pattern=ENV_RE.pattern)
    model: ModelRef
    serving: Serving
    strategy: Strategy = Strategy()
    gates: DeploymentGates = DeploymentGates()
    rollback: RollbackPolicy = RollbackPolicy()
    budget: Budget = Budget()
    monitoring: Monitoring = Monitoring()
    analysis: Analysis | None = Field(
        None, description="Judge each traffic step (Canary, Linear, BlueGreen)."
    )
    approval: Approval | None = Field(
        None,
        description="Hold before production traffic shifts until approved (default: the "
        "project's approvalRequired envs).",
    )
    retry: int | None = Field(
        None,
        ge=1,
        le=2**31 - 1,
        description="Bumped by 'mlopsctl deploy --retry': a new spec, so a new generation, "
        "in which a version that failed (rolled back, rejected) is rolled out again.",
    )

    @model_validator(mode="after")
    def _progressive(self) -> ModelDeploymentSpec:
        if (self.analysis or (self.approval and self.approval.required)) and (
            not self.strategy.shifts_traffic
        ):
            what = "analysis" if self.analysis else "approval"
            raise ValueError(
                f"spec.{what} needs a traffic-shifting strategy (Canary, Linear or "
                f"BlueGreen), not {self.strategy.type}"
            )
        if (
            self.analysis is not None
            and self.analysis.max_prediction_shift is not None
            and not self.monitoring.capture_percent
        ):
            raise ValueError(
                "spec.analysis.maxPredictionShift reads the capture: set "
                "spec.monitoring.capturePercent above 0"
            )
        return self


class ObjectMeta(_Wire):
    model_config = ConfigDict(
        extra="ignore", alias_generator=to_camel, populate_by_name=True, frozen=True
    )  # Kubernetes adds uid, resourceVersion, managedFields...: not ours to police

    name: str = Field(pattern=DNS1123_RE.pattern)
    # As Kubernetes has them (a label; an int64 from 0): from a folder or S3 they are the
    # manifest author's, and the key they make is written into claims and pointers.
    namespace: str | None = Field(None, pattern=DNS1123_RE.pattern)
    generation: int | None = Field(None, ge=0, le=2**63 - 1)
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class ModelDeployment(_Wire):
    api_version: Literal["mlops.platform.io/v1alpha1"] = Field(API_VERSION, alias="apiVersion")
    kind: Literal["ModelDeployment"] = KIND
    metadata: ObjectMeta
    spec: ModelDeploymentSpec
    # Status is written by the controller only; accepted (and ignored) on input so that a
    # manifest read back from a source with its status still validates.
    status: ModelDeploymentStatus | None = None

    @property
    def key(self) -> str:
        """Unique key of this deployment within its source: ``namespace/name``."""
        return deployment_key(self.metadata.namespace, self.metadata.name)


ConditionType = Literal["Ready", "Progressing", "Degraded", "Drifted"]
ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(_Wire):
    type: str = Field(description="Ready, Progressing, Degraded, Drifted or OverBudget.")
    status: ConditionStatus
    reason: str = Field(pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
    message: str = ""
    last_transition_time: datetime
    observed_generation: int | None = None


class CostStatus(_Wire):
    """The monthly cost estimate of the spec at ``observedGeneration``."""

    estimated_monthly_usd: float = Field(alias="estimatedMonthlyUSD", ge=0)
    price_source: Literal["price-list-api", "shipped-table", "table-file"] = Field(
        description="Where the prices came from: the AWS Price List API, the shipped table "
        "or the table file MLOPS_PRICE_TABLE."
    )
    prices_as_of: str = Field(description="Publication (API) or taken (table) date of the prices.")
    region: str
    live_monthly_usd: float | None = Field(
        None,
        alias="liveMonthlyUSD",
        ge=0,
        description="What ECS runs now, priced the same way: its task count (an autoscaler "
        "or a hand change can differ from the spec) and its revision's task size. "
        "Compared with spec.budget.maxMonthlyUSD in the OverBudget condition.",
    )


class RevisionValues(_Wire):
    """One revision's traffic over an analysis window."""

    version: str | None = None
    requests: int = 0
    errors: int = Field(0, description="5xx answers (the target's and the load balancer's).")
    error_rate: float | None = None
    latency_p99_ms: float | None = None
    window_start: datetime | None = None
    window_end: datetime | None = None


class AnalysisStep(_Wire):
    """What one pause of a rollout measured, and the verdict."""

    hook: str = Field(description="The ECS lifecycle hook this step was judged at.")
    traffic_percent: float = Field(description="The new revision's share during the step.")
    canary: RevisionValues
    stable: RevisionValues
    prediction_shift: float | None = None
    verdict: Literal["Pass", "Fail", "Inconclusive"]
    message: str = ""
    at: datetime


class ApprovalRecord(_Wire):
    decision: Literal["approve", "reject"]
    version: str
    by: str
    reason: str
    at: datetime
    source: str = Field(description="Where it came from: the sealed record or an annotation.")


class RolloutStatus(_Wire):
    """A traffic-shifting rollout in progress (or the last one): both versions, the share
    each gets, where ECS is, and every analysis step."""

    service_deployment: str
    strategy: str
    stage: str | None = None
    stable_version: str | None = None
    canary_version: str
    stable_percent: float | None = None
    canary_percent: float | None = None
    canary_target_group: str | None = Field(
        None, description="Where the new revision's tasks register (the other is stable's)."
    )
    stable_target_group: str | None = None
    traffic_since: datetime | None = Field(
        None, description="When the current shares were first seen (the step's window start)."
    )
    failures: int = Field(0, description="Failed analysis steps so far (see failureLimit).")
    steps: list[AnalysisStep] = Field(default_factory=list, description="Judged steps.")
    measuring: AnalysisStep | None = Field(
        None, description="The step being measured now (Inconclusive until it has traffic)."
    )
    approval: ApprovalRecord | None = None
    outcome: Literal["Continued", "RolledBack", "Completed"] | None = None


class ModelDeploymentStatus(_Wire):
    observed_generation: int | None = None
    current_version: str | None = None
    previous_version: str | None = Field(None, description="The last good version before it.")
    task_definition: str | None = Field(None, description="ARN of the live revision.")
    previous_task_definition: str | None = Field(
        None, description="ARN of the revision that served previousVersion."
    )
    failed_version: str | None = Field(
        None,
        description="A version whose rollout or gates failed; not retried until the spec changes.",
    )
    failed_generation: int | None = Field(
        None, description="The generation at which failedVersion failed."
    )
    failed_deployment: str | None = Field(
        None, description="ID of the ECS deployment that failed (already handled)."
    )
    cost: CostStatus | None = Field(None, description="The spec's monthly cost estimate.")
    rollout: RolloutStatus | None = Field(
        None, description="The traffic-shifting rollout in progress, or the last one."
    )
    conditions: list[Condition] = Field(default_factory=list)

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)


ModelDeployment.model_rebuild()


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str = "",
    observed_generation: int | None = None,
    now: datetime | None = None,
) -> list[Condition]:
    """Return ``conditions`` with ``type_`` set; lastTransitionTime moves only on a change
    of status, as the Kubernetes API conventions ask."""
    now = now or datetime.now(UTC)
    out: list[Condition] = []
    found = False
    for c in conditions:
        if c.type != type_:
            out.append(c)
            continue
        found = True
        changed = c.status != status
        out.append(
            Condition(
                type=type_,
                status=status,
                reason=reason,
                message=message,
                last_transition_time=now if changed else c.last_transition_time,
                observed_generation=observed_generation,
            )
        )
    if not found:
        out.append(
            Condition(
                type=type_,
                status=status,
                reason=reason,
                message=message,
                last_transition_time=now,
                observed_generation=observed_generation,
            )
        )
    return out


def degraded_status(
    previous: ModelDeploymentStatus | None,
    generation: int | None,
    reason: str,
    message: str,
    now: datetime | None = None,
) -> ModelDeploymentStatus:
    """``previous`` blocked for ``reason``: Degraded=True, Ready=False, Progressing=False,
    all three saying why. The one place a blocked status is built (bad input, conflicts,
    AWS errors, gates: whatever stops a deployment)."""
    prev = previous or ModelDeploymentStatus()
    conditions = list(prev.conditions)
    blocked: tuple[tuple[str, ConditionStatus], ...] = (
        ("Degraded", "True"),
        ("Progressing", "False"),
        ("Ready", "False"),
    )
    for type_, value in blocked:
        conditions = set_condition(
            conditions, type_, value, reason, message, observed_generation=generation, now=now
        )
    return prev.model_copy(update={"observed_generation": generation, "conditions": conditions})
