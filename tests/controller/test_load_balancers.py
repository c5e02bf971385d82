"""Services behind their env's load balancer (controller.loadbalancing), against moto over
HTTP: the one Terraform made (found by name), or one the controller makes."""

from __future__ import annotations

from dataclasses import replace

from reconcile_support import PROJECT, cond, ecs_service, make_deployment

from controller import loadbalancing
from controller.plan import NetworkConfig
from mlops_core import aws
from mlops_core.config import PlatformSettings


def test_managed_mode_creates_what_terraform_would_and_attaches_the_service(
    make_reconciler, versions, platform, network
):
    rec = make_reconciler(network=replace(network, load_balancers="managed"))
    dep = make_deployment(version=versions.good)
    assert not rec.reconcile(dep, None).degraded
    elb = aws.client("elbv2")
    lb = elb.describe_load_balancers(Names=[platform.load_balancer(PROJECT, "prod")])
    groups = {
        g["TargetGroupName"]: g
        for g in elb.describe_target_groups(
            Names=[platform.target_group(PROJECT, "prod", c) for c in ("blue", "green")]
        )["TargetGroups"]
    }
    blue = groups[platform.target_group(PROJECT, "prod", "blue")]
    assert blue["HealthCheckPath"] == "/ready" and blue["Matcher"] == {"HttpCode": "200"}
    attrs = elb.describe_target_group_attributes(TargetGroupArn=blue["TargetGroupArn"])
    assert {"Key": "deregistration_delay.timeout_seconds", "Value": "30"} in attrs["Attributes"]
    (listener,) = elb.describe_listeners(LoadBalancerArn=lb["LoadBalancers"][0]["LoadBalancerArn"])[
        "Listeners"
    ]
    weights = {
        g["TargetGroupArn"]: g["Weight"]
        for g in listener["DefaultActions"][0]["ForwardConfig"]["TargetGroups"]
    }
    assert weights[blue["TargetGroupArn"]] == 100 and sorted(weights.values()) == [0, 100]
    svc = ecs_service(platform)
    assert svc["loadBalancers"] == [
        {
            "targetGroupArn": blue["TargetGroupArn"],
            "containerName": "serving",
            "containerPort": 8080,
        }
    ]
    # A second controller ensures nothing twice.
    again = make_reconciler(network=replace(network, load_balancers="managed"))
    again.reconcile(dep, None)
    assert len(elb.describe_load_balancers()["LoadBalancers"]) == 1


def test_terraform_mode_without_the_target_group_says_what_to_apply(
    make_reconciler, versions, network
):
    rec = make_reconciler(network=replace(network, load_balancers="terraform"))
    result = rec.reconcile(make_deployment(version=versions.good), None)
    assert result.degraded
    assert cond(result.status, "Degraded") == ("True", "LoadBalancerNotFound")
    message = result.status.condition("Degraded").message
    assert "mlops-usedcar-price-prod-blue does not exist" in message
    assert "apply the Terraform module" in message


def test_an_unknown_load_balancer_mode_is_refused(monkeypatch):
    import pytest

    from mlops_core.errors import InvalidInput

    monkeypatch.setenv("MLOPS_LOAD_BALANCERS", "yes")
    with pytest.raises(InvalidInput, match="MLOPS_LOAD_BALANCERS: invalid value 'yes'"):
        NetworkConfig.from_settings(PlatformSettings.load())


def test_a_rolling_service_registers_where_the_production_rule_forwards(platform, network):
    net = replace(network, load_balancers="managed")
    assert loadbalancing.live_target_group(platform, PROJECT, "prod") is None  # no ALB yet
    loadbalancing.ensure(platform, PROJECT, "prod", port=8080, subnets=net.subnets,
                         security_groups=net.security_groups)  # fmt: skip
    assert loadbalancing.live_target_group(platform, PROJECT, "prod") is None  # no rule yet
    shifting = loadbalancing.traffic_shifting("managed", platform, PROJECT, "prod", role_arn=None)
    rule, green = shifting["productionListenerRule"], shifting["alternateTargetGroupArn"]
    blue = loadbalancing.find_target_group(platform, PROJECT, "prod", "blue")
    assert loadbalancing.live_target_group(platform, PROJECT, "prod") == blue
    # A canary or blue/green that completed left production on green (ECS moved the weights).
    elb = aws.client("elbv2")
    groups = [{"TargetGroupArn": blue, "Weight": 0}, {"TargetGroupArn": green, "Weight": 999}]
    elb.modify_rule(
        RuleArn=rule, Actions=[{"Type": "forward", "ForwardConfig": {"TargetGroups": groups}}]
    )
    assert loadbalancing.live_target_group(platform, PROJECT, "prod") == green
