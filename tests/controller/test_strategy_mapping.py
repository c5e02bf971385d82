"""spec.strategy -> ECS's deploymentConfiguration, and back: one mapping
(controller.actions.Rollout), so a converged service is never updated again."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from reconcile_support import cond, make_deployment

from controller.actions import Rollout
from controller.api import Analysis, Approval, ModelDeploymentSpec, Strategy
from controller.plan import rollout

STRATEGIES = [
    {"type": "Rolling"},
    {"type": "Canary"},
    {"type": "Canary", "canary": {"percent": 12.5, "bakeMinutes": 3}, "bakeMinutes": 7},
    {"type": "Linear", "linear": {"stepPercent": 20, "stepBakeMinutes": 1}},
    {"type": "Linear"},
    {"type": "BlueGreen", "bakeMinutes": 15},
]


@pytest.mark.parametrize("spec", STRATEGIES, ids=lambda s: str(s))
def test_what_ecs_reports_back_compares_equal_to_what_was_asked(spec):
    wanted = rollout(Strategy.model_validate(spec))
    # ECS echoes the fields it was given, with the circuit breaker and percents beside.
    reported = {
        "deploymentCircuitBreaker": {"enable": True, "rollback": True},
        "maximumPercent": 200,
        "minimumHealthyPercent": 100,
        **wanted.ecs(),
    }
    assert Rollout.from_ecs(reported) == wanted
    assert wanted.shifts_traffic == (spec["type"] != "Rolling")


def test_the_defaults_are_ecs_defaults_written_out():
    assert rollout(Strategy(type="Canary")).ecs() == {
        "strategy": "CANARY",
        "bakeTimeInMinutes": 0,
        "canaryConfiguration": {"canaryPercent": 5.0, "canaryBakeTimeInMinutes": 10},
        # Written out empty, so that dropping analysis or approval removes ECS's hooks.
        "lifecycleHooks": [],
        "alarms": {"alarmNames": [], "enable": False, "rollback": False},
    }
    assert rollout(Strategy(type="Linear")).ecs()["linearConfiguration"] == {
        "stepPercent": 10.0,
        "stepBakeTimeInMinutes": 6,
    }
    assert rollout(Strategy()).ecs() == {"strategy": "ROLLING"}


@pytest.mark.parametrize(
    "spec, says",
    [
        ({"type": "Rolling", "canary": {"percent": 5}}, "strategy.canary is for type Canary"),
        ({"type": "Canary", "linear": {}}, "strategy.linear is for type Linear"),
        ({"type": "Rolling", "bakeMinutes": 5}, "bakeMinutes is for the traffic-shifting"),
        ({"type": "Canary", "canary": {"percent": 5.05}}, "steps of 0.1"),
        ({"type": "Canary", "canary": {"percent": 0}}, "greater than or equal to 0.1"),
        ({"type": "Shadow"}, "Rolling"),
    ],
)
def test_settings_of_another_type_are_refused_by_name(spec, says):
    with pytest.raises(ValidationError, match=says):
        Strategy.model_validate(spec)


def test_a_traffic_shifting_type_without_load_balancers_is_invalid_with_zero_writes(
    platform, versions, make_reconciler, mutations
):
    dep = make_deployment(version=versions.good)
    spec = dep.spec.model_copy(update={"strategy": Strategy(type="Canary")})
    dep = dep.model_copy(update={"spec": spec})
    result = make_reconciler().reconcile(dep, None)  # the network fixture has none
    assert cond(result.status, "Degraded") == ("True", "InvalidSpec")
    assert "MLOPS_LOAD_BALANCERS=none" in result.status.condition("Degraded").message
    assert sum(mutations.values()) == 0, mutations


def test_approval_and_analysis_pause_where_they_judge_and_round_trip_through_ecs():
    strategy = Strategy(type="Linear")
    wanted = rollout(
        strategy,
        analysis=Analysis(timeoutMinutes=30, timeoutAction="CONTINUE", maxErrorRate=0.02),
        approval=Approval(timeoutMinutes=120),
        alarm="demo-prod-canary-errors",
    )
    # With analysis, ECS rolls back by itself on the canary alarm (the controller down).
    assert wanted.ecs()["alarms"] == {
        "alarmNames": ["demo-prod-canary-errors"],
        "enable": True,
        "rollback": True,
    }
    assert wanted.alarm_error_rate == 0.02
    assert wanted.ecs()["lifecycleHooks"] == [
        {
            "targetType": "PAUSE",
            "lifecycleStages": ["POST_TEST_TRAFFIC_SHIFT"],
            "timeoutConfiguration": {"timeoutInMinutes": 120, "action": "ROLLBACK"},
        },
        {
            "targetType": "PAUSE",
            "lifecycleStages": ["PRODUCTION_TRAFFIC_SHIFT"],
            "timeoutConfiguration": {"timeoutInMinutes": 30, "action": "CONTINUE"},
        },
    ]
    assert Rollout.from_ecs(wanted.ecs()) == wanted
    # Hooks that are not PAUSE hooks (a Lambda someone added) are not the controller's.
    lam = {**wanted.ecs(), "lifecycleHooks": [{"targetType": "AWS_LAMBDA",
                                                "lifecycleStages": ["SCALE_UP"]}]}  # fmt: skip
    assert Rollout.from_ecs(lam).hooks == ()


@pytest.mark.parametrize(
    "extra, says",
    [
        ({"analysis": {}}, "spec.analysis needs a traffic-shifting strategy"),
        ({"approval": {}}, "spec.approval needs a traffic-shifting strategy"),
        (
            {"strategy": {"type": "Canary"}, "analysis": {"maxPredictionShift": 0.2}},
            "maxPredictionShift reads the capture",
        ),
        ({"strategy": {"type": "Canary"}, "analysis": {"minRequests": 0}}, "greater than"),
    ],
)
def test_analysis_and_approval_are_refused_where_they_cannot_work(extra, says):
    spec = {
        "project": "demo",
        "env": "prod",
        "model": {"version": "20260101T000000Z-abcdef0"},
        "serving": {"image": "img:1"},
        **extra,
    }
    with pytest.raises(ValidationError, match=says):
        ModelDeploymentSpec.model_validate(spec)
