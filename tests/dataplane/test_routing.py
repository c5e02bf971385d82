"""The local ALB's routing, over real HTTP: weighted target groups, rules, fixed responses."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
from conftest import wait_for

from mlops_core import aws
from mlops_core.cost.requests import load_balancer_dimension, target_group_dimension
from mlops_core.naming import LOCAL_ENDPOINT_TAG

REQUESTS = 1000
# Smooth weighted round robin makes shares exact over any whole number of weight cycles;
# the stated tolerance allows for requests that land on the switch-over.
TOLERANCE = 0.02


def _two_groups(env) -> tuple[str, str, str]:
    """Blue and green target groups of one listener, one healthy task each."""
    blue = env.load_balancer()
    green = env.elb().describe_target_groups(
        Names=[env.platform.target_group("demo", "prod", "green")]
    )["TargetGroups"][0]["TargetGroupArn"]
    env.service("demo-blue", env.register("demo-blue", VERSION="blue"), target_group=blue, count=1)
    env.service(
        "demo-green", env.register("demo-green", VERSION="green"), target_group=green, count=1
    )
    env.wait_rollout("demo-blue", "COMPLETED")
    env.wait_rollout("demo-green", "COMPLETED")
    lb = env.elb().describe_load_balancers(Names=[env.platform.load_balancer("demo", "prod")])
    (listener,) = env.elb().describe_listeners(
        LoadBalancerArn=lb["LoadBalancers"][0]["LoadBalancerArn"]
    )["Listeners"]
    return blue, green, listener["ListenerArn"]


def _weigh(env, listener: str, weights: dict[str, int]) -> None:
    """The listener forwards to the target groups by ``weights`` (ForwardConfig)."""
    groups = [{"TargetGroupArn": arn, "Weight": w} for arn, w in weights.items()]
    env.elb().modify_listener(
        ListenerArn=listener,
        DefaultActions=[{"Type": "forward", "ForwardConfig": {"TargetGroups": groups}}],
    )


def test_weighted_target_groups_share_traffic_by_weight(env):
    blue, green, listener = _two_groups(env)
    url = env.url()
    assert Counter(httpx.get(url, timeout=10).json()["version"] for _ in range(20)) == {"blue": 20}
    _weigh(env, listener, {blue: 80, green: 20})
    with httpx.Client(timeout=10) as client:
        wait_for(lambda: client.get(url).json()["version"] == "green", what="the new weights")
        # Eight clients at once: the load balancer picks each request's group in order.
        with ThreadPoolExecutor(8) as pool:
            shares = Counter(pool.map(lambda _: client.get(url).json()["version"], range(REQUESTS)))
    assert sum(shares.values()) == REQUESTS
    assert abs(shares["green"] / REQUESTS - 0.20) <= TOLERANCE, shares
    assert abs(shares["blue"] / REQUESTS - 0.80) <= TOLERANCE, shares


def test_rules_route_by_path_and_header_before_the_default_action(env):
    blue, green, listener = _two_groups(env)
    elb = env.elb()
    elb.create_rule(
        ListenerArn=listener,
        Priority=10,
        Conditions=[
            {
                "Field": "http-header",
                "HttpHeaderConfig": {"HttpHeaderName": "X-Canary", "Values": ["yes"]},
            }
        ],
        Actions=[{"Type": "forward", "TargetGroupArn": green}],
    )
    elb.create_rule(
        ListenerArn=listener,
        Priority=20,
        Conditions=[{"Field": "path-pattern", "PathPatternConfig": {"Values": ["/maintenance*"]}}],
        Actions=[
            {
                "Type": "fixed-response",
                "FixedResponseConfig": {
                    "StatusCode": "418",
                    "ContentType": "text/plain",
                    "MessageBody": "brb",
                },
            }
        ],
    )
    url = env.url()
    with httpx.Client(timeout=10) as client:
        wait_for(lambda: client.get(f"{url}/maintenance").status_code == 418, what="the rules")
        assert client.get(f"{url}/maintenance/now").text == "brb"
        assert client.get(url, headers={"X-Canary": "yes"}).json()["version"] == "green"
        assert client.get(url).json()["version"] == "blue"
        forwarded = client.post(f"{url}/predict", json={}).headers
    assert "x-amzn-trace-id" not in forwarded  # request headers only: nothing leaks back
    # The listener says where it answers, through the ELB API.
    tags = elb.describe_tags(ResourceArns=[listener])["TagDescriptions"][0]["Tags"]
    assert {t["Key"]: t["Value"] for t in tags}[LOCAL_ENDPOINT_TAG] == url


def _sum(metric: str, **dimensions: str) -> float:
    now = datetime.now(UTC)
    points = aws.client("cloudwatch").get_metric_statistics(
        Namespace="AWS/ApplicationELB",
        MetricName=metric,
        Dimensions=[{"Name": k, "Value": v} for k, v in dimensions.items()],
        StartTime=now - timedelta(hours=1),
        EndTime=now + timedelta(minutes=5),
        Period=60,
        Statistics=["Sum"],
    )["Datapoints"]
    return sum(p["Sum"] for p in points)


def test_the_load_balancer_publishes_its_cloudwatch_metrics_per_target_group(env):
    """RequestCount and the HTTPCode counts as an ALB publishes them, per load balancer and
    per target group (exact dimension sets: the total does not count the groups twice),
    equal to what the clients saw."""
    blue, green, listener = _two_groups(env)
    url = env.url()
    _weigh(env, listener, {blue: 3, green: 1})
    seen: Counter[str] = Counter()
    with httpx.Client(timeout=10) as client:

        def one() -> str:
            response = client.get(url)
            assert response.status_code == 200
            seen[response.json()["version"]] += 1
            return response.json()["version"]

        wait_for(lambda: one() == "green", what="the new weights")
        for _ in range(40):
            one()
    lb = load_balancer_dimension(listener)
    groups = {v: target_group_dimension(arn) for v, arn in (("blue", blue), ("green", green))}

    def counts() -> dict[str, float]:
        return {
            "total": _sum("RequestCount", LoadBalancer=lb),
            **{v: _sum("RequestCount", TargetGroup=g, LoadBalancer=lb) for v, g in groups.items()},
        }

    want = {"total": seen.total(), "blue": seen["blue"], "green": seen["green"]}
    wait_for(lambda: counts() == want, timeout=60, what=f"RequestCount {want}", show=counts)
    assert seen["green"] >= 10  # the weights took effect
    assert _sum("HTTPCode_Target_2XX_Count", LoadBalancer=lb) == seen.total()
    assert _sum("HTTPCode_Target_5XX_Count", LoadBalancer=lb) == 0
