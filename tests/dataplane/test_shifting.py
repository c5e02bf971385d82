"""Traffic-shifting deployments (CANARY, LINEAR, BLUE_GREEN) on the local data plane, as
ECS runs them: two target groups, ECS-owned listener rule weights, PAUSE lifecycle hooks
continued or rolled back with ContinueServiceDeployment, deployment alarms; over real
HTTP through the local load balancer, under steady load."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError
from conftest import Load, wait_for

from controller.loadbalancing import find_target_group
from mlops_core import aws

NAME = "demo-prod"
#: How far the observed share of the new revision may be from the step's weight: the
#: balancer's round robin is exact per request, the window edges are not.
SHARE_TOLERANCE = 0.08


def _blue_green(env) -> tuple[str, str, str]:
    """The env's two target groups and a production listener rule, 100/0, as Terraform's
    alb.tf would make them for a traffic-shifting service."""
    blue = env.load_balancer()
    green = find_target_group(env.platform, "demo", "prod", "green")
    elb = env.elb()
    (lb,) = elb.describe_load_balancers(Names=[env.platform.load_balancer("demo", "prod")])[
        "LoadBalancers"
    ]
    (listener,) = elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]
    rule = elb.create_rule(
        ListenerArn=listener["ListenerArn"],
        Priority=1,
        Conditions=[{"Field": "path-pattern", "Values": ["/*"]}],
        Actions=[
            {
                "Type": "forward",
                "ForwardConfig": {
                    "TargetGroups": [
                        {"TargetGroupArn": blue, "Weight": 999},
                        {"TargetGroupArn": green, "Weight": 0},
                    ]
                },
            }
        ],
    )["Rules"][0]["RuleArn"]
    return blue, green, rule


def _service(env, task_definition, blue, green, rule, **config) -> dict:
    return env.ecs().create_service(
        cluster=env.platform.ecs_cluster,
        serviceName=NAME,
        taskDefinition=task_definition,
        desiredCount=2,
        launchType="FARGATE",
        networkConfiguration=env.network,
        healthCheckGracePeriodSeconds=0,
        loadBalancers=[
            {
                "targetGroupArn": blue,
                "containerName": "serving",
                "containerPort": 8080,
                "advancedConfiguration": {
                    "alternateTargetGroupArn": green,
                    "productionListenerRule": rule,
                    "roleArn": "arn:aws:iam::123456789012:role/ecs-infrastructure",
                },
            }
        ],
        deploymentConfiguration={
            "deploymentCircuitBreaker": {"enable": True, "rollback": True},
            **config,
        },
    )["service"]


def _update(env, task_definition) -> None:
    env.ecs().update_service(
        cluster=env.platform.ecs_cluster, service=NAME, taskDefinition=task_definition
    )


def _current(env) -> dict:
    ecs = env.ecs()
    listed = ecs.list_service_deployments(cluster=env.platform.ecs_cluster, service=NAME)
    arn = listed["serviceDeployments"][0]["serviceDeploymentArn"]
    return ecs.describe_service_deployments(serviceDeploymentArns=[arn])["serviceDeployments"][0]


def _paused(env, stage: str) -> dict:
    def waiting():
        sd = _current(env)
        hooks = sd.get("lifecycleHookDetails") or []
        if sd.get("lifecycleStage") == stage and any(
            h["status"] == "AWAITING_ACTION" for h in hooks
        ):
            return sd
        return None

    return wait_for(waiting, timeout=90, what=f"a hook holding the deployment at {stage}",
                    show=lambda: _current(env))  # fmt: skip


def _weights(env, rule: str) -> dict[str, int]:
    (found,) = env.elb().describe_rules(RuleArns=[rule])["Rules"]
    groups = found["Actions"][0]["ForwardConfig"]["TargetGroups"]
    return {g["TargetGroupArn"]: g["Weight"] for g in groups}


def _share(versions: list[str], version: str) -> float:
    return versions.count(version) / max(1, len(versions))


CANARY = {
    "strategy": "CANARY",
    "canaryConfiguration": {"canaryPercent": 30.0, "canaryBakeTimeInMinutes": 2},
    "bakeTimeInMinutes": 1,
    "lifecycleHooks": [{"targetType": "PAUSE", "lifecycleStages": ["PRODUCTION_TRAFFIC_SHIFT"]}],
}


def test_a_canary_holds_at_its_share_continues_and_then_rolls_back_losing_no_request(env):
    blue, green, rule = _blue_green(env)
    v1 = env.register(NAME, VERSION="v1")
    _service(env, v1, blue, green, rule, **CANARY)
    env.wait_rollout(NAME, "COMPLETED")  # the first deployment takes all traffic at once
    assert _weights(env, rule) == {blue: 999, green: 0}
    url = env.url()
    with Load(url) as load:
        wait_for(lambda: load.versions.count("v1") >= 20, what="v1 to serve")
        v2 = env.register(NAME, VERSION="v2")
        _update(env, v2)
        sd = _paused(env, "PRODUCTION_TRAFFIC_SHIFT")
        # Held after the canary's bake: 30 % of production traffic on v2.
        assert _weights(env, rule) == {blue: 700, green: 300}
        start = len(load.versions)
        wait_for(lambda: len(load.versions) - start >= 200, timeout=60, what="canary traffic")
        window = load.versions[start:]
        assert abs(_share(window, "v2") - 0.30) <= SHARE_TOLERANCE, _share(window, "v2")
        (hook,) = sd["lifecycleHookDetails"]
        assert hook["targetType"] == "PAUSE" and hook["timeoutAction"] == "ROLLBACK"
        env.ecs().continue_service_deployment(
            serviceDeploymentArn=sd["serviceDeploymentArn"], hookId=hook["hookId"],
            action="CONTINUE",
        )  # fmt: skip
        # Answered: no longer awaiting action, and a second answer is refused.
        (answered,) = env.ecs().describe_service_deployments(
            serviceDeploymentArns=[sd["serviceDeploymentArn"]]
        )["serviceDeployments"]
        assert answered["lifecycleHookDetails"][0]["status"] in ("IN_PROGRESS", "SUCCEEDED")
        with pytest.raises(ClientError, match="InvalidParameterException"):
            env.ecs().continue_service_deployment(
                serviceDeploymentArn=sd["serviceDeploymentArn"], hookId=hook["hookId"],
                action="CONTINUE",
            )  # fmt: skip
        done = env.wait_rollout(NAME, "COMPLETED", timeout=90)
        assert done["taskDefinition"] == v2
        wait_for(lambda: load.versions[-20:] == ["v2"] * 20, what="only v2 to answer")
        assert _weights(env, rule) == {blue: 0, green: 999}
        assert {t["taskDefinitionArn"] for t in env.tasks(NAME)} == {v2}

        # v3 is judged bad at the canary: ROLLBACK sends everything back to v2 at once.
        v3 = env.register(NAME, VERSION="v3")
        _update(env, v3)
        sd = _paused(env, "PRODUCTION_TRAFFIC_SHIFT")
        assert _weights(env, rule) == {green: 700, blue: 300}  # v3 is in the blue group
        before = {t["taskArn"] for t in env.tasks(NAME) if t["taskDefinitionArn"] == v2}
        (hook,) = sd["lifecycleHookDetails"]
        env.ecs().continue_service_deployment(
            serviceDeploymentArn=sd["serviceDeploymentArn"], hookId=hook["hookId"],
            action="ROLLBACK",
        )  # fmt: skip
        back = wait_for(
            lambda: (
                (d := env.primary(NAME))["taskDefinition"] == v2
                and d["rolloutState"] == "COMPLETED"
                and d
            ),
            timeout=90,
            what="the rollback to v2",
        )
        wait_for(lambda: load.versions[-20:] == ["v2"] * 20, what="only v2 to answer again")
    assert load.failed == 0, (load.codes, load.errors[:3])
    assert set(load.versions) == {"v1", "v2", "v3"}
    # v2's tasks never stopped: the rollback adopted them; v3's were stopped.
    running = env.tasks(NAME)
    assert {t["taskArn"] for t in running} == before
    assert all(t["startedBy"] == back["id"] for t in running)
    assert _current(env)["status"] == "SUCCESSFUL"
    statuses = [
        d["status"]
        for d in env.ecs().describe_service_deployments(
            serviceDeploymentArns=[
                b["serviceDeploymentArn"]
                for b in env.ecs().list_service_deployments(
                    cluster=env.platform.ecs_cluster, service=NAME
                )["serviceDeployments"]
            ]
        )["serviceDeployments"]
    ]
    assert "ROLLBACK_SUCCESSFUL" in statuses


def test_a_linear_rollout_steps_its_weights_and_an_alarm_rolls_it_back(env):
    blue, green, rule = _blue_green(env)
    cloudwatch = aws.client("cloudwatch")
    cloudwatch.put_metric_alarm(
        AlarmName="demo-prod-green-5xx", MetricName="HTTPCode_Target_5XX_Count",
        Namespace="AWS/ApplicationELB", Statistic="Sum", Period=60, EvaluationPeriods=1,
        Threshold=1, ComparisonOperator="GreaterThanOrEqualToThreshold",
    )  # fmt: skip
    linear = {
        "strategy": "LINEAR",
        "linearConfiguration": {"stepPercent": 25.0, "stepBakeTimeInMinutes": 1},
        "alarms": {"alarmNames": ["demo-prod-green-5xx"], "enable": True, "rollback": True},
    }
    v1 = env.register(NAME, VERSION="v1")
    _service(env, v1, blue, green, rule, **linear)
    env.wait_rollout(NAME, "COMPLETED")
    url = env.url()
    seen: list[int] = []
    with Load(url) as load:
        wait_for(lambda: load.versions.count("v1") >= 20, what="v1 to serve")
        v2 = env.register(NAME, VERSION="v2")
        _update(env, v2)

        def stepped():
            weights = _weights(env, rule)
            if weights[green] not in seen:
                seen.append(weights[green])
            return weights[green] >= 500

        wait_for(stepped, timeout=90, what="the linear steps to reach 50 %")
        cloudwatch.set_alarm_state(
            AlarmName="demo-prod-green-5xx", StateValue="ALARM", StateReason="test"
        )
        wait_for(
            lambda: (
                (d := env.primary(NAME))["taskDefinition"] == v1
                and d["rolloutState"] == "COMPLETED"
            ),
            timeout=90,
            what="the alarm's rollback to v1",
        )
        wait_for(lambda: load.versions[-20:] == ["v1"] * 20, what="only v1 to answer again")
    assert load.failed == 0, (load.codes, load.errors[:3])
    assert seen[:3] == [0, 250, 500], seen  # 25 % more each step, never skipped
    assert _weights(env, rule) == {blue: 999, green: 0}
    events = [e["message"] for e in env.describe(NAME)["events"]]
    assert any("demo-prod-green-5xx" in m for m in events), events[:5]
    rolled_back = next(
        d
        for d in env.ecs().describe_service_deployments(
            serviceDeploymentArns=[
                b["serviceDeploymentArn"]
                for b in env.ecs().list_service_deployments(
                    cluster=env.platform.ecs_cluster, service=NAME
                )["serviceDeployments"]
            ]
        )["serviceDeployments"]
        if d["status"] == "ROLLBACK_SUCCESSFUL"
    )
    assert rolled_back["alarms"]["status"] == "TRIGGERED"
    assert rolled_back["alarms"]["triggeredAlarmNames"] == ["demo-prod-green-5xx"]


def test_what_the_local_ecs_cannot_run_is_refused_and_a_wrong_hook_is_named(env):
    blue, green, rule = _blue_green(env)
    v1 = env.register(NAME, VERSION="v1")
    ecs = env.ecs()
    with pytest.raises(ClientError, match="advancedConfiguration"):
        env.service(NAME, v1, target_group=blue, strategy="BLUE_GREEN")
    lambda_hook = {"lifecycleHooks": [{"hookTargetArn": "arn:aws:lambda:us-east-1:1:function:f",
                                       "lifecycleStages": ["POST_SCALE_UP"]}]}  # fmt: skip
    with pytest.raises(ClientError, match="PAUSE lifecycle hooks only"):
        _service(env, v1, blue, green, rule, strategy="BLUE_GREEN", **lambda_hook)
    _service(env, v1, blue, green, rule, strategy="BLUE_GREEN")
    env.wait_rollout(NAME, "COMPLETED")
    sd = _current(env)
    with pytest.raises(ClientError, match="no lifecycle hook 'nope' awaiting action"):
        ecs.continue_service_deployment(serviceDeploymentArn=sd["serviceDeploymentArn"],
                                        hookId="nope", action="CONTINUE")  # fmt: skip
    with pytest.raises(ClientError) as err:
        ecs.continue_service_deployment(serviceDeploymentArn=sd["serviceDeploymentArn"] + "x",
                                        hookId="nope")  # fmt: skip
    assert err.value.response["Error"]["Code"] == "ServiceDeploymentNotFoundException"


def test_a_blue_green_hook_that_nobody_answers_takes_its_timeout_action(env):
    blue, green, rule = _blue_green(env)
    hook = {
        "targetType": "PAUSE",
        "lifecycleStages": ["POST_SCALE_UP"],
        # 1 minute is 3 s at the tests' time scale.
        "timeoutConfiguration": {"timeoutInMinutes": 1, "action": "CONTINUE"},
    }
    v1 = env.register(NAME, VERSION="v1")
    _service(env, v1, blue, green, rule, strategy="BLUE_GREEN", lifecycleHooks=[hook])
    env.wait_rollout(NAME, "COMPLETED")
    url = env.url()
    with Load(url) as load:
        wait_for(lambda: load.versions.count("v1") >= 20, what="v1 to serve")
        v2 = env.register(NAME, VERSION="v2")
        _update(env, v2)
        held = _paused(env, "POST_SCALE_UP")
        # Held with v2 running in green and no production traffic on it yet.
        assert _weights(env, rule) == {blue: 999, green: 0}
        assert {t["taskDefinitionArn"] for t in env.tasks(NAME)} == {v1, v2}
        done = env.wait_rollout(NAME, "COMPLETED", timeout=90)
        wait_for(lambda: load.versions[-20:] == ["v2"] * 20, what="only v2 to answer")
    assert done["taskDefinition"] == v2 and load.failed == 0, (load.codes, load.errors[:3])
    assert _weights(env, rule) == {blue: 0, green: 999}  # all at once: blue/green
    # v2 never answered before the hook's timeout let the shift happen.
    first_v2 = load.versions.index("v2")
    assert "v1" not in load.versions[first_v2:], "one switch, no flapping"
    (detail,) = _current(env)["lifecycleHookDetails"]
    assert detail["hookId"] == held["lifecycleHookDetails"][0]["hookId"]
    assert detail["status"] == "TIMED_OUT"
