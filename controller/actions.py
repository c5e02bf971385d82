"""What the controller can do to AWS: plain, immutable values produced by ``plan``.

An action names its target completely (no hidden state), so ``execute`` can run it, a test
can compare it, and ``plan.apply`` can simulate it. Each one is idempotent in ``execute``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from mlops_core.drift_result import RULES_ENV_PREFIX, SERVING_CONTAINER

# Environment variables a serving task reads: the one contract between a task definition
# and the serving container.
ENV_MODEL_URI = "MODEL_URI"
ENV_MODEL_SHA256 = "MODEL_SHA256"
# The version's publication pins (mlops_core.publication.Pins): serving downloads by them.
ENV_MODEL_MANIFEST_SHA256 = "MODEL_MANIFEST_SHA256"
ENV_MODEL_OBJECT_VERSIONS = "MODEL_OBJECT_VERSIONS"
ENV_MODEL_VERSION = "MODEL_VERSION"
ENV_PROJECT = "MLOPS_PROJECT"
ENV_ENV = "MLOPS_ENV"
# Inference capture (serving.capture.CaptureSettings) and the drift job's rules
# (monitoring.settings.DriftSettings, read from the live revision by the job).
ENV_CAPTURE_PERCENT = "MLOPS_CAPTURE_PERCENT"
ENV_CAPTURE_FLUSH_SECONDS = "MLOPS_CAPTURE_FLUSH_SECONDS"
ENV_DRIFT_PREFIX = RULES_ENV_PREFIX

CONTAINER_NAME = SERVING_CONTAINER
# The CPU architecture of every serving revision (what Fargate bills it at).
CPU_ARCHITECTURE: Final = "X86_64"

# Tags on controller-owned resources (besides mlops_core.naming.MANAGED_BY_TAG).
TAG_DEPLOYMENT = "mlops.platform.io/deployment"
TAG_PROJECT = "mlops.platform.io/project"
TAG_ENV = "mlops.platform.io/env"
TAG_VERSION = "mlops.platform.io/model-version"
# The spec's replica count last applied to the service. Between changes of the spec an
# autoscaler may own the service's desired count; the controller leaves it alone.
TAG_REPLICAS = "mlops.platform.io/replicas"
# Written on the ECS service when a rollout fails, so the failure survives a lost status.
TAG_FAILED_VERSION = "mlops.platform.io/failed-version"
TAG_FAILED_GENERATION = "mlops.platform.io/failed-generation"
TAG_RESTORED_VERSION = "mlops.platform.io/restored-version"


@dataclass(frozen=True)
class TaskSpec:
    """Everything a task definition revision pins. Two revisions with equal specs are
    interchangeable, which is what makes registering idempotent."""

    family: str
    project: str
    env: str
    image: str
    version: str
    sha256: str
    model_uri: str
    cpu: int
    memory: int
    port: int
    #: Publication pins (Pins.manifest_sha256, Pins.objects_json()); a revision without
    #: them predates signing and is replaced by one with them.
    manifest_sha256: str = ""
    object_versions: str = ""
    #: spec.monitoring: the share of requests captured (0: off, and not written) and the
    #: drift job's rules as MLOPS_DRIFT_* pairs, sorted.
    capture_percent: float = 0.0
    #: How often serving writes its capture (0: serving's default, and not written).
    capture_flush_seconds: float = 0.0
    drift: tuple[tuple[str, str], ...] = ()

    def monitoring_environment(self) -> dict[str, str]:
        env = dict(self.drift)
        if self.capture_percent:
            env[ENV_CAPTURE_PERCENT] = f"{self.capture_percent:g}"
        if self.capture_percent and self.capture_flush_seconds:
            env[ENV_CAPTURE_FLUSH_SECONDS] = f"{self.capture_flush_seconds:g}"
        return env


#: Where the controller pauses a traffic-shifting deployment: before production traffic
#: shifts (approvals), and after each production step's bake (analysis).
APPROVAL_STAGE = "POST_TEST_TRAFFIC_SHIFT"
ANALYSIS_STAGE = "PRODUCTION_TRAFFIC_SHIFT"


@dataclass(frozen=True)
class PauseHook:
    """A PAUSE lifecycle hook: ECS holds the deployment at ``stage`` until
    ContinueServiceDeployment, or takes ``timeout_action`` after ``timeout_minutes``."""

    stage: str
    timeout_minutes: int
    timeout_action: str = "ROLLBACK"

    def ecs(self) -> dict[str, Any]:
        return {
            "targetType": "PAUSE",
            "lifecycleStages": [self.stage],
            "timeoutConfiguration": {
                "timeoutInMinutes": self.timeout_minutes,
                "action": self.timeout_action,
            },
        }


@dataclass(frozen=True)
class Rollout:
    """How ECS replaces a revision: ``deploymentConfiguration.strategy`` and its settings
    (the one mapping between ``spec.strategy`` and ECS's fields)."""

    strategy: str = "ROLLING"  # ROLLING | CANARY | LINEAR | BLUE_GREEN
    canary: tuple[float, int] | None = None  # (canaryPercent, canaryBakeTimeInMinutes)
    linear: tuple[float, int] | None = None  # (stepPercent, stepBakeTimeInMinutes)
    bake_minutes: int = 0  # bakeTimeInMinutes
    hooks: tuple[PauseHook, ...] = ()  # lifecycleHooks (PAUSE only), in stage order
    #: deploymentConfiguration.alarms: ECS rolls back when one is in ALARM.
    alarms: tuple[str, ...] = ()
    #: The 5xx share the canary alarm fires above (not an ECS field: the alarm's own).
    alarm_error_rate: float = field(default=0.05, compare=False)

    @property
    def shifts_traffic(self) -> bool:
        return self.strategy != "ROLLING"

    def ecs(self) -> dict[str, Any]:
        """The ``deploymentConfiguration`` fields (ECS's names; botocore >= 1.40.61)."""
        out: dict[str, Any] = {"strategy": self.strategy}
        if self.shifts_traffic:
            out["bakeTimeInMinutes"] = self.bake_minutes
        if self.canary is not None:
            out["canaryConfiguration"] = {
                "canaryPercent": self.canary[0],
                "canaryBakeTimeInMinutes": self.canary[1],
            }
        if self.linear is not None:
            out["linearConfiguration"] = {
                "stepPercent": self.linear[0],
                "stepBakeTimeInMinutes": self.linear[1],
            }
        if self.shifts_traffic:
            out["lifecycleHooks"] = [h.ecs() for h in self.hooks]
            out["alarms"] = {
                "alarmNames": list(self.alarms),
                "enable": bool(self.alarms),
                "rollback": bool(self.alarms),
            }
        return out

    @classmethod
    def from_ecs(cls, config: dict[str, Any]) -> Rollout | None:
        """What a service's ``deploymentConfiguration`` says (None: ECS did not report it)."""
        if not config:
            return None
        canary = config.get("canaryConfiguration")
        linear = config.get("linearConfiguration")
        strategy = config.get("strategy") or "ROLLING"
        return cls(
            strategy=strategy,
            canary=(float(canary.get("canaryPercent", 5.0)),
                    int(canary.get("canaryBakeTimeInMinutes", 10)))
            if canary and strategy == "CANARY" else None,
            linear=(float(linear.get("stepPercent", 10.0)),
                    int(linear.get("stepBakeTimeInMinutes", 6)))
            if linear and strategy == "LINEAR" else None,
            bake_minutes=int(config.get("bakeTimeInMinutes") or 0) if strategy != "ROLLING" else 0,
            hooks=tuple(
                PauseHook(stage, int(timeout.get("timeoutInMinutes", 1440)),
                          timeout.get("action", "ROLLBACK"))
                for h in config.get("lifecycleHooks") or []
                if h.get("targetType") == "PAUSE"
                for timeout in [h.get("timeoutConfiguration") or {}]
                for stage in h.get("lifecycleStages") or []
            ) if strategy != "ROLLING" else (),
            alarms=tuple((config.get("alarms") or {}).get("alarmNames") or ())
            if strategy != "ROLLING" and (config.get("alarms") or {}).get("enable") else (),
        )  # fmt: skip


@dataclass(frozen=True)
class ServiceSpec:
    """The ECS service settings the spec controls (the task definition aside)."""

    name: str
    replicas: int
    min_healthy_percent: int
    max_percent: int
    #: Attached to the env's serving target group (see controller.loadbalancing).
    load_balanced: bool = False
    rollout: Rollout = Rollout()


@dataclass(frozen=True)
class ClaimEnv:
    """Claim ``project``/``env`` for ``owner`` (mlops_core.claims): the first write of an
    unclaimed env, so a deployment that loses the race writes nothing else."""

    project: str
    env: str
    owner: str
    source: str = ""


@dataclass(frozen=True)
class AdoptService:
    """Label a service this deployment now owns but did not create (made by Terraform, or
    handed over by a Retain delete) with its owner, before anything else changes it."""

    service_arn: str
    owner: str
    project: str
    env: str


@dataclass(frozen=True)
class PublishCandidate:
    """Publish a verified candidate folder into the registry (after its gates passed)."""

    uri: str
    project: str
    version: str


@dataclass(frozen=True)
class RegisterTaskDefinition:
    """Register a revision pinning ``task`` (reusing the family's latest if it matches)."""

    task: TaskSpec


@dataclass(frozen=True)
class CreateService:
    """Create the ECS service on ``task`` (circuit breaker on, Fargate, awsvpc).

    ``task_definition`` is the ARN when known at plan time; otherwise the revision that
    pins ``task`` (registered by an earlier action of the same plan) is used.
    """

    service: ServiceSpec
    task: TaskSpec
    deployment_key: str
    task_definition: str | None = None


@dataclass(frozen=True)
class UpdateService:
    """Point the service at ``task``; ``scale`` also sets the spec's replica count (and
    records it); ``force`` retries a failed deployment of an unchanged task definition;
    ``attach_load_balancer`` attaches a service that has none to its target group."""

    service: ServiceSpec
    task: TaskSpec
    task_definition: str | None = None
    force: bool = False
    scale: bool = True
    attach_load_balancer: bool = False


@dataclass(frozen=True)
class MovePointer:
    """Set the env's SSM model pointer to ``version``, if ``owner`` holds the env's claim."""

    project: str
    env: str
    version: str
    uri: str
    sha256: str
    reason: str
    owner: str
    action: Literal["promote", "rollback"] = "promote"
    #: The version's publication pins, as in TaskSpec.
    manifest_sha256: str = ""
    object_versions: str = ""
    # What judged a promotion, recorded in the pointer (None on a rollback).
    gates: Mapping[str, Any] | None = field(default=None, hash=False)
    policy_revision: int | None = None
    # Who approved the rollout that put this version live (spec.approval), if anyone.
    approval: Mapping[str, Any] | None = field(default=None, hash=False)


@dataclass(frozen=True)
class Rollback:
    """Record on the service that ``failed_version`` failed at ``generation`` and that
    ``restored_version`` is served instead. The restore itself follows as ordinary
    UpdateService/MovePointer actions; this record keeps the failed version from being
    retried after a crash that loses the status."""

    service_arn: str
    failed_version: str
    generation: int
    restored_version: str
    reason: str


@dataclass(frozen=True)
class ContinueDeployment:
    """Answer the PAUSE hook ``hook_id`` of a traffic-shifting rollout: CONTINUE it, or
    ROLLBACK (ECS sends all traffic back to the stable revision)."""

    service_deployment: str
    hook_id: str
    action: Literal["CONTINUE", "ROLLBACK"]
    reason: str
    project: str
    env: str
    owner: str


@dataclass(frozen=True)
class StopDeployment:
    """Roll back a traffic-shifting rollout that has no pause to answer
    (StopServiceDeployment with ROLLBACK): ECS sends all traffic back to the stable
    revision, whose tasks never stopped."""

    service_deployment: str
    reason: str
    project: str
    env: str
    owner: str


Action = (
    ClaimEnv
    | AdoptService
    | PublishCandidate
    | RegisterTaskDefinition
    | CreateService
    | UpdateService
    | MovePointer
    | Rollback
    | ContinueDeployment
    | StopDeployment
)


def describe(action: Action) -> str:
    """One short line naming an action, for logs and condition messages."""
    match action:
        case ClaimEnv(project=p, env=e, owner=o):
            return f"claim {p}/{e} for {o}"
        case AdoptService(service_arn=arn, owner=o):
            return f"adopt service {arn.rpartition('/')[2]} for {o}"
        case PublishCandidate(uri=uri, version=v):
            return f"publish candidate {v} from {uri}"
        case RegisterTaskDefinition(task=t):
            return f"register task definition {t.family} for {t.version}"
        case CreateService(service=s, task=t):
            return f"create service {s.name} on {t.version} x{s.replicas}"
        case UpdateService(service=s, task=t, force=force, scale=scale, attach_load_balancer=lb):
            size = f" x{s.replicas}" if scale else ""
            extra = (" (forced)" if force else "") + (" behind its load balancer" if lb else "")
            return f"update service {s.name} to {t.version}{size}{extra}"
        case MovePointer(project=p, env=e, version=v):
            return f"move pointer {p}/{e} to {v}"
        case Rollback(failed_version=f, restored_version=r):
            return f"roll back {f} to {r}"
        case ContinueDeployment(action=what, hook_id=h, reason=why):
            verb = "continue" if what == "CONTINUE" else "roll back"
            return f"{verb} the rollout at hook {h} ({why[:200]})"
        case StopDeployment(reason=why):
            return f"stop the rollout in progress and roll it back ({why[:200]})"
    return type(action).__name__
