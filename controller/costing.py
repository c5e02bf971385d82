"""What a deployment costs, in the controller's terms: the workload a spec asks for, the
workload ECS runs now, and the status field that carries the estimate. The arithmetic
and the prices are mlops_core.cost's; this module only says what is being priced.

The controller estimates from the spec alone (replicas, task size, the declared
``budget.expectedRequestsPerSecond``) plus the size of the version's artifacts, so the
estimate is the same on every pass and the budget gate never needs a metric read.
Each pass also prices what ECS runs now (``with_live_cost``: the status's
``liveMonthlyUSD`` and OverBudget condition), with the same declared traffic.
``mlopsctl cost`` prices what runs with the traffic measured.
"""

from __future__ import annotations

from datetime import datetime

from controller.actions import CPU_ARCHITECTURE
from controller.api import (
    ConditionStatus,
    CostStatus,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    set_condition,
)
from controller.observe import Observed
from mlops_core.artifacts import Manifest
from mlops_core.cost.estimate import Estimate, Workload, estimate
from mlops_core.cost.prices import PriceBook

ACTIVE = "ACTIVE"
OVER_BUDGET = "OverBudget"


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


def with_live_cost(
    status: ModelDeploymentStatus,
    spec: ModelDeploymentSpec,
    observed: Observed,
    prices: PriceBook | None,
    generation: int | None,
    now: datetime | None = None,
) -> ModelDeploymentStatus:
    """``status`` with what ECS runs now priced (``cost.liveMonthlyUSD``) and, under a
    budget, the OverBudget condition. The budget gate judges specs; this is how a service
    that an autoscaler or a person scaled past the budget is seen. Reported, never acted
    on: scaling down a service under load is a decision for a person."""
    kept = [c for c in status.conditions if c.type != OVER_BUDGET]
    if status.cost is None or prices is None:
        return status.model_copy(update={"conditions": kept})
    live = live_workload(observed, spec)
    usd = round(estimate(live, prices).total, 2) if live is not None else None
    cost = status.cost.model_copy(update={"live_monthly_usd": usd})
    limit = spec.budget.max_monthly_usd
    if limit is None or live is None or usd is None:
        return status.model_copy(update={"cost": cost, "conditions": kept})
    tasks = f"{live.tasks} task{'s' if live.tasks != 1 else ''}"
    value: ConditionStatus
    if usd > limit:
        value, reason = "True", "LiveCostOverBudget"
        message = (
            f"ECS runs {tasks} ({live.cpu} CPU units, {live.memory} MiB): "
            f"${usd:,.2f}/month, over spec.budget.maxMonthlyUSD ${limit:,.2f} "
            f"(the spec asks for {spec.serving.replicas}: "
            f"${status.cost.estimated_monthly_usd:,.2f}/month); an autoscaler or a change "
            "made outside the controller scaled it, and the controller does not scale it "
            "down: lower the autoscaler's maximum or the service's desired count, or raise "
            "the budget"
        )
    else:
        value, reason = "False", "WithinBudget"
        message = f"ECS runs {tasks}: ${usd:,.2f}/month of ${limit:,.2f}"
    conditions = set_condition(
        list(status.conditions), OVER_BUDGET, value, reason, message, generation, now=now
    )
    return status.model_copy(update={"cost": cost, "conditions": conditions})


def cost_status(estimate: Estimate) -> CostStatus:
    """The status field; rounded to cents so that an unchanged spec writes no new status."""
    return CostStatus(
        estimated_monthly_usd=round(estimate.total, 2),
        price_source=estimate.price_source,
        prices_as_of=estimate.prices_as_of,
        region=estimate.region,
    )
