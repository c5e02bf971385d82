"""Prometheus metrics of one app, in the app's own registry.

A per-app :class:`~prometheus_client.CollectorRegistry` (not the process-global one) lets
tests and benchmarks create several apps in one process.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)

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
    def __init__(self) -> None:
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
            "Predicted values (one observation per record).",
            buckets=VALUE_BUCKETS,
            registry=r,
        )
        self.records = Counter(
            f"{PREFIX}_predicted_records", "Records predicted (a batch counts each).", registry=r
        )
        self.model = Info(f"{PREFIX}_model", "The model version being served.", registry=r)
        self.model_loaded = Gauge(
            f"{PREFIX}_model_loaded", "1 when a verified model is loaded (ready).", registry=r
        )
        self.model_loads = Counter(
            f"{PREFIX}_model_loads",
            "Model load attempts by result (loaded, refused, error).",
            ["result"],
            registry=r,
        )

    def set_model(self, model: LoadedModel) -> None:
        self.model.info(
            {
                "project": model.project,
                "version": model.version,
                "sha256": model.sha256,
                "format": model.runtime.format,
            }
        )
        self.model_loaded.set(1)

    def observe_predictions(self, values: list[float]) -> None:
        self.records.inc(len(values))
        for v in values:
            self.predictions.observe(v)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
