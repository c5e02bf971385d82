"""The controller's Prometheus metrics, and the small HTTP server that exposes them.

Prometheus' own client (``prometheus_client``), one registry per controller (so tests and
benchmarks can run several in one process)::

    mlops_controller_reconciles_total{result}          ok | degraded | error
    mlops_controller_reconcile_duration_seconds        histogram, per deployment
    mlops_controller_queue_depth                       keys waiting for a worker
    mlops_controller_queue_oldest_seconds              how long the oldest of them waited
    mlops_controller_aws_calls_total{service,operation,outcome}   outcome: ok or the error code
    mlops_controller_drift_reverts_total{kind}         hand-made changes put back
    mlops_controller_deployments{condition,status}     deployments by condition
    mlops_controller_leader                            1 while this replica acts

The server answers ``/metrics``, ``/healthz`` (the process serves) and ``/readyz`` (the
runtime loop ran a pass of its source recently), for the chart's probes and its
ServiceMonitor.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily

from mlops_core import aws

if TYPE_CHECKING:
    from controller.api import ModelDeploymentStatus
    from controller.reconcile import ReconcileResult
    from controller.workqueue import WorkQueue

CONDITIONS = ("Ready", "Progressing", "Degraded")


class _Deployments:
    """A collector of deployments by condition, from the last status of each key."""

    def __init__(self) -> None:
        self._by_key: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()

    def set(self, key: str, conditions: dict[str, str]) -> None:
        with self._lock:
            self._by_key[key] = conditions

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "mlops_controller_deployments",
            "ModelDeployments by condition and status, as last reconciled.",
            labels=["condition", "status"],
        )
        counts: dict[tuple[str, str], int] = {}
        with self._lock:
            for conditions in self._by_key.values():
                for type_, status in conditions.items():
                    counts[(type_, status)] = counts.get((type_, status), 0) + 1
        for (type_, status), n in sorted(counts.items()):
            family.add_metric([type_, status], n)
        yield family


class ControllerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.reconciles = Counter(
            "mlops_controller_reconciles", "Reconciles of one deployment, by result.",
            ["result"], registry=r,
        )  # fmt: skip
        self.duration = Histogram(
            "mlops_controller_reconcile_duration_seconds",
            "Time to reconcile one deployment (its share of a batch).",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.depth = Gauge("mlops_controller_queue_depth", "Keys waiting for a worker.",
                           registry=r)  # fmt: skip
        self.oldest = Gauge(
            "mlops_controller_queue_oldest_seconds",
            "How long the longest-waiting queued key has waited.",
            registry=r,
        )
        self.aws_calls = Counter(
            "mlops_controller_aws_calls", "AWS API calls, by operation and outcome.",
            ["service", "operation", "outcome"], registry=r,
        )  # fmt: skip
        self.drift = Counter(
            "mlops_controller_drift_reverts",
            "Hand-made changes to AWS that the controller put back, by kind.",
            ["kind"], registry=r,
        )  # fmt: skip
        self.leader = Gauge("mlops_controller_leader", "1 while this replica acts.", registry=r)
        self._deployments = _Deployments()
        r.register(self._deployments)
        self.last_pass = 0.0  # monotonic time of the last pass over the source

    # -- feeding ---------------------------------------------------------------------
    def watch_queue(self, queue: WorkQueue) -> None:
        self.depth.set_function(lambda: len(queue))
        self.oldest.set_function(queue.oldest_wait)

    def reconciled(self, result: ReconcileResult, seconds: float) -> None:
        self.reconciles.labels("degraded" if result.degraded else "ok").inc()
        self.duration.observe(seconds)

    def failed(self) -> None:
        self.reconciles.labels("error").inc()

    def conditions(self, key: str, status: ModelDeploymentStatus) -> None:
        self._deployments.set(
            key, {c.type: c.status for c in status.conditions if c.type in CONDITIONS}
        )

    def drift_reverted(self, kind: str) -> None:
        self.drift.labels(kind).inc()

    def leading(self, leader: bool) -> None:
        self.leader.set(1 if leader else 0)
        self.last_pass = time.monotonic()

    def count_aws_calls(self) -> None:
        """Count every AWS call of this process from now on (all clients, present and
        future), through botocore's own events."""
        aws.instrument(self._instrument)

    def _instrument(self, client: Any) -> None:
        service = client.meta.service_model.service_name

        def after(http_response: Any = None, model: Any = None, parsed: Any = None, **_: Any):
            code = (parsed or {}).get("Error", {}).get("Code") if isinstance(parsed, dict) else None
            status = getattr(http_response, "status_code", 200)
            outcome = "ok" if status < 400 else (code or str(status))
            self.aws_calls.labels(service, model.name, outcome).inc()

        # botocore hands "after-call-error" (a connection that failed, a timeout) no
        # operation model: the operation is the event name's last part.
        def error(exception: BaseException | None = None, event_name: str = "", **_: Any):
            operation = event_name.rsplit(".", 1)[-1] or "unknown"
            self.aws_calls.labels(service, operation, type(exception).__name__).inc()

        client.meta.events.register("after-call", after)
        client.meta.events.register("after-call-error", error)


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
        pass  # scrapes every few seconds would drown the log


def serve(
    metrics: ControllerMetrics, host: str, port: int, *, ready_within: float
) -> tuple[_Server, int]:
    """Serve ``/metrics``, ``/healthz`` and ``/readyz`` on ``host:port`` (0: any free
    port) from a daemon thread; returns the server and its port. Ready while the runtime
    loop passed over its source within ``ready_within`` seconds."""
    metrics_app = make_wsgi_app(metrics.registry)

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            return metrics_app(environ, start_response)
        if path == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        if path == "/readyz":
            fresh = metrics.last_pass and time.monotonic() - metrics.last_pass < ready_within
            start_response(
                "200 OK" if fresh else "503 Service Unavailable", [("Content-Type", "text/plain")]
            )
            return [b"ready\n" if fresh else b"not ready: no recent pass over the source\n"]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]

    server = make_server(host, port, app, server_class=_Server, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, name="metrics", daemon=True)
    thread.start()
    return server, server.server_port
