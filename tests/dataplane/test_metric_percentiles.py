"""Percentiles in the local CloudWatch, which moto lacks: the p99 latency a rollout's
analysis reads from an ALB's TargetResponseTime, over real HTTP in the API's shape."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mlops_core import aws
from mlopsctl.dataplane.albmetrics import MAX_VALUES, AlbMetrics

LISTENER = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/demo/abc/def"
GROUP = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/demo-prod-green/123"


def _query(key: str, stat: str, name: str = "TargetResponseTime") -> dict:
    return {
        "Id": key,
        "MetricStat": {
            "Metric": {
                "Namespace": "AWS/ApplicationELB",
                "MetricName": name,
                "Dimensions": [
                    {"Name": "TargetGroup", "Value": "targetgroup/demo-prod-green/123"},
                    {"Name": "LoadBalancer", "Value": "app/demo/abc"},
                ],
            },
            "Period": 60,
            "Stat": stat,
        },
    }


def test_the_load_balancers_latencies_answer_percentiles_as_cloudwatch_does(env):
    metrics = AlbMetrics()
    # 1,000 answers: 989 fast ones (1..989 ms spread over 10 ms steps) and 11 slow ones.
    for i in range(989):
        metrics.record(LISTENER, GROUP, 200, from_target=True, seconds=0.001 + (i % 10) / 1000)
    for _ in range(11):
        metrics.record(LISTENER, GROUP, 503, from_target=True, seconds=2.5)
    data = metrics.datums()
    times = [d for d in data if d["MetricName"] == "TargetResponseTime"]
    # Sent as a distribution: a few distinct values with their counts, whatever the load.
    assert all(len(d["Values"]) <= MAX_VALUES for d in times)
    assert sum(sum(d["Counts"]) for d in times) == 2 * 1000  # per group, and per balancer
    cw = aws.client("cloudwatch")
    cw.put_metric_data(Namespace="AWS/ApplicationELB", MetricData=data)
    now = datetime.now(UTC)
    found = cw.get_metric_data(
        MetricDataQueries=[_query("p50", "p50"), _query("p99", "p99"), _query("p999", "p99.9"),
                           _query("max", "Maximum"), _query("requests", "Sum", "RequestCount"),
                           _query("errors", "Sum", "HTTPCode_Target_5XX_Count")],
        StartTime=now - timedelta(minutes=5),
        EndTime=now + timedelta(minutes=1),
    )  # fmt: skip
    values = {r["Id"]: sum(r["Values"]) for r in found["MetricDataResults"]}
    # Nearest rank: 99 answers at each of 1..10 ms, so the 500th is at 6 ms.
    assert values["p50"] == 0.006
    assert values["p99"] == 2.5  # 11 slow answers out of 1,000: the 99th percentile is slow
    assert values["p999"] == 2.5 and values["max"] == 2.5
    assert values["requests"] == 1000.0 and values["errors"] == 11.0
