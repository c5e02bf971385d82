"""The budget gate, the estimate in the status, and the dry run.

Prices come from the shipped table (``PriceResolver("table")``), so the figures below can
be computed by hand: the test deployment runs 2 tasks of 256 CPU units / 512 MiB in
us-east-1, attached to no load balancer (the tests' network has none), which is

    0.25 vCPU x 2 x 730 h x 0.04048  = 14.7752   (Fargate vCPU)
    0.5 GB   x 2 x 730 h x 0.004445 =  3.24485  (Fargate memory)
                                      ------- + a few KB of artifacts in S3
                                      18.02 USD a month

and behind its env's load balancer (MLOPS_LOAD_BALANCERS terraform or managed) another
730 h x 0.0225 = 16.425: 34.45 USD a month.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from reconcile_support import PROJECT, cond, ecs_service, make_deployment, task_definition
from test_plan import GOOD, desired, observed

from controller.actions import MovePointer
from controller.plan import NetworkConfig, decide
from controller.reconcile import Reconciler
from mlops_core import aws, naming
from mlops_core.cost.prices import PriceResolver, PricesUnavailable, from_table
from mlops_core.pointer import PointerStore

TWO_SMALL_TASKS = 18.02
ONE_SMALL_TASK = 0.25 * 730 * 0.04048 + 0.5 * 730 * 0.004445  # 9.010025


@pytest.fixture
def table_prices() -> PriceResolver:
    return PriceResolver("table")


def make(make_reconciler, table_prices) -> Reconciler:
    return make_reconciler(prices=table_prices)


# -- pure: the planner's rule -----------------------------------------------------------
def test_plan_refuses_a_spec_over_budget_with_no_actions():
    dep = make_deployment(version=GOOD.version, budget={"maxMonthlyUSD": 15})
    d = decide(replace(desired(dep), prices=from_table("us-east-1")), observed())
    assert d.actions == [] and d.degraded
    assert cond(d.status, "Degraded") == ("True", "BudgetExceeded")
    assert "$18.02/month" in d.status.condition("Degraded").message
    assert d.status.cost.estimated_monthly_usd == TWO_SMALL_TASKS
    assert d.cost is not None and round(d.cost.total, 2) == TWO_SMALL_TASKS


def test_plan_within_budget_converges_and_records_the_estimate():
    dep = make_deployment(version=GOOD.version, budget={"maxMonthlyUSD": 18.02})
    d = decide(replace(desired(dep), prices=from_table("us-east-1")), observed())
    assert any(isinstance(a, MovePointer) for a in d.actions)
    assert d.status.cost.price_source == "shipped-table"
    assert d.status.cost.prices_as_of == "2026-12-01"


def test_the_load_balancer_is_priced_only_where_services_attach_to_one():
    dep = make_deployment(version=GOOD.version, budget={"maxMonthlyUSD": 30})
    prices = from_table("us-east-1")
    d = decide(replace(desired(dep), prices=prices), observed())
    assert not d.degraded and d.cost is not None and d.cost.usd("load balancer") == 0
    behind = replace(desired(dep, network=NetworkConfig(load_balancers="managed")), prices=prices)
    d = decide(behind, observed())
    assert d.cost is not None and d.cost.usd("load balancer") == pytest.approx(16.425)
    assert cond(d.status, "Degraded") == ("True", "BudgetExceeded")
    assert "$34.45/month" in d.status.condition("Degraded").message


def test_plan_cannot_judge_a_budget_without_prices_and_changes_nothing():
    dep = make_deployment(version=GOOD.version, budget={"maxMonthlyUSD": 100})
    d = decide(replace(desired(dep), prices_error="no prices for ap-x-1"), observed())
    assert d.actions == []
    assert cond(d.status, "Degraded") == ("True", "PricesUnavailable")
    # Without a budget, no prices only means no estimate.
    d = decide(desired(make_deployment(version=GOOD.version)), observed())
    assert d.actions and d.status.cost is None


# -- against the local endpoint -----------------------------------------------------------
def test_budget_exceeded_makes_zero_aws_writes_then_a_raised_budget_deploys(
    make_reconciler, table_prices, versions, mutations, platform
):
    r = make(make_reconciler, table_prices)
    dep = make_deployment(version=versions.good, budget={"maxMonthlyUSD": 15})
    result = r.reconcile(dep, None)
    assert mutations == {}, mutations
    assert result.actions == [] and result.degraded
    assert cond(result.status, "Degraded") == ("True", "BudgetExceeded")
    assert result.status.cost.estimated_monthly_usd == TWO_SMALL_TASKS
    assert ecs_service(platform) is None

    raised = make_deployment(version=versions.good, generation=2, budget={"maxMonthlyUSD": 20})
    result = r.reconcile(raised, result.status)
    assert not result.degraded
    assert mutations.get("CreateService") == 1
    assert result.status.cost.estimated_monthly_usd == TWO_SMALL_TASKS


def test_a_live_deployment_keeps_running_when_a_change_would_exceed_its_budget(
    make_reconciler, table_prices, versions, mutations, platform
):
    r = make(make_reconciler, table_prices)
    dep = make_deployment(version=versions.good, budget={"maxMonthlyUSD": 30})
    status = r.reconcile(dep, None).status
    mutations.clear()
    bigger = make_deployment(
        version=versions.better, generation=2, replicas=4, budget={"maxMonthlyUSD": 30}
    )
    result = r.reconcile(bigger, status)
    assert mutations == {}, mutations
    assert cond(result.status, "Degraded") == ("True", "BudgetExceeded")
    assert ecs_service(platform)["desiredCount"] == 2
    # 4 tasks: 2 x 9.010025 more.
    four_tasks = round(TWO_SMALL_TASKS + 2 * ONE_SMALL_TASK, 2)
    assert result.status.cost.estimated_monthly_usd == four_tasks


def test_a_budget_below_what_already_runs_leaves_it_running_and_says_why(
    make_reconciler, table_prices, versions, mutations, platform
):
    """A budget added to a live deployment that already costs more: nothing is torn down
    or scaled, the status says the spec is refused and what is still served; raising the
    budget again is a converged, quiet pass."""
    r = make(make_reconciler, table_prices)
    dep = make_deployment(version=versions.good)
    status = r.reconcile(dep, None).status
    mutations.clear()
    capped = make_deployment(version=versions.good, generation=2, budget={"maxMonthlyUSD": 10})
    result = r.reconcile(capped, status)
    assert mutations == {}, mutations
    assert result.actions == [] and result.degraded
    assert cond(result.status, "Degraded") == ("True", "BudgetExceeded")
    message = result.status.condition("Degraded").message
    assert "$18.02/month" in message and "exceeds the budget $10.00" in message
    assert f"nothing changed ({versions.good} is still served, as it was)" in message
    svc = ecs_service(platform)
    assert (svc["status"], svc["desiredCount"]) == ("ACTIVE", 2)
    assert PointerStore(platform).get(PROJECT, "prod").version == versions.good
    assert result.status.current_version == versions.good
    # Within budget again: nothing to do but say so.
    fits = make_deployment(version=versions.good, generation=3, budget={"maxMonthlyUSD": 19})
    result = r.reconcile(fits, result.status)
    assert mutations == {} and not result.degraded
    assert cond(result.status, "Degraded") == ("False", "AsExpected")


def test_status_estimate_is_stable_so_the_steady_state_stays_quiet(
    make_reconciler, table_prices, versions, mutations
):
    r = make(make_reconciler, table_prices)
    dep = make_deployment(version=versions.good)
    status = r.reconcile(dep, None).status
    assert status.cost.live_monthly_usd is None  # nothing ran before this pass created it
    status = r.reconcile(dep, status).status
    mutations.clear()
    again = r.reconcile(dep, status)
    assert again.actions == [] and mutations == {}
    assert again.status.cost == status.cost
    assert again.status.cost.estimated_monthly_usd == TWO_SMALL_TASKS
    assert again.status.cost.live_monthly_usd == TWO_SMALL_TASKS
    assert again.status.condition("OverBudget") is None  # no budget, no condition


def test_a_service_scaled_past_its_budget_outside_the_controller_is_reported_not_undone(
    make_reconciler, table_prices, versions, mutations, platform
):
    """The gate judges specs; what runs can still grow past the budget (an autoscaler, a
    person). The status prices what runs and says so, and the controller scales nothing."""
    r = make(make_reconciler, table_prices)
    dep = make_deployment(version=versions.good, budget={"maxMonthlyUSD": 30})
    status = r.reconcile(dep, None).status
    status = r.reconcile(dep, status).status
    assert cond(status, "OverBudget") == ("False", "WithinBudget")
    assert status.cost.live_monthly_usd == TWO_SMALL_TASKS
    ecs = aws.client("ecs")
    service = {"cluster": platform.ecs_cluster, "service": platform.service_name(PROJECT, "prod")}
    ecs.update_service(**service, desiredCount=5)  # as an autoscaler would
    mutations.clear()
    result = r.reconcile(dep, status)
    assert mutations == {}, mutations
    five_tasks = round(5 * ONE_SMALL_TASK, 2)  # 45.05
    assert result.status.cost.live_monthly_usd == five_tasks
    assert result.status.cost.estimated_monthly_usd == TWO_SMALL_TASKS  # the spec's
    assert cond(result.status, "OverBudget") == ("True", "LiveCostOverBudget")
    message = result.status.condition("OverBudget").message
    assert f"ECS runs 5 tasks (256 CPU units, 512 MiB): ${five_tasks:,.2f}/month" in message
    assert "over spec.budget.maxMonthlyUSD $30.00" in message
    assert not result.degraded
    assert ecs_service(platform)["desiredCount"] == 5
    # Scaled back: within budget again, and the condition says so.
    ecs.update_service(**service, desiredCount=2)
    result = r.reconcile(dep, result.status)
    assert cond(result.status, "OverBudget") == ("False", "WithinBudget")
    # A budget removed: no condition at all.
    unbudgeted = make_deployment(version=versions.good, generation=2)
    result = r.reconcile(unbudgeted, result.status)
    assert result.status.condition("OverBudget") is None


def test_services_and_task_definitions_carry_the_cost_allocation_tags(
    make_reconciler, table_prices, versions, platform
):
    result = make(make_reconciler, table_prices).reconcile(
        make_deployment(version=versions.good), None
    )
    want = naming.cost_tags(platform.platform, PROJECT, "prod")
    svc_tags = {t["key"]: t["value"] for t in ecs_service(platform)["tags"]}
    assert want.items() <= svc_tags.items()
    td = task_definition(result.status.task_definition)
    td_tags = {t["key"]: t["value"] for t in td["tags"]}
    assert want.items() <= td_tags.items()
    assert want[naming.COST_TAG_DEPLOYMENT] == "usedcar-price-prod"


# -- the dry run ---------------------------------------------------------------------------
def test_dry_run_plans_and_prices_without_writing(
    make_reconciler, table_prices, versions, mutations, platform
):
    r = make(make_reconciler, table_prices)
    dep = make_deployment(version=versions.good)
    dry = r.dry_run(dep, None)
    assert mutations == {}, mutations
    assert ecs_service(platform) is None
    assert [type(a).__name__ for a in dry.actions] == [
        "ClaimEnv", "RegisterTaskDefinition", "CreateService", "MovePointer",
    ]  # fmt: skip
    assert dry.current is None  # nothing runs yet
    assert round(dry.monthly_delta, 2) == TWO_SMALL_TASKS

    status = r.reconcile(dep, None).status
    mutations.clear()
    scaled = make_deployment(version=versions.good, generation=2, replicas=4)
    dry = r.dry_run(scaled, status)
    assert mutations == {}, mutations
    assert [type(a).__name__ for a in dry.actions] == ["UpdateService"]
    assert round(dry.current.total, 2) == TWO_SMALL_TASKS
    assert dry.monthly_delta == pytest.approx(2 * ONE_SMALL_TASK)
    assert ecs_service(platform)["desiredCount"] == 2


def test_dry_run_reports_a_budget_refusal(make_reconciler, table_prices, versions, mutations):
    r = make(make_reconciler, table_prices)
    dry = r.dry_run(make_deployment(version=versions.good, budget={"maxMonthlyUSD": 10}), None)
    assert dry.actions == [] and dry.degraded
    assert cond(dry.status, "Degraded") == ("True", "BudgetExceeded")
    assert mutations == {}


def test_unknown_region_prices_block_only_a_budgeted_deployment(
    make_reconciler, versions, mutations
):
    def nowhere(region):
        raise PricesUnavailable(f"no prices for {region}")

    prices = PriceResolver("api", fetch=nowhere)
    r = make_reconciler(prices=prices)
    result = r.reconcile(make_deployment(version=versions.good, budget={"maxMonthlyUSD": 99}), None)
    assert cond(result.status, "Degraded") == ("True", "PricesUnavailable") and mutations == {}


# -- what a budget may be -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("budget", "message"),
    [
        ({"maxMonthlyUSD": 0}, "greater than 0"),
        ({"maxMonthlyUSD": -5}, "greater than 0"),
        ({"maxMonthlyUSD": "fifty"}, "valid number"),
        ({"maxMonthlyUSD": float("nan")}, "finite number"),
        # infinity is no limit by another name, and JSON (the CRD, S3) cannot carry it
        ({"maxMonthlyUSD": float("inf")}, "finite number"),
        ({"maxMonthlyUSD": "1e999"}, "finite number"),
        ({"maxMonthlyUSD": True}, "not a boolean"),  # YAML's `yes` is not $1
        ({"expectedRequestsPerSecond": float("inf")}, "finite number"),
        ({"expectedRequestsPerSecond": 1e308}, "less than or equal to 10000000"),
        ({"expectedRequestsPerSecond": -1}, "greater than or equal to 0"),
    ],
)
def test_a_budget_that_is_not_a_finite_positive_number_is_invalid(budget, message):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message):
        make_deployment(version=GOOD.version, budget=budget)


def test_a_huge_budget_and_the_largest_traffic_price_finitely():
    dep = make_deployment(
        version=GOOD.version,
        budget={"maxMonthlyUSD": 1e308, "expectedRequestsPerSecond": 10_000_000},
    )
    d = decide(replace(desired(dep), prices=from_table("us-east-1")), observed())
    assert not d.degraded and d.cost is not None
    # 10M requests/s: 7.3 PB of access log a month (3.67 M USD; no LCUs, as the tests'
    # network has no load balancer): absurd, but a number the status and the budget carry.
    logs = 10_000_000 * 300 * 730 * 3600 / 2**30 * 0.5
    assert d.cost.usd("load balancer LCUs") == 0
    assert d.cost.total == pytest.approx(TWO_SMALL_TASKS + logs, rel=1e-6)


def test_a_budget_never_keeps_a_failed_rollout_in_place():
    """The budget lowered (generation 3) while the rollout of BETTER fails or hangs: the
    rollback to GOOD still happens, since it returns to what ran before."""
    from test_plan import FAILED, IN_PROGRESS, NOW, _rolled_to_better, kinds

    for state in (FAILED, IN_PROGRESS):
        dep2, status2, obs2, _ = _rolled_to_better(state, deadline=300)
        obs2 = replace(obs2, now=NOW + timedelta(seconds=301))
        dep3 = make_deployment(
            version=dep2.spec.model.version, generation=3, deadline=300,
            budget={"maxMonthlyUSD": 5},
        )  # fmt: skip
        d = decide(replace(desired(dep3, status2), prices=from_table("us-east-1")), obs2)
        assert kinds(d.actions) == ["Rollback", "UpdateService", "MovePointer"], state
        assert cond(d.status, "Degraded") == ("True", "RolloutFailed")
        assert d.status.cost is not None  # still priced
