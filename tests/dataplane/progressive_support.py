"""Progressive rollouts end to end: a ModelDeployment reconciled against the local data
plane, real serving tasks, and steady prediction traffic through the load balancer."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
from conftest import IMAGE

from controller import loadbalancing
from controller.api import ModelDeployment, ModelDeploymentStatus
from controller.plan import NetworkConfig
from controller.reconcile import Reconciler

PROJECT = "usedcar-price"
NAME = f"{PROJECT}-prod"


def records(n: int = 200, seed: int = 7) -> list[dict[str, Any]]:
    """Varied cars, so that each revision's predictions have a distribution."""
    rng = np.random.default_rng(seed)
    return [
        {
            "year": int(rng.integers(2000, 2025)),
            "odometer": float(rng.uniform(0, 200_000)),
            "make_encoded": int(rng.integers(0, 20)),
            "model_encoded": int(rng.integers(0, 80)),
            "condition": ["fair", "good", "new"][int(rng.integers(0, 3))],
        }
        for _ in range(n)
    ]


def deployment(version: str, generation: int, **spec: Any) -> ModelDeployment:
    return ModelDeployment.model_validate(
        {
            "metadata": {"name": NAME, "namespace": "ml", "generation": generation},
            "spec": {
                "project": PROJECT,
                "env": "prod",
                "model": {"version": version},
                "serving": {"image": IMAGE, "cpu": 256, "memory": 512, "replicas": 1},
                "monitoring": {"capturePercent": 100, "captureFlushSeconds": 1},
                **spec,
            },
        }
    )


def reconciler(env) -> Reconciler:
    network = NetworkConfig(
        subnets=tuple(env.subnets), security_groups=(env.security_group,), load_balancers="managed"
    )
    return Reconciler(env.platform, network=network)


@dataclass
class Predictions:
    """Steady predictions through the load balancer: every answer counted, by version."""

    url: str
    interval: float = 0.01
    codes: Counter = field(default_factory=Counter)
    answers: list[tuple[float, str]] = field(default_factory=list)  # (time, version)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Predictions:
        cars = records()

        def run() -> None:
            i = 0
            with httpx.Client(timeout=10) as client:
                while not self._stop.is_set():
                    try:
                        r = client.post(f"{self.url}/predict", json=cars[i % len(cars)])
                        self.codes[r.status_code] += 1
                        if r.status_code == 200:
                            self.answers.append((time.monotonic(), r.json()["model_version"]))
                        else:
                            self.errors.append(f"{r.status_code} {r.text[:200]}")
                    except httpx.HTTPError as exc:
                        self.codes[type(exc).__name__] += 1
                        self.errors.append(repr(exc))
                    i += 1
                    time.sleep(self.interval)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=30)

    @property
    def failed(self) -> int:
        return sum(n for code, n in self.codes.items() if code != 200)

    def share(self, version: str, since: float, until: float) -> tuple[float, int]:
        """``version``'s share of the answers in [since, until), and how many there were."""
        window = [v for t, v in self.answers if since <= t < until]
        return (window.count(version) / len(window) if window else 0.0), len(window)


def drive(
    rec: Reconciler,
    dep: ModelDeployment,
    status: ModelDeploymentStatus | None,
    until: Callable[[ModelDeploymentStatus], bool],
    *,
    timeout: float = 240,
    seen: Callable[[ModelDeploymentStatus], None] | None = None,
) -> ModelDeploymentStatus:
    """Reconcile ``dep`` as the controller's loop does until ``until(status)``."""
    deadline = time.monotonic() + timeout
    while True:
        status = rec.reconcile(dep, status).status
        if seen is not None:
            seen(status)
        if until(status):
            return status
        assert time.monotonic() < deadline, (status.conditions, status.rollout)
        time.sleep(0.3)


def ready(status: ModelDeploymentStatus) -> bool:
    c = status.condition("Ready")
    return c is not None and c.status == "True"


def reason(status: ModelDeploymentStatus, type_: str = "Progressing") -> str:
    c = status.condition(type_)
    return f"{c.status}:{c.reason}" if c is not None else ""


def endpoint(env) -> str:
    return env.url(PROJECT, "prod")


def grace(monkeypatch) -> None:
    # A real model loads in seconds on a busy machine; at the tests' time scale (0.05)
    # the usual grace period is 3 s, so give the health checks 30 s before they count.
    monkeypatch.setattr(loadbalancing, "HEALTH_CHECK_GRACE_SECONDS", 600)
