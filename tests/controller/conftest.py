"""Shared fixtures of the reconciler tests: a VPC to run Fargate services in, published
model versions, and a factory of ModelDeployments.

Everything goes to the session's moto server over HTTP (``aws_env``)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime

import pytest
from factories import make_artifacts, project_config

from controller.api import ModelDeployment
from controller.observe import COMPLETED, FAILED, DeploymentState, Observed, Observer
from controller.plan import NetworkConfig
from controller.reconcile import Reconciler
from mlops_core import aws
from mlops_core.registry import Registry

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


@pytest.fixture
def network(aws_env) -> NetworkConfig:
    """A VPC, a subnet and a security group in moto, as Terraform would output them."""
    ec2 = aws.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    sg = ec2.create_security_group(GroupName="serving", Description="serving", VpcId=vpc)
    return NetworkConfig(subnets=(subnet,), security_groups=(sg["GroupId"],))


@pytest.fixture(scope="session")
def artifact_folders(tmp_path_factory):
    """Artifact folders built once per session (training a tiny forest takes a moment)."""
    root = tmp_path_factory.mktemp("artifacts")
    out = {}
    for seed, r2 in [(1, 0.80), (2, 0.82), (3, 0.60), (4, 0.40), (5, 0.85)]:
        folder = root / str(seed)
        make_artifacts(folder, seed=seed, r2=r2)
        out[r2] = folder
    return out


@pytest.fixture
def registry(platform) -> Registry:
    reg = Registry(platform)
    reg.register_project(project_config(PROJECT, min_r2=0.5, max_regression=0.05))
    return reg


@pytest.fixture
def versions(registry, artifact_folders) -> Versions:
    got = {}
    for r2 in (0.80, 0.82, 0.60, 0.40):
        got[r2] = registry.publish(artifact_folders[r2]).version
    return Versions(good=got[0.80], better=got[0.82], worse=got[0.60], bad=got[0.40])


@pytest.fixture
def candidate_folder(artifact_folders):
    """An unpublished artifacts folder (r2 0.85) to deploy as a candidate."""
    return artifact_folders[0.85]


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


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_reconciler(platform, registry, network, clock):
    """Reconcilers sharing nothing but AWS (a fresh one is a restarted controller)."""

    def make(**kw) -> Reconciler:
        observer = kw.pop("observer", None) or RolloutObserver(
            platform, Registry(platform), clock=clock
        )
        return Reconciler(platform, clock=clock, network=network, observer=observer, **kw)

    return make


class Calls(dict):
    """Mutating AWS calls by operation name -> count; ``params`` holds each call's
    parameters in order."""

    def __init__(self):
        super().__init__()
        self.params: list[tuple[str, dict]] = []

    def clear(self):
        super().clear()
        self.params.clear()


@pytest.fixture
def mutations():
    """Counts mutating AWS calls, by operation name, via botocore's before-call event
    (so over the real HTTP path), and records their parameters."""
    calls = Calls()

    def count(model, **kwargs):
        if model.name.startswith(MUTATING_PREFIXES):
            calls[model.name] = calls.get(model.name, 0) + 1

    def record(params, model, **kwargs):
        if model.name.startswith(MUTATING_PREFIXES):
            calls.params.append((model.name, dict(params)))

    clients = [aws.client(s) for s in ("ecs", "ssm", "s3")]
    for c in clients:
        c.meta.events.register("before-call.*.*", count)
        c.meta.events.register("provide-client-params.*.*", record)
    yield calls
    for c in clients:
        c.meta.events.unregister("before-call.*.*", count)
        c.meta.events.unregister("provide-client-params.*.*", record)
