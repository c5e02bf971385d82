"""boto3 clients for every AWS call the platform makes.

Everything goes through boto3's standard configuration chain: credentials, region and
``AWS_ENDPOINT_URL`` (which points the whole platform at a local endpoint such as moto's
server) come from the environment or the shared config files. No endpoint flags are
threaded through the code. Retries are adaptive (client-side rate limiting on throttles).
"""

from __future__ import annotations

import os
import threading
from typing import Any

import boto3
from botocore.config import Config

from mlops_core.naming import DEFAULT_REGION

RETRY_CONFIG = Config(
    retries={"mode": "adaptive", "max_attempts": 8},
    connect_timeout=5,
    read_timeout=30,
    max_pool_connections=32,
)

# For optional, read-only APIs a command can do without (prices, the bill): no retry and
# short timeouts, so that an unreachable one costs seconds, not the adaptive retries.
FAIL_FAST_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 1}, connect_timeout=3, read_timeout=10
)

_lock = threading.Lock()
_clients: dict[tuple[str, ...], Any] = {}


def _region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION


def client(service: str, *, region: str | None = None, config: Config | None = None) -> Any:
    """A shared, thread-safe boto3 client for ``service``.

    Cached per (service, region, endpoint, profile) so that changing the environment (as
    tests and ``mlopsctl dev`` do) gets a fresh client rather than a stale endpoint.
    ``region`` and ``config`` are for the few global APIs (the Price List API answers in
    us-east-1 only) and for calls that must fail fast instead of retrying.
    """
    region = region or _region()
    key = (
        service,
        region,
        id(config),
        # AWS_ENDPOINT_URL and the per-service ones (AWS_ENDPOINT_URL_COST_EXPLORER...).
        tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_ENDPOINT_URL"))),
        os.environ.get("AWS_PROFILE", ""),
        os.environ.get("AWS_ACCESS_KEY_ID", ""),
    )
    with _lock:
        c = _clients.get(key)
        if c is None:
            c = boto3.session.Session().client(
                service, region_name=region, config=config or RETRY_CONFIG
            )
            _clients[key] = c
        return c


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ClientError, or '' for anything else."""
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))
