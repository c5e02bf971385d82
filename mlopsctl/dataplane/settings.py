"""The local data plane's settings: one pydantic-settings class, read once at start-up.

Timings that ECS and ELB take from the API (health check intervals, deregistration
delays, grace periods, stop timeouts, schedule rates) are honoured as configured,
multiplied by ``time_scale``: 1.0 runs them at AWS's pace, the default 0.05 runs a
15 s health check every 0.75 s, so a rollout that takes minutes on AWS takes seconds
on a laptop while keeping its shape (thresholds and counts are never scaled).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from mlops_core.config import PlatformSettings


class DataPlaneSettings(PlatformSettings):
    """``MLOPS_DATAPLANE_*`` environment variables (``dev up`` passes them through)."""

    model_config = SettingsConfigDict(env_prefix="MLOPS_DATAPLANE_", frozen=True, extra="ignore")

    state_dir: Path = Field(description="Where task folders, their output and the pid file live.")
    time_scale: float = Field(
        0.05, gt=0, le=1, description="AWS timings are multiplied by this (1.0 = AWS's pace)."
    )
    loop_seconds: float = Field(
        0.2, gt=0, le=10, description="Pause between two passes of the ECS scheduler and agent."
    )
    lb_refresh_seconds: float = Field(
        0.25, gt=0, le=10, description="How often the load balancer re-reads listeners and targets."
    )
    min_timeout_seconds: float = Field(
        1.0,
        gt=0,
        le=60,
        description="Floor of scaled health check and stop timeouts, so a busy laptop is not "
        "mistaken for a broken task.",
    )
    min_grace_seconds: float = Field(
        90.0,
        ge=0,
        le=600,
        description="Floor of a service's scaled healthCheckGracePeriodSeconds: starting a "
        "local process (imports, model download) takes wall-clock seconds at any time scale, "
        "over 30 s on a busy 2-core machine. Only a task that neither exits nor passes its "
        "checks waits this long to be counted as failed.",
    )
    answered_grace_seconds: float = Field(
        10.0,
        ge=0,
        le=600,
        description="How long a task whose health checks get an HTTP answer (its process "
        "started) may keep failing them before the scaled grace period alone counts: a "
        "model that cannot load is found in seconds, not after min_grace_seconds.",
    )
    lb_metrics_seconds: float = Field(
        5.0,
        gt=0,
        le=60,
        description="How often the load balancer's request counts and response times are "
        "put into CloudWatch (AWS/ApplicationELB).",
    )
    log_flush_seconds: float = Field(
        0.5, gt=0, le=60, description="How often task output is sent to CloudWatch Logs."
    )
    schedules_seconds: float = Field(
        1.0, gt=0, le=60, description="How often schedules and rules are read to fire them."
    )

    def scaled(self, seconds: float, *, floor: float = 0.0) -> float:
        """An AWS duration at local pace, never below ``floor``."""
        return max(seconds * self.time_scale, floor)

    def timeout(self, seconds: float) -> float:
        return self.scaled(seconds, floor=self.min_timeout_seconds)
