"""What a deployment costs, in the controller's terms: the workload a spec asks for, the
workload ECS runs now, and the status field that carries the estimate. The arithmetic
and the prices are mlops_core.cost's; this module only says what is being priced.

The controller estimates from the spec alone (replicas, task size, the declared
``budget.expectedRequestsPerSecond``) plus the size of the version's artifacts, so the
estimate is the same on every pass and the budget gate never needs a metric read.
``mlopsctl cost`` prices what runs instead, with the traffic measured.
"""

from __future__ import annotations

from controller.actions import CPU_ARCHITECTURE
from controller.api import CostStatus, ModelDeploymentSpec
from controller.observe import Observed
from mlops_core.artifacts import Manifest
from mlops_core.cost.estimate import Estimate, Workload

ACTIVE = "ACTIVE"


def artifact_bytes(manifest: Manifest | None) -> int:
    """Bytes the version keeps in S3 (every file its manifest names)."""
    return sum(f.size for f in manifest.files.values()) if manifest is not None else 0


def spec_workload(
    spec: ModelDeploymentSpec, manifest: Manifest | None, *, load_balanced: bool = True
) -> Workload:
    """What the spec asks for: its replicas of its task size, serving ``manifest``,
    behind the env's load balancer if the controller attaches services to one
    (``MLOPS_LOAD_BALANCERS`` not ``none``; without one there is no ALB to pay for)."""
    return Workload(
        cpu=spec.serving.cpu,
        memory=spec.serving.memory,
        tasks=spec.serving.replicas,
        architecture=CPU_ARCHITECTURE,
        requests_per_second=spec.budget.expected_requests_per_second,
        artifact_bytes=artifact_bytes(manifest),
        load_balanced=load_balanced,
    )


def live_workload(observed: Observed, spec: ModelDeploymentSpec) -> Workload | None:
    """What ECS runs now for the deployment (None: no live service, nothing is billed).

    The task size is the live revision's; a revision the controller cannot read (gone,
    or not one of its own) is taken to have the spec's size. A service attached to no
    target group has no load balancer share.
    """
    svc = observed.service
    if svc is None or svc.status != ACTIVE:
        return None
    td = observed.task_definitions.get(svc.task_definition)
    pinned = td.spec if td is not None else None
    return Workload(
        cpu=pinned.cpu if pinned else spec.serving.cpu,
        memory=pinned.memory if pinned else spec.serving.memory,
        tasks=svc.desired_count,
        architecture=CPU_ARCHITECTURE,
        requests_per_second=spec.budget.expected_requests_per_second,
        artifact_bytes=artifact_bytes(observed.manifests.get(pinned.version) if pinned else None),
        load_balanced=bool(svc.load_balancers),
    )


def cost_status(estimate: Estimate) -> CostStatus:
    """The status field; rounded to cents so that an unchanged spec writes no new status."""
    return CostStatus(
        estimated_monthly_usd=round(estimate.total, 2),
        price_source=estimate.price_source,
        prices_as_of=estimate.prices_as_of,
        region=estimate.region,
    )
