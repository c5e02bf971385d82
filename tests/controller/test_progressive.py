"""The pauses of a progressive rollout, decided from what was observed (pure).

Each decision is checked over two passes, as the controller makes them: the pass that
measures writes the verdict into the status, and the next one answers ECS's hook. A
controller that restarts between them finds the verdict and answers without measuring.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from controller.actions import ANALYSIS_STAGE, APPROVAL_STAGE, Rollout
from controller.analysis import judge, prediction_shift
from controller.api import Analysis, ApprovalRecord, ModelDeploymentSpec, RevisionValues
from controller.observe import ServiceState, needs_measuring
from controller.progressive import AWAITING_APPROVAL, progress
from controller.shifts import Hook, Measurement, ShiftState

BLUE = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/demo-prod-blue/1"
GREEN = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/demo-prod-green/2"
SD = "arn:aws:ecs:us-east-1:1:service-deployment/c/demo-prod/abc123"
V1, V2 = "20260101T000000Z-aaaaaaa", "20260102T000000Z-bbbbbbb"
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _spec(**extra) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate(
        {
            "project": "demo",
            "env": "prod",
            "model": {"version": V2},
            "serving": {"image": "img:1"},
            "strategy": {"type": "Canary", "canary": {"percent": 20, "bakeMinutes": 5}},
            **extra,
        }
    )


def _service() -> ServiceState:
    return ServiceState(
        name="demo-prod",
        arn="arn:aws:ecs:us-east-1:1:service/c/demo-prod",
        status="ACTIVE",
        desired_count=2,
        task_definition="td:2",
        deployments=(),
        tags={},
        min_healthy_percent=100,
        max_percent=200,
        circuit_breaker=True,
        load_balancers=(BLUE,),
        deployment_strategy=Rollout(strategy="CANARY", canary=(20.0, 5)),
        alternate_target_group=GREEN,
        production_rule="arn:aws:elasticloadbalancing:us-east-1:1:listener-rule/app/x/1/2/3",
    )


def _shift(stage, green_weight, hook=None, measurement=None) -> ShiftState:
    return ShiftState(
        service_deployment=SD,
        status="IN_PROGRESS",
        stage=stage,
        hook=Hook(hook, stage, None) if hook else None,
        weights={BLUE: 1000 - green_weight, GREEN: green_weight},
        measurement=measurement,
    )


def _values(requests, errors=0, p99=20.0) -> RevisionValues:
    return RevisionValues(requests=requests, errors=errors, latency_p99_ms=p99)


def _run(spec, shift, known=None, *, now=T0, approval=None, needed=False, no_gate=None):
    return progress(
        spec,
        _service(),
        shift,
        known,
        canary_version=V2,
        stable_version=V1,
        approval_needed=needed,
        no_gate_reason=no_gate,
        approval=approval,
        owner="ml/demo-prod",
        now=now,
    )


def test_the_status_names_both_versions_and_their_shares_and_the_canary_group_is_kept():
    spec = _spec(analysis={})
    before = _run(spec, _shift("SCALE_UP", 0))
    # Before production traffic moves, the stable group is the one with all of it.
    assert before.rollout.canary_target_group == GREEN
    assert before.rollout.stable_target_group == BLUE
    during = _run(
        spec, _shift("PRODUCTION_TRAFFIC_SHIFT", 200), before.rollout, now=T0 + timedelta(seconds=5)
    )
    r = during.rollout
    assert (r.canary_version, r.canary_percent, r.stable_version, r.stable_percent) == (
        V2,
        20.0,
        V1,
        80.0,
    )
    assert f"{V2} gets 20% of production traffic, {V1} 80%" in during.message
    # The shares changed: the step's window starts now.
    assert r.traffic_since == T0 + timedelta(seconds=5)
    assert during.actions == []


def test_a_step_that_passes_is_written_first_and_continued_by_the_next_pass():
    spec = _spec(analysis={"minRequests": 50})
    first = _run(spec, _shift(ANALYSIS_STAGE, 200)).rollout
    passing = Measurement(canary=_values(120, 0, 25.0), stable=_values(480, 1, 22.0))
    judged = _run(
        spec, _shift(ANALYSIS_STAGE, 200, "h1", passing), first, now=T0 + timedelta(minutes=5)
    )
    assert judged.actions == [] and judged.soon
    (step,) = judged.rollout.steps
    assert step.verdict == "Pass" and step.canary.requests == 120 and step.stable.requests == 480
    assert step.traffic_percent == 20.0
    # The next pass (or a restarted controller) does not measure this hook again...
    assert not needs_measuring(judged.rollout, "h1", spec.analysis.failure_limit)
    answered = _run(spec, _shift(ANALYSIS_STAGE, 200, "h1"), judged.rollout)
    (action,) = answered.actions
    assert (action.action, action.hook_id, action.service_deployment) == ("CONTINUE", "h1", SD)
    assert "analysis passed at 20%" in action.reason
    assert len(answered.rollout.steps) == 1  # ...and records nothing twice


def test_too_little_traffic_waits_instead_of_passing_or_failing():
    spec = _spec(analysis={"minRequests": 100})
    first = _run(spec, _shift(ANALYSIS_STAGE, 200)).rollout
    quiet = Measurement(canary=_values(7, 7, 900.0), stable=_values(30))
    waiting = _run(spec, _shift(ANALYSIS_STAGE, 200, "h1", quiet), first)
    assert waiting.actions == [] and waiting.rollout.steps == []
    assert waiting.rollout.measuring is not None
    assert waiting.rollout.measuring.verdict == "Inconclusive"
    assert "served 7 of the 100 requests" in waiting.message


def test_a_failed_step_rolls_back_on_the_next_pass_naming_what_failed():
    spec = _spec(analysis={"maxErrorRateIncrease": 0.01, "maxErrorRate": 0.5})
    first = _run(spec, _shift(ANALYSIS_STAGE, 200)).rollout
    bad = Measurement(canary=_values(200, 40), stable=_values(800, 8))
    judged = _run(spec, _shift(ANALYSIS_STAGE, 200, "h1", bad), first)
    assert judged.actions == [] and judged.rollout.failures == 1
    assert "5xx share 20.00% exceeds the stable 1.00%" in judged.rollout.steps[0].message
    answered = _run(spec, _shift(ANALYSIS_STAGE, 200, "h1"), judged.rollout)
    (action,) = answered.actions
    assert action.action == "ROLLBACK" and "5xx share 20.00%" in action.reason


def test_failures_within_the_limit_measure_a_fresh_window():
    spec = _spec(analysis={"failureLimit": 1, "maxLatencyP99Ms": 100})
    first = _run(spec, _shift(ANALYSIS_STAGE, 200)).rollout
    slow = Measurement(canary=_values(100, 0, 250.0), stable=_values(400, 0, 240.0))
    later = T0 + timedelta(minutes=3)
    once = _run(spec, _shift(ANALYSIS_STAGE, 200, "h1", slow), first, now=later)
    assert once.rollout.failures == 1 and once.rollout.traffic_since == later
    assert needs_measuring(once.rollout, "h1", 1)  # still within failureLimit=1
    again = _run(spec, _shift(ANALYSIS_STAGE, 200, "h1"), once.rollout)
    assert again.actions == []  # waits for the next measurement
    twice = _run(spec, _shift(ANALYSIS_STAGE, 200, "h1", slow), again.rollout)
    assert twice.rollout.failures == 2
    assert not needs_measuring(twice.rollout, "h1", 1)
    (action,) = _run(spec, _shift(ANALYSIS_STAGE, 200, "h1"), twice.rollout).actions
    assert action.action == "ROLLBACK" and "more than failureLimit=1" in action.reason


def test_approval_holds_until_a_decision_for_this_version():
    spec = _spec(approval={})
    first = _run(spec, _shift(APPROVAL_STAGE, 0, "a1"), needed=True)
    assert first.reason == AWAITING_APPROVAL and first.actions == []
    assert f"mlopsctl approve demo-prod --version {V2}" in first.message
    other = ApprovalRecord(
        decision="approve", version=V1, by="ana", reason="ok", at=T0, source="s3"
    )
    still = _run(spec, _shift(APPROVAL_STAGE, 0, "a1"), first.rollout, approval=other, needed=True)
    assert still.reason == AWAITING_APPROVAL and f"names {V1}, not {V2}" in still.message
    yes = other.model_copy(update={"version": V2})
    go = _run(spec, _shift(APPROVAL_STAGE, 0, "a1"), first.rollout, approval=yes, needed=True)
    (action,) = go.actions
    assert action.action == "CONTINUE" and "approved by ana: ok" in action.reason
    assert go.rollout.approval == yes
    no = yes.model_copy(update={"decision": "reject", "reason": "not now"})
    (action,) = _run(spec, _shift(APPROVAL_STAGE, 0, "a1"), approval=no, needed=True).actions
    assert action.action == "ROLLBACK" and "rejected by ana: not now" in action.reason


def test_a_rollback_is_neither_held_nor_analysed():
    spec = _spec(approval={}, analysis={})
    why = "a rollback to V1, live here before, is neither held nor analysed"
    for stage in (APPROVAL_STAGE, ANALYSIS_STAGE):
        (action,) = _run(spec, _shift(stage, 0, "x"), needed=True, no_gate=why).actions
        assert action.action == "CONTINUE" and action.reason == why


@pytest.mark.parametrize(
    "canary, stable, shift, limits, verdict, says",
    [
        ((100, 0, 30.0), (100, 0, 10.0), None, {}, "Fail", "more than 1.5x the stable"),
        ((100, 0, 30.0), (100, 0, 25.0), None, {}, "Pass", "p99 30.0 ms vs 25.0 ms"),
        ((100, 2, 30.0), (100, 1, 25.0), None, {}, "Pass", "5xx 2.00% vs 1.00%"),
        ((100, 9, 30.0), (100, 9, 25.0), None, {}, "Fail", "9.00% is above 5.00% (maxErrorRate)"),
        (
            (100, 0, 30.0),
            (100, 0, 25.0),
            0.9,
            {"maxPredictionShift": 0.3},
            "Fail",
            "prediction shift 0.900",
        ),
        (
            (100, 0, 30.0),
            (100, 0, 25.0),
            None,
            {"maxPredictionShift": 0.3},
            "Inconclusive",
            "captured predictions",
        ),
        (  # a revision answering 5xx captures nothing: it fails, it does not wait
            (100, 100, 30.0),
            (100, 0, 25.0),
            None,
            {"maxPredictionShift": 0.3},
            "Fail",
            "100.00% is above 5.00% (maxErrorRate)",
        ),
        (
            (100, 0, 300.0),
            (100, 0, 25.0),
            None,
            {"maxPredictionShift": 0.3},
            "Fail",
            "more than 1.5x the stable",
        ),
    ],
)
def test_judge_gives_every_value_it_rests_on(canary, stable, shift, limits, verdict, says):
    found = judge(Analysis(**limits), _values(*canary), _values(*stable), shift)
    assert found.verdict == verdict and says in found.message, found


def test_prediction_shift_is_scale_free_and_needs_enough_predictions():
    same = [float(i) for i in range(100)]
    assert prediction_shift(same, same, "regression") == 0.0
    assert (
        prediction_shift([x * 1000 for x in same], [x * 1000 + 1e6 for x in same], "regression")
        == 1.0
    )
    assert prediction_shift(same[:5], same, "regression") is None
    labels = ["a"] * 50 + ["b"] * 50
    assert prediction_shift(labels, labels, "classification") == 0.0
    assert prediction_shift(["a"] * 100, ["b"] * 100, "classification") == pytest.approx(1.0)
