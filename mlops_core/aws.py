"""boto3 clients for every AWS call the platform makes.

Everything goes through boto3's standard configuration chain: credentials, region and
``AWS_ENDPOINT_URL`` (which points the whole platform at a local endpoint such as moto's
server) come from the environment or the shared config files. No endpoint flags are
threaded through the code. Retries are adaptive (client-side rate limiting on throttles).

How long one call may take is each component's choice (:class:`CallLimits`, set once at
its edge with :func:`configure`): the controller's calls must end well within its lease,
the CLI can wait longer for a person, serving sits in between. ``AWS_MAX_ATTEMPTS``, if
set, overrides the attempt count, as it does for every AWS SDK.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import boto3
from botocore.config import Config

from mlops_core.naming import DEFAULT_REGION


@dataclass(frozen=True)
class CallLimits:
    """Timeouts (seconds) and attempts (the first call included) of every AWS call."""

    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    max_attempts: int = 8

    def honouring_env(self) -> CallLimits:
        """With ``AWS_MAX_ATTEMPTS`` from the environment, if it is set."""
        value = os.environ.get("AWS_MAX_ATTEMPTS", "").strip()
        return replace(self, max_attempts=int(value)) if value.isdigit() and value != "0" else self

    def worst_case(self) -> float:
        """The longest one call can take before it fails: every attempt timing out, plus
        the retry backoff between them (at most 2^i s before attempt i+1, capped at 20 s)."""
        backoff = sum(min(20.0, 2.0 ** min(i, 5)) for i in range(self.max_attempts - 1))
        return self.max_attempts * (self.connect_timeout + self.read_timeout) + backoff


# Each component's limits: a person waits at the CLI; a controller holds a lease (a
# call must fail well within it, see controller.leases); serving answers health checks.
CLI = CallLimits(connect_timeout=5, read_timeout=30, max_attempts=5)
CONTROLLER = CallLimits(connect_timeout=2, read_timeout=4, max_attempts=2)
SERVING = CallLimits(connect_timeout=3, read_timeout=10, max_attempts=3)

_lock = threading.Lock()
_clients: dict[tuple[Any, ...], Any] = {}
_limits = CLI
_instruments: list[Callable[[Any], None]] = []


def configure(limits: CallLimits) -> None:
    """Set this process's call limits (clients made from now on use them)."""
    global _limits
    with _lock:
        _limits = limits


def limits() -> CallLimits:
    """The call limits in force, ``AWS_MAX_ATTEMPTS`` applied."""
    return _limits.honouring_env()


def instrument(hook: Callable[[Any], None]) -> None:
    """Call ``hook(client)`` for every client, made so far or later (metrics register
    botocore event handlers this way)."""
    with _lock:
        _instruments.append(hook)
        existing = list(_clients.values())
    for c in existing:
        hook(c)


def _config(lim: CallLimits) -> Config:
    return Config(
        retries={"mode": "adaptive", "total_max_attempts": lim.max_attempts},
        connect_timeout=lim.connect_timeout,
        read_timeout=lim.read_timeout,
        max_pool_connections=32,
    )


# For optional, read-only APIs a command can do without (prices, the bill): one attempt
# and short timeouts, so that an unreachable one costs seconds, not the retries.
OPTIONAL = CallLimits(connect_timeout=3, read_timeout=10, max_attempts=1)
FAIL_FAST_CONFIG = _config(OPTIONAL)


def _region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION


def client(service: str, *, region: str | None = None, config: Config | None = None) -> Any:
    """A shared, thread-safe boto3 client for ``service``.

    Cached per (service, region, endpoint, profile) so that changing the environment (as
    tests and ``mlopsctl dev`` do) gets a fresh client rather than a stale endpoint.
    ``region`` and ``config`` are for the few global APIs (the Price List API answers in
    us-east-1 only) and for calls that must fail fast instead of retrying.
    """
    lim = limits()
    region = region or _region()
    key = (
        service,
        lim,
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
                service, region_name=region, config=config or _config(lim)
            )
            _clients[key] = c
            for hook in _instruments:
                hook(c)
        return c


#: What S3 answers when a conditional write loses: 412 once the object exists, 409 while
#: another conditional write of the same key is still in flight.
CONDITION_LOST = ("PreconditionFailed", "ConditionalRequestConflict")


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ClientError, or '' for anything else."""
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


T = TypeVar("T")


class CallTimedOut(Exception):
    """A call made with :func:`within` did not return in time."""


def within(seconds: float, call: Callable[[], T]) -> T:
    """``call()``'s result (or the exception it raised), or CallTimedOut after
    ``seconds``. For optional reads (prices, the bill) whose answer may trickle in:
    botocore's read timeout bounds each read of a response, not the response. The call
    runs in a daemon thread, left behind on a timeout until its socket gives up; give it
    nothing but a read."""
    done = threading.Event()
    out: dict[str, Any] = {}

    def work() -> None:
        try:
            out["value"] = call()
        except BaseException as exc:  # handed to the caller, who decides
            out["error"] = exc
        finally:
            done.set()

    threading.Thread(target=work, name="aws-within", daemon=True).start()
    if not done.wait(seconds):
        raise CallTimedOut(f"no complete answer within {seconds:g}s")
    if "error" in out:
        raise out["error"]
    return out["value"]
