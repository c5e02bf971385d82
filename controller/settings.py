"""The controller's settings: read once, at the edge (``mlopsctl controller run``), and
passed down; nothing below reads the environment.

One object: the platform's settings (:mod:`mlops_core.config`: names, keys, the network
Terraform made) and the controller's own, ``MLOPS_CONTROLLER_*`` (the Helm chart sets
them); command-line flags override them.
"""

from __future__ import annotations

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import SettingsConfigDict

from controller.api import DeletePolicy
from controller.plan import NetworkConfig, Polling
from mlops_core.config import PlatformSettings


class ControllerSettings(PlatformSettings):
    model_config = SettingsConfigDict(
        env_prefix="MLOPS_CONTROLLER_", extra="ignore", frozen=True, env_ignore_empty=True
    )

    workers: int = Field(4, ge=1, le=64, description="Deployments reconciled in parallel.")
    batch: int = Field(10, ge=1, le=100, description="Keys a worker takes at once.")
    resync: float = Field(60.0, ge=1.0, description="Seconds between full passes.")
    poll: float | None = Field(
        None, gt=0, description="Seconds between change checks (default: per source)."
    )
    lease_ttl: float = Field(30.0, ge=3.0, description="Lease lifetime (S3, Kubernetes).")
    once_attempts: int = Field(4, ge=1, description="Attempts per key in a --once pass.")
    identity: str | None = Field(
        None,
        max_length=253,
        description="This replica's lease identity; stable per replica (the pod's name) so a "
        "restart after a crash takes the lease back at once. Default: host:pid:random. At "
        "most 253 printable characters.",
    )

    @field_validator("identity")
    @classmethod
    def _printable_identity(cls, value: str | None) -> str | None:
        # Written into lock files and leases, and printed when another controller finds
        # a key held: no newline, tab or escape sequence.
        if value is not None and not value.isprintable():
            raise ValueError("printable characters only (no newline, tab or escape sequence)")
        return value

    delete_policy: DeletePolicy = Field(
        "Retain",
        validation_alias=AliasChoices("MLOPS_DELETE_POLICY", "MLOPS_CONTROLLER_DELETE_POLICY"),
    )
    metrics_port: int = Field(
        9090, ge=0, le=65535, description="Port of /metrics and /readyz (0: a free port)."
    )
    metrics_host: str = "0.0.0.0"
    metrics: bool = Field(True, description="Serve /metrics and /readyz.")
    # Kubernetes
    kube_namespace: str | None = Field(
        None, validation_alias=AliasChoices("MLOPS_KUBE_NAMESPACE"), description="One namespace."
    )
    kube_liveness: str = Field(
        "http://0.0.0.0:8080/healthz",
        validation_alias=AliasChoices("MLOPS_KUBE_LIVENESS"),
        description="kopf's liveness endpoint ('off' disables it).",
    )
    kube_lease_namespace: str | None = Field(
        None,
        validation_alias=AliasChoices("MLOPS_KUBE_LEASE_NAMESPACE"),
        description="Where the Lease lives (default: the kubeconfig's namespace).",
    )

    rollout_poll_seconds: float = Field(
        Polling.rollout,
        gt=0,
        validation_alias="MLOPS_ROLLOUT_POLL_SECONDS",
        description="Seconds between looks at a rollout in progress.",
    )
    after_action_seconds: float = Field(
        Polling.after_action,
        gt=0,
        validation_alias="MLOPS_AFTER_ACTION_SECONDS",
        description="Seconds before the look that follows an action.",
    )

    def network(self) -> NetworkConfig:
        return NetworkConfig.from_settings(self)

    def polling(self) -> Polling:
        return Polling(rollout=self.rollout_poll_seconds, after_action=self.after_action_seconds)

    def poll_for(self, source_uri: str) -> float:
        """Folder: 0.5 s (a scandir); S3: 5 s (a listing); Kubernetes: 0.2 s (memory)."""
        if self.poll is not None:
            return self.poll
        if source_uri.startswith("s3://"):
            return 5.0
        return 0.2 if source_uri.startswith("kube:") else 0.5
