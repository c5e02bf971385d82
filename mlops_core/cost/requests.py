"""How many requests a deployment served: its load balancer's ``RequestCount``.

Each env has its own Application Load Balancer (``naming.alb_name``), which publishes
``AWS/ApplicationELB`` ``RequestCount`` (dimension ``LoadBalancer = app/{name}/{id}``)
to CloudWatch by itself on AWS: every request that reached the load balancer, health
checks excluded, and only while requests flow (no datapoint is no request). Locally, the
local load balancer of ``mlopsctl dev up`` puts the same metrics into the local
CloudWatch (``mlopsctl.dataplane.albmetrics``); a deployment without a load balancer
has an unknown count, not zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from botocore.exceptions import BotoCoreError, ClientError

from mlops_core import aws
from mlops_core.naming import Platform

NAMESPACE = "AWS/ApplicationELB"
METRIC = "RequestCount"
DAY = 86400


@dataclass(frozen=True)
class RequestCount:
    requests: float | None  # None: unknown (see reason)
    source: str  # what was read
    reason: str = ""
    #: The env's load balancer exists (and is billed by the hour, traffic or not).
    load_balancer: bool = True


def load_balancer_dimension(arn: str) -> str:
    """``app/{name}/{id}``: the LoadBalancer dimension of an ALB's metrics, from the ARN of
    the load balancer, of one of its listeners or of a listener rule."""
    tail = (
        arn.partition(":loadbalancer/")[2]
        or arn.partition(":listener/")[2]
        or arn.partition(":listener-rule/")[2]
    )
    return "/".join(tail.split("/")[:3])


def target_group_dimension(arn: str) -> str:
    """``targetgroup/{name}/{id}``: the TargetGroup dimension, from its ARN."""
    return "targetgroup/" + arn.partition(":targetgroup/")[2]


def request_count(
    platform: Platform, project: str, env: str, start: datetime, end: datetime
) -> RequestCount:
    """Requests through the env's load balancer in [start, end)."""
    name = platform.load_balancer(project, env)
    source = f"CloudWatch {NAMESPACE} {METRIC} of load balancer {name}"
    elbv2 = aws.client("elbv2")
    try:
        found = elbv2.describe_load_balancers(Names=[name])["LoadBalancers"]
    except ClientError as exc:
        if aws.error_code(exc) == "LoadBalancerNotFound":
            return RequestCount(None, source, f"no load balancer {name}", load_balancer=False)
        raise
    dimension = load_balancer_dimension(found[0]["LoadBalancerArn"])
    # Whole days, so that a 30-day window is 30 datapoints (the API returns at most 1440).
    period = DAY if end - start >= timedelta(days=1) else 60
    try:
        stats = aws.client("cloudwatch").get_metric_statistics(
            Namespace=NAMESPACE,
            MetricName=METRIC,
            Dimensions=[{"Name": "LoadBalancer", "Value": dimension}],
            StartTime=start,
            EndTime=end,
            Period=period,
            Statistics=["Sum"],
        )
    except (ClientError, BotoCoreError) as exc:
        return RequestCount(None, source, f"CloudWatch unavailable: {exc}")
    points = stats.get("Datapoints", [])
    # A load balancer reports RequestCount only while requests flow: no datapoint is zero.
    reason = "" if points else "no datapoints: no requests in the window"
    return RequestCount(sum(p["Sum"] for p in points), source, reason)
