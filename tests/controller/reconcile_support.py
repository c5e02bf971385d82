"""Helpers of the reconciler tests (imported by name: conftest modules are not)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime

from controller.api import ModelDeployment
from controller.observe import COMPLETED, FAILED, DeploymentState, Observed, Observer
from mlops_core import aws
from mlops_core.pointer import PointerStore

PROJECT = "usedcar-price"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlops/serving:0.1"

# botocore operation names that change something, for counting writes.
MUTATING_PREFIXES = (
    "Put",
    "Register",
    "Deregister",
    "Create",
    "Update",
    "Delete",
    "Tag",
    "Untag",
    "Publish",
    "Copy",
    "Label",
)


def make_deployment(
    name: str = "usedcar-prod",
    *,
    version: str | None = None,
    candidate: str | None = None,
    project: str = PROJECT,
    env: str = "prod",
    generation: int = 1,
    replicas: int = 2,
    image: str = IMAGE,
    on_failure: bool = True,
    deadline: int = 900,
    gates: dict | None = None,
    budget: dict | None = None,
    monitoring: dict | None = None,
) -> ModelDeployment:
    model = {"version": version} if candidate is None else {"candidate": candidate}
    return ModelDeployment.model_validate(
        {
            "apiVersion": "mlops.platform.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": name, "namespace": "ml", "generation": generation},
            "spec": {
                "project": project,
                "env": env,
                "model": model,
                "serving": {"image": image, "cpu": 256, "memory": 512, "replicas": replicas},
                "strategy": {"progressDeadlineSeconds": deadline},
                "gates": gates or {},
                "rollback": {"onFailure": on_failure},
                "budget": budget or {},
                "monitoring": monitoring or {},
            },
        }
    )


@dataclass
class Versions:
    """Published versions by holdout R² (gates: min_r2 0.5, max_regression 0.05)."""

    good: str  # r2 0.80
    better: str  # r2 0.82
    worse: str  # r2 0.60: fails max_regression against the others
    bad: str  # r2 0.40: fails min_r2


class RolloutObserver(Observer):
    """An Observer that sees ECS rollouts as real ECS reports them, with an outcome set on
    demand.

    moto's ECS keeps listing the first deployment after an update and never finishes a
    rollout. With ``rollout`` set, the service's task definition gets its own PRIMARY
    deployment (started when first seen, by the test clock) in that rollout state, as on
    ECS; everything else is observed for real. With ``rollout`` None, moto is seen as is.
    """

    rollout: str | None = None
    running: int | None = None
    reason: str = ""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.started: dict[str, datetime] = {}

    def observe_many(self, items):
        out = super().observe_many(items)
        if self.rollout is None:
            return out
        return [self._emulate(o) for o in out]

    def _emulate(self, observed: Observed) -> Observed:
        svc = observed.service
        if svc is None:
            return observed
        td = svc.task_definition
        started = self.started.setdefault(td, observed.now)
        primary = DeploymentState(
            id=f"ecs-svc/emulated-{td.rsplit(':', 1)[-1]}",
            status="PRIMARY",
            task_definition=td,
            rollout_state=self.rollout,
            rollout_reason=self.reason,
            desired=svc.desired_count,
            running=(svc.desired_count if self.rollout == COMPLETED else 0)
            if self.running is None
            else self.running,
            failed_tasks=0 if self.rollout != FAILED else 2,
            created_at=started,
        )
        others = tuple(
            replace(d, status="ACTIVE") for d in svc.deployments if d.task_definition != td
        )
        return replace(observed, service=replace(svc, deployments=(primary, *others)))


class Clock:
    def __init__(self, now: datetime | None = None):
        self.now = now or datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


class Calls(dict):
    """Mutating AWS calls by operation name -> count; ``params`` holds each call's
    parameters in order."""

    def __init__(self):
        super().__init__()
        self.params: list[tuple[str, dict]] = []

    def clear(self):
        super().clear()
        self.params.clear()


# -- what AWS holds -------------------------------------------------------------------
def ecs_service(platform, env="prod"):
    page = aws.client("ecs").describe_services(
        cluster=platform.ecs_cluster,
        services=[platform.service_name(PROJECT, env)],
        include=["TAGS"],
    )
    return page["services"][0] if page["services"] else None


def task_definition(arn):
    return aws.client("ecs").describe_task_definition(taskDefinition=arn, include=["TAGS"])


def revisions(platform, env="prod"):
    return aws.client("ecs").list_task_definitions(familyPrefix=platform.task_family(PROJECT, env))[
        "taskDefinitionArns"
    ]


def pointer_version(platform, env="prod"):
    p = PointerStore(platform).get(PROJECT, env)
    return p.version if p else None


def cond(status, type_):
    c = status.condition(type_)
    return (c.status, c.reason) if c else None
