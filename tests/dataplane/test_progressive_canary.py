"""A Canary ModelDeployment with spec.analysis, end to end on the local data plane.

ECS (the data plane) shifts the canary's share of production traffic, bakes, and pauses
at its PAUSE hook; the controller measures the step from the load balancer's metrics and
both versions' capture, writes the values to the status, and continues or rolls back
through ContinueServiceDeployment. Real serving tasks answer steady predictions through
the load balancer the whole time, and none of them fails.
"""

from __future__ import annotations

import time

from conftest import wait_for
from factories import make_artifacts, project_config
from progressive_support import (
    PROJECT,
    Predictions,
    deployment,
    drive,
    endpoint,
    grace,
    ready,
    reason,
    reconciler,
)

from mlops_core import aws
from mlops_core.cost.requests import target_group_dimension
from mlops_core.pointer import PointerStore
from mlops_core.registry import Registry

CANARY = {"type": "Canary", "canary": {"percent": 30, "bakeMinutes": 1}}
ANALYSIS = {
    "minRequests": 40,
    "maxErrorRateIncrease": 0.01,
    "maxLatencyP99Ratio": 20,  # two revisions on one busy 2-core machine: only gross changes
    "maxPredictionShift": 0.5,
    "timeoutMinutes": 60,  # 3 minutes at the tests' time scale
}
# The observed canary share may differ from the weight by this much over the pause's
# answers (a few hundred requests, round-robin between one task of each revision).
SHARE_TOLERANCE = 0.1


def test_a_canary_waits_for_traffic_passes_its_analysis_across_a_restart_and_a_bad_one_is_rolled_back(  # noqa: E501
    env, tmp_path, monkeypatch
):
    grace(monkeypatch)
    platform = env.platform
    registry = Registry(platform)
    registry.register_project(project_config())

    def publish(seed: int, offset: float = 0.0) -> str:
        folder = tmp_path / f"v{seed}"
        make_artifacts(folder, seed=seed, r2=0.8, offset=offset)
        return registry.publish(folder).version

    v1, v2 = publish(1), publish(2)
    bad = publish(3, offset=60_000.0)  # its predictions are far from the others'
    spec = {"strategy": CANARY, "analysis": ANALYSIS}
    rec = reconciler(env)
    status = drive(rec, deployment(v1, 1, **spec), None, ready)
    assert PointerStore(platform).get(PROJECT, "prod").version == v1

    # -- v2, with no traffic at first: the step waits instead of passing or failing.
    dep2 = deployment(v2, 2, **spec)
    status = drive(
        rec,
        dep2,
        status,
        lambda s: (
            s.rollout is not None
            and s.rollout.measuring is not None
            and "waiting for traffic" in s.rollout.measuring.message
        ),
    )
    assert status.rollout.canary_version == v2 and status.rollout.stable_version == v1
    assert status.rollout.canary_percent == 30.0 and status.rollout.stable_percent == 70.0
    assert reason(status) == "True:AnalysisRunning"
    assert (
        f"{v2} gets 30% of production traffic, {v1} 70%" in status.condition("Progressing").message
    )
    for _ in range(5):  # still waiting: nothing passed, nothing failed, nothing answered
        status = rec.reconcile(dep2, status).status
        time.sleep(0.3)
    assert status.rollout.steps == [] and status.rollout.failures == 0
    assert rec.executor.writes["ContinueDeployment"] == 0
    assert PointerStore(platform).get(PROJECT, "prod").version == v1

    with Predictions(endpoint(env)) as load:
        paused_from = time.monotonic()
        # The step is judged; the verdict is in the status before the hook is answered.
        status = drive(rec, dep2, status, lambda s: bool(s.rollout and s.rollout.steps))
        paused_until = time.monotonic()
        (step,) = status.rollout.steps
        assert step.verdict == "Pass", step
        assert step.canary.version == v2 and step.stable.version == v1
        assert step.canary.requests >= ANALYSIS["minRequests"] and step.stable.requests > 0
        assert step.canary.latency_p99_ms and step.stable.latency_p99_ms
        assert step.prediction_shift is not None and step.prediction_shift <= 0.5
        assert rec.executor.writes["ContinueDeployment"] == 0

        # The controller is replaced here (a restart: nothing but the status and AWS
        # survive). The new one answers the judged hook without measuring it again.
        restarted = reconciler(env)
        status = drive(restarted, dep2, status, ready)
        assert restarted.executor.writes["ContinueDeployment"] == 1
        assert restarted.observer.reads["cloudwatch:GetMetricData"] == 0
        assert [s.verdict for s in status.rollout.steps] == ["Pass"]
        assert status.rollout.outcome is None or status.rollout.outcome == "Completed"
        assert PointerStore(platform).get(PROJECT, "prod").version == v2

        # -- a version whose predictions moved: its canary fails and is rolled back.
        status = drive(
            restarted,
            deployment(bad, 3, **spec),
            status,
            lambda s: (d := s.condition("Degraded")) is not None and d.status == "True",
        )
        wait_for(
            lambda: load.share(v2, time.monotonic() - 2, time.monotonic())[0] == 1.0,
            60,
            "all traffic back on v2",
        )
    assert load.failed == 0, (load.codes, load.errors[:5])
    # The canary's share while it was paused matched its weight.
    share, answers = load.share(v2, paused_from, paused_until)
    assert answers > 50 and abs(share - 0.30) <= SHARE_TOLERANCE, (share, answers)
    degraded = status.condition("Degraded")
    assert degraded.reason == "RolloutFailed", degraded
    assert "analysis at 30%" in degraded.message and "prediction shift" in degraded.message
    failed = [s for s in status.rollout.steps if s.verdict == "Fail"]
    assert failed and failed[-1].canary.version == bad
    assert status.failed_version == bad
    assert status.rollout.outcome == "RolledBack"
    assert PointerStore(platform).get(PROJECT, "prod").version == v2


def test_with_the_controller_down_mid_shift_the_canary_alarm_rolls_back_by_ecs_itself(
    env, tmp_path, monkeypatch
):
    grace(monkeypatch)
    platform = env.platform
    registry = Registry(platform)
    registry.register_project(project_config())
    versions = []
    for seed in (1, 2):
        make_artifacts(tmp_path / f"v{seed}", seed=seed, r2=0.8)
        versions.append(registry.publish(tmp_path / f"v{seed}").version)
    v1, v2 = versions
    spec = {"strategy": CANARY, "analysis": {**ANALYSIS, "maxErrorRate": 0.02}}
    rec = reconciler(env)
    status = drive(rec, deployment(v1, 1, **spec), None, ready)
    service = platform.service_name(PROJECT, "prod")
    alarm = platform.canary_alarm(PROJECT, "prod")
    assert env.describe(service)["deploymentConfiguration"]["alarms"] == {
        "alarmNames": [alarm], "enable": True, "rollback": True,
    }  # fmt: skip

    # v2 reaches its pause (no traffic: the step waits), then the controller goes away.
    dep2 = deployment(v2, 2, **spec)
    status = drive(rec, dep2, status, lambda s: reason(s) == "True:AnalysisRunning")
    cw = aws.client("cloudwatch")
    (found,) = cw.describe_alarms(AlarmNames=[alarm])["MetricAlarms"]
    # The alarm watches the target group the new revision took (not the stable one).
    groups = {
        d["Value"]
        for m in found["Metrics"]
        if "MetricStat" in m
        for d in m["MetricStat"]["Metric"]["Dimensions"]
        if d["Name"] == "TargetGroup"
    }
    assert groups == {target_group_dimension(status.rollout.canary_target_group)}
    assert found["Threshold"] == 0.02
    cw.set_alarm_state(AlarmName=alarm, StateValue="ALARM", StateReason="5xx share above 2%")
    canary_td = status.task_definition

    def rolled_back() -> bool:
        primary = env.primary(service)
        return primary["taskDefinition"] != canary_td and primary["rolloutState"] == "COMPLETED"

    wait_for(rolled_back, 60, "ECS to roll back by itself", show=lambda: env.deployments(service))
    cw.set_alarm_state(AlarmName=alarm, StateValue="OK", StateReason="back to normal")

    # A controller started afterwards finds the rollback ECS made and records it.
    status = drive(
        reconciler(env),
        dep2,
        status,
        lambda s: (d := s.condition("Degraded")) is not None and d.status == "True",
    )
    degraded = status.condition("Degraded")
    assert degraded.reason == "RolloutFailed" and "alarm" in degraded.message, degraded
    assert status.failed_version == v2 and status.rollout.outcome == "RolledBack"
    assert PointerStore(platform).get(PROJECT, "prod").version == v1
