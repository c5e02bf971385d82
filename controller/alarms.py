"""The alarm that guards a progressive rollout while no controller judges it.

A Canary, Linear or BlueGreen deployment with ``spec.analysis`` lists one CloudWatch alarm
in ``deploymentConfiguration.alarms`` (with ``rollback``): the 5xx share of the new
revision's target group, above ``spec.analysis.maxErrorRate`` for two minutes. ECS rolls
the deployment back by itself when it fires, so a bad revision is caught even when the
controller is down mid-shift. The alarm's name is fixed per env (ECS's configuration does
not change between rollouts); before each rollout the controller points it at the target
group the new revision will register in: the one without production traffic.
"""

from __future__ import annotations

from controller import loadbalancing
from controller.shifts import rule_weights
from mlops_core import aws
from mlops_core.cost.requests import NAMESPACE, load_balancer_dimension, target_group_dimension
from mlops_core.naming import Platform

EVALUATION_MINUTES = 2


def green_target_group(platform: Platform, project: str, env: str) -> tuple[str, str] | None:
    """(the target group a new revision registers in, the production rule), or None."""
    blue = loadbalancing.find_target_group(platform, project, env, loadbalancing.SERVING_COLOR)
    green = loadbalancing.find_target_group(platform, project, env, "green")
    rule = loadbalancing.production_rule(platform, project, env)
    if blue is None or green is None or rule is None:
        return None
    weights = rule_weights(rule)
    idle = min((blue, green), key=lambda g: (weights.get(g, 0), g != green))
    return idle, rule


def point_canary_alarm(platform: Platform, project: str, env: str, threshold: float) -> str | None:
    """Create or re-point the env's canary alarm at the idle target group; its name."""
    found = green_target_group(platform, project, env)
    if found is None:
        return None
    group, rule = found
    name = platform.canary_alarm(project, env)
    dims = [
        {"Name": "TargetGroup", "Value": target_group_dimension(group)},
        {"Name": "LoadBalancer", "Value": load_balancer_dimension(rule)},
    ]

    def stat(key: str, metric: str) -> dict:
        return {
            "Id": key,
            "MetricStat": {
                "Metric": {"Namespace": NAMESPACE, "MetricName": metric, "Dimensions": dims},
                "Period": 60,
                "Stat": "Sum",
            },
            "ReturnData": False,
        }

    aws.client("cloudwatch").put_metric_alarm(
        AlarmName=name,
        AlarmDescription=(
            f"5xx share of the new revision of {project}/{env} during a progressive rollout; "
            "ECS rolls the rollout back when it fires (set by the mlops controller)"
        ),
        Metrics=[
            stat("errors", "HTTPCode_Target_5XX_Count"),
            stat("elb", "HTTPCode_ELB_5XX_Count"),
            stat("requests", "RequestCount"),
            {
                "Id": "share",
                "Expression": "(FILL(errors, 0) + FILL(elb, 0)) / requests",
                "Label": "5xx share",
                "ReturnData": True,
            },
        ],
        ComparisonOperator="GreaterThanThreshold",
        Threshold=threshold,
        EvaluationPeriods=EVALUATION_MINUTES,
        DatapointsToAlarm=EVALUATION_MINUTES,
        TreatMissingData="notBreaching",
        Tags=[{"Key": k, "Value": v} for k, v in platform.cost_tags(project, env).items()],
    )
    return name
