"""Prometheus metrics of one app, in the app's own registry.

A per-app :class:`~prometheus_client.CollectorRegistry` (not the process-global one) lets
tests and benchmarks create several apps in one process. When the service runs one
process per core (:mod:`serving.server`), each worker writes its values to files under
``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess mode, which the
supervisor turns on for its workers) and ``/metrics`` answers the sum over the workers,
whichever worker the scrape reaches.

What progressive delivery judges a canary by is cheap enough for the hot path: requests
by route and status, a latency histogram, and the distribution of predictions (a
histogram of values for regression, a counter per predicted class for classification).
Label children are looked up once and cached, so a request costs a few dictionary hits
and increments.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

if TYPE_CHECKING:
    from serving.loader import LoadedModel

PREFIX = "mlops_serving"

# Latency of a sub-millisecond service: finer buckets below 10 ms than the defaults.
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5
)  # fmt: skip
# Predictions of an unknown scale (a price, a probability): 1-2.5-5 steps over 1e-3..1e7.
VALUE_BUCKETS = tuple(m * 10.0**e for e in range(-3, 7) for m in (1.0, 2.5, 5.0)) + (1e7,)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServingMetrics:
    def __init__(self, multiprocess_dir: Path | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            f"{PREFIX}_requests",
            "HTTP requests by route, method and status code.",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            f"{PREFIX}_request_duration_seconds",
            "Time from request start to the last response byte, by route.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.predictions = Histogram(
            f"{PREFIX}_prediction_value",
            "Predicted values of a regression model (one observation per record).",
            buckets=VALUE_BUCKETS,
            registry=r,
        )
        self.predicted_class = Counter(
            f"{PREFIX}_predicted_class",
            "Records predicted per class, for a classification model.",
            ["label"],
            registry=r,
        )
        self.records = Counter(
            f"{PREFIX}_predicted_records", "Records predicted (a batch counts each).", registry=r
        )
        # A gauge rather than an Info: it also works across worker processes.
        self.model = Gauge(
            f"{PREFIX}_model_info",
            "1 for the model version being served.",
            ["project", "version", "sha256", "format", "task"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.model_loaded = Gauge(
            f"{PREFIX}_model_loaded",
            "1 when a verified model is loaded (ready).",
            registry=r,
            multiprocess_mode="livemin",
        )
        self.model_loads = Counter(
            f"{PREFIX}_model_loads",
            "Model load attempts by result (loaded, refused, error).",
            ["result"],
            registry=r,
        )
        self._request_children: dict[tuple[str, str, int], Any] = {}
        self._latency_children: dict[str, Any] = {}
        self._class_children: dict[Any, Any] = {}
        self._model_labels: dict[str, str] | None = None

    # -- per request (hot path) --------------------------------------------------------
    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        child = self._request_children.get(key)
        if child is None:
            child = self.requests.labels(route=route, method=method, status=str(status))
            self._request_children[key] = child
        child.inc()
        latency = self._latency_children.get(route)
        if latency is None:
            latency = self._latency_children[route] = self.latency.labels(route=route)
        latency.observe(seconds)

    def observe_predictions(self, values: Sequence[Any]) -> None:
        self.records.inc(len(values))
        classes = self._class_children  # read once: a hot swap replaces the dict
        if classes:
            for v in values:
                child = classes.get(v)
                if child is not None:  # None only for a request in flight across a swap
                    child.inc()
        else:
            observe = self.predictions.observe
            for v in values:
                observe(v)

    # -- per model ---------------------------------------------------------------------
    def set_model(self, model: LoadedModel) -> None:
        if self._model_labels is not None:
            self.model.labels(**self._model_labels).set(0)
        self._model_labels = {
            "project": model.project,
            "version": model.version,
            "sha256": model.sha256,
            "format": model.runtime.format,
            "task": model.manifest.task,
        }
        self.model.labels(**self._model_labels).set(1)
        # Every class is a series from the start (at 0), so a class never predicted shows.
        self._class_children = {
            label: self.predicted_class.labels(label=str(label))
            for label in model.manifest.labels or ()
        }
        self.model_loaded.set(1)

    def exposition(self) -> bytes:
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(self.multiprocess_dir))
        return generate_latest(registry)
