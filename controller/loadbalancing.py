"""Each env's load balancer: found by name, created where the platform owns it, its URL.

On AWS, Terraform creates one application load balancer per env with two target groups
(``infra/terraform/alb.tf``); the controller attaches its services to the ``blue`` one,
found by the name :mod:`mlops_core.naming` gives it. Where no Terraform ran (the local
endpoint under ``mlopsctl dev up``), the platform owns the load balancers
(``MLOPS_LOAD_BALANCERS=managed``): the controller ensures the same resources, with the
same settings, before it creates a service. ``MLOPS_LOAD_BALANCERS=none`` (the default)
creates services without one.

The settings below mirror ``alb.tf``; ``tests/infra`` checks that the two agree.
"""

from __future__ import annotations

import contextlib
from typing import Literal

from mlops_core import aws
from mlops_core.errors import NotFound
from mlops_core.naming import LOCAL_ENDPOINT_TAG, MANAGED_BY_TAG, TARGET_GROUP_COLORS, Platform

Mode = Literal["none", "terraform", "managed"]
MODES: tuple[str, ...] = ("none", "terraform", "managed")

#: The target group the services of the ROLLING strategy serve from.
SERVING_COLOR = "blue"
#: Readiness, not liveness: a task whose model cannot load never gets traffic and fails
#: its rollout.
HEALTH_CHECK = {
    "HealthCheckPath": "/ready",
    "Matcher": {"HttpCode": "200"},
    "HealthCheckIntervalSeconds": 15,
    "HealthCheckTimeoutSeconds": 5,
    "HealthyThresholdCount": 2,
    "UnhealthyThresholdCount": 3,
}
DEREGISTRATION_DELAY_SECONDS = 30
#: Seconds ECS ignores failing health checks of a new task while it loads its model
#: (Terraform's ``health_check_grace_period_seconds`` default).
HEALTH_CHECK_GRACE_SECONDS = 60
LISTENER_PORT = 80
# The production listener rule ECS shifts traffic on (traffic-shifting strategies).
PRODUCTION_RULE_PRIORITY = 1


class LoadBalancerNotFound(NotFound):
    reason = "LoadBalancerNotFound"


def _tags(platform: Platform, project: str, env: str) -> list[dict[str, str]]:
    return [
        {"Key": MANAGED_BY_TAG[0], "Value": MANAGED_BY_TAG[1]},
        {"Key": "mlops.platform.io/project", "Value": project},
        {"Key": "mlops.platform.io/env", "Value": env},
    ]


def find_target_group(
    platform: Platform, project: str, env: str, color: str = SERVING_COLOR
) -> str | None:
    """The ARN of an env's target group, or None."""
    elb = aws.client("elbv2")
    try:
        found = elb.describe_target_groups(Names=[platform.target_group(project, env, color)])
    except elb.exceptions.TargetGroupNotFoundException:
        return None
    groups = found.get("TargetGroups") or []
    return groups[0]["TargetGroupArn"] if groups else None


def target_group(
    mode: Mode,
    platform: Platform,
    project: str,
    env: str,
    *,
    port: int,
    subnets: tuple[str, ...],
    security_groups: tuple[str, ...],
) -> str:
    """The serving target group of an env: found (``terraform``), or ensured with its load
    balancer and listener (``managed``). Raises :class:`LoadBalancerNotFound`."""
    arn = find_target_group(platform, project, env)
    if arn is not None and mode == "terraform":
        return arn
    if mode == "terraform":
        raise LoadBalancerNotFound(
            f"target group {platform.target_group(project, env, SERVING_COLOR)} does not exist",
            where=f"{project}/{env}",
            hint=f"apply the Terraform module with {env!r} in var.envs, or set "
            "MLOPS_LOAD_BALANCERS=managed (the platform creates it) or none",
        )
    return ensure(
        platform, project, env, port=port, subnets=subnets, security_groups=security_groups
    )


def ensure(
    platform: Platform,
    project: str,
    env: str,
    *,
    port: int,
    subnets: tuple[str, ...],
    security_groups: tuple[str, ...],
) -> str:
    """Create what ``alb.tf`` creates for one env, where missing: the load balancer, the
    blue and green target groups, the HTTP listener forwarding 100/0 to them. Safe to
    repeat. Returns the blue target group's ARN."""
    elb = aws.client("elbv2")
    name = platform.load_balancer(project, env)
    try:
        lb = elb.describe_load_balancers(Names=[name])["LoadBalancers"][0]
    except elb.exceptions.LoadBalancerNotFoundException:
        lb = elb.create_load_balancer(
            Name=name,
            Subnets=list(subnets),
            SecurityGroups=list(security_groups),
            Scheme="internal",
            Type="application",
            Tags=_tags(platform, project, env),
        )["LoadBalancers"][0]
    vpc = lb["VpcId"]
    groups = {}
    for color in TARGET_GROUP_COLORS:
        arn = find_target_group(platform, project, env, color)
        if arn is None:
            arn = elb.create_target_group(
                Name=platform.target_group(project, env, color),
                Protocol="HTTP",
                Port=port,
                VpcId=vpc,
                TargetType="ip",
                HealthCheckEnabled=True,
                HealthCheckProtocol="HTTP",
                Tags=_tags(platform, project, env),
                **HEALTH_CHECK,
            )["TargetGroups"][0]["TargetGroupArn"]
            elb.modify_target_group_attributes(
                TargetGroupArn=arn,
                Attributes=[
                    {
                        "Key": "deregistration_delay.timeout_seconds",
                        "Value": str(DEREGISTRATION_DELAY_SECONDS),
                    }
                ],
            )
        groups[color] = arn
    listeners = elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]
    if not any(listener.get("Port") == LISTENER_PORT for listener in listeners):
        with contextlib.suppress(elb.exceptions.DuplicateListenerException):
            elb.create_listener(
                LoadBalancerArn=lb["LoadBalancerArn"],
                Protocol="HTTP",
                Port=LISTENER_PORT,
                DefaultActions=[_forward(groups["blue"], groups["green"])],
                Tags=_tags(platform, project, env),
            )
    return groups[SERVING_COLOR]


def production_rule(platform: Platform, project: str, env: str) -> str | None:
    """The env's production listener rule: the non-default rule of its listener that
    forwards to its blue and green target groups (alb.tf's, or one :func:`ensure` made)."""
    groups = {find_target_group(platform, project, env, c) for c in TARGET_GROUP_COLORS}
    elb = aws.client("elbv2")
    try:
        (lb,) = elb.describe_load_balancers(Names=[platform.load_balancer(project, env)])[
            "LoadBalancers"
        ]
    except elb.exceptions.LoadBalancerNotFoundException:
        return None
    for listener in elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]:
        if listener.get("Port") != LISTENER_PORT and listener.get("Protocol") != "HTTPS":
            continue
        for rule in elb.describe_rules(ListenerArn=listener["ListenerArn"])["Rules"]:
            if rule.get("IsDefault"):
                continue
            forwarded = {
                g["TargetGroupArn"]
                for a in rule.get("Actions") or []
                for g in (a.get("ForwardConfig") or {}).get("TargetGroups") or []
            }
            if forwarded and forwarded == groups:
                return rule["RuleArn"]
    return None


def live_target_group(platform: Platform, project: str, env: str) -> str | None:
    """The target group the env's production listener rule sends (most) traffic to, if
    the env has such a rule (a traffic-shifting strategy made or used it); else None."""
    rule = production_rule(platform, project, env)
    if rule is None:
        return None
    (found,) = aws.client("elbv2").describe_rules(RuleArns=[rule])["Rules"]
    weights = {
        g["TargetGroupArn"]: int(g.get("Weight", 1))
        for a in found.get("Actions") or []
        for g in (a.get("ForwardConfig") or {}).get("TargetGroups") or []
    }
    if not weights or not any(weights.values()):
        return None
    return max(weights, key=lambda g: weights[g])


def traffic_shifting(
    mode: Mode, platform: Platform, project: str, env: str, *, role_arn: str | None
) -> dict[str, str]:
    """``advancedConfiguration`` for a Canary, Linear or BlueGreen service: the green
    target group and the production listener rule, found (``terraform``) or made
    (``managed``: a path ``/*`` rule at priority 1, all to blue). ECS owns the rule's
    weights from then on; nothing here or in Terraform sets them again."""
    green = find_target_group(platform, project, env, "green")
    blue = find_target_group(platform, project, env, SERVING_COLOR)
    rule = production_rule(platform, project, env)
    if rule is None and mode == "managed" and blue and green:
        elb = aws.client("elbv2")
        (lb,) = elb.describe_load_balancers(Names=[platform.load_balancer(project, env)])[
            "LoadBalancers"
        ]
        listener = next(
            x
            for x in elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]
            if x.get("Port") == LISTENER_PORT
        )
        with contextlib.suppress(elb.exceptions.PriorityInUseException):
            elb.create_rule(
                ListenerArn=listener["ListenerArn"],
                Priority=PRODUCTION_RULE_PRIORITY,
                Conditions=[{"Field": "path-pattern", "Values": ["/*"]}],
                Actions=[_forward(blue, green)],
                Tags=_tags(platform, project, env),
            )
        rule = production_rule(platform, project, env)
    if rule is None or green is None:
        raise LoadBalancerNotFound(
            f"no production listener rule forwarding to the blue and green target groups "
            f"of {project}/{env}",
            where=platform.load_balancer(project, env),
            hint="apply the Terraform module (alb.tf makes the rule), or use strategy.type Rolling",
        )
    out = {"alternateTargetGroupArn": green, "productionListenerRule": rule}
    if role_arn:
        out["roleArn"] = role_arn
    return out


def _forward(blue: str, green: str) -> dict:
    return {
        "Type": "forward",
        "ForwardConfig": {
            "TargetGroups": [
                {"TargetGroupArn": blue, "Weight": 100},
                {"TargetGroupArn": green, "Weight": 0},
            ]
        },
    }


def endpoint_url(platform: Platform, project: str, env: str) -> str | None:
    """Where an env's load balancer answers: the local data plane's loopback URL (the
    listener's :data:`LOCAL_ENDPOINT_TAG`), else ``http(s)://`` its DNS name; None when
    the env has no load balancer or no listener yet."""
    elb = aws.client("elbv2")
    try:
        lb = elb.describe_load_balancers(Names=[platform.load_balancer(project, env)])
    except elb.exceptions.LoadBalancerNotFoundException:
        return None
    found = lb["LoadBalancers"][0]
    listeners = elb.describe_listeners(LoadBalancerArn=found["LoadBalancerArn"])["Listeners"]
    if not listeners:
        return None
    tags = elb.describe_tags(ResourceArns=[listener["ListenerArn"] for listener in listeners])
    local = {
        d["ResourceArn"]: t["Value"]
        for d in tags["TagDescriptions"]
        for t in d.get("Tags", [])
        if t["Key"] == LOCAL_ENDPOINT_TAG
    }
    # HTTPS when there is one (on AWS port 80 then only redirects to it).
    for listener in sorted(listeners, key=lambda item: item.get("Protocol") != "HTTPS"):
        if listener["ListenerArn"] in local:
            return local[listener["ListenerArn"]]
    listener = sorted(listeners, key=lambda item: item.get("Protocol") != "HTTPS")[0]
    scheme = "https" if listener.get("Protocol") == "HTTPS" else "http"
    default = 443 if scheme == "https" else 80
    port = "" if listener.get("Port") in (None, default) else f":{listener['Port']}"
    return f"{scheme}://{found['DNSName']}{port}"
