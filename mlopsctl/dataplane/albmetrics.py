"""The local load balancer's CloudWatch metrics, as an ALB publishes them.

An ALB sends ``AWS/ApplicationELB`` metrics to CloudWatch by itself, per load balancer
(dimension ``LoadBalancer = app/{name}/{id}``) and per target group behind it (dimensions
``TargetGroup = targetgroup/{name}/{id}`` and ``LoadBalancer``): ``RequestCount``,
``HTTPCode_Target_{2,3,4,5}XX_Count`` (answered by a target), ``HTTPCode_ELB_{4,5}XX_Count``
(answered by the load balancer itself: no healthy target, a target that refused or timed
out) and ``TargetResponseTime`` in seconds. Datapoints exist only while requests flow.

The platform reads them where AWS has them: the cost of 1,000 predictions
(:mod:`mlops_core.cost.requests`) and the analysis of a progressive rollout compare target
groups through them. Locally, the local load balancer counts every request it answers and
this module puts the same metrics into the local CloudWatch every few seconds, so those
readers need no local special case.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mlops_core.cost.requests import NAMESPACE, load_balancer_dimension, target_group_dimension
from mlops_core.logs import get_logger

log = get_logger("dataplane.lb.metrics")

# put_metric_data takes at most 1,000 datums per call, and 150 values per datum.
MAX_DATUMS = 1000
MAX_VALUES = 150


@dataclass
class _Times:
    """Response times as CloudWatch receives a distribution (``Values`` and ``Counts``):
    rounded to 0.1 ms, so a flush sends a bounded number of values however many requests
    there were, and CloudWatch can still answer percentiles (p99) over them."""

    counts: Counter[float] = field(default_factory=Counter)

    def add(self, seconds: float) -> None:
        self.counts[round(seconds, 4)] += 1

    def __bool__(self) -> bool:
        return bool(self.counts)

    def batches(self) -> list[tuple[list[float], list[float]]]:
        """(Values, Counts) pairs of at most MAX_VALUES each."""
        items = sorted(self.counts.items())
        return [
            ([v for v, _ in items[i : i + MAX_VALUES]],
             [float(c) for _, c in items[i : i + MAX_VALUES]])
            for i in range(0, len(items), MAX_VALUES)
        ]  # fmt: skip


@dataclass
class _Series:
    counts: Counter[str] = field(default_factory=Counter)
    times: _Times = field(default_factory=_Times)


class AlbMetrics:
    """Counts what the listeners answer; :meth:`flush` sends them to CloudWatch.

    ``record`` is called on the load balancer's event loop for every response; it only
    touches a dictionary under a lock, so the request path never waits on CloudWatch.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._series: defaultdict[tuple[tuple[str, str], ...], _Series] = defaultdict(_Series)

    def record(
        self,
        listener_arn: str,
        target_group_arn: str | None,
        status: int,
        *,
        from_target: bool,
        seconds: float | None,
    ) -> None:
        lb = ("LoadBalancer", load_balancer_dimension(listener_arn))
        keys: list[tuple[tuple[str, str], ...]] = [(lb,)]
        if target_group_arn:
            keys.append((("TargetGroup", target_group_dimension(target_group_arn)), lb))
        klass = f"{status // 100}XX"
        code = f"HTTPCode_Target_{klass}_Count" if from_target else f"HTTPCode_ELB_{klass}_Count"
        with self._lock:
            for key in keys:
                series = self._series[key]
                series.counts["RequestCount"] += 1
                series.counts[code] += 1
                if from_target and seconds is not None:
                    series.times.add(max(seconds, 0.0))

    def take(self) -> dict[tuple[tuple[str, str], ...], _Series]:
        with self._lock:
            taken, self._series = dict(self._series), defaultdict(_Series)
        return taken

    def datums(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """What accumulated since the last call, as ``MetricData`` entries."""
        at = now or datetime.now(UTC)
        out: list[dict[str, Any]] = []
        for key, series in self.take().items():
            dims = [{"Name": n, "Value": v} for n, v in key]
            for name, count in series.counts.items():
                out.append(
                    {
                        "MetricName": name,
                        "Dimensions": dims,
                        "Timestamp": at,
                        "Value": float(count),
                        "Unit": "Count",
                    }
                )
            for values, counts in series.times.batches():
                out.append(
                    {
                        "MetricName": "TargetResponseTime",
                        "Dimensions": dims,
                        "Timestamp": at,
                        "Values": values,
                        "Counts": counts,
                        "Unit": "Seconds",
                    }
                )
        return out

    def flush(self, cloudwatch: Any) -> int:
        """Send what accumulated; returns how many datums were sent. A failed send is
        logged and its counts are lost, as an ALB's would be: metrics never hold up
        traffic."""
        data = self.datums()
        sent = 0
        for start in range(0, len(data), MAX_DATUMS):
            chunk = data[start : start + MAX_DATUMS]
            try:
                cloudwatch.put_metric_data(Namespace=NAMESPACE, MetricData=chunk)
                sent += len(chunk)
            except Exception as exc:  # noqa: BLE001 - the endpoint may be going away
                log.warning("cannot publish load balancer metrics", error=str(exc)[:300])
        return sent
