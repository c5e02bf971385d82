"""Deployment strategies of the local ECS scheduler, and the seam for the ones to come.

ECS picks how a service deployment replaces tasks with
``deploymentConfiguration.strategy``. The scheduler (:mod:`.scheduler`) owns what every
strategy shares: task health (load balancer targets), registration and draining, failed
task counting and the deployment circuit breaker. A strategy decides which tasks to start
and stop and when its deployment is complete, in ``step(ctx)``.

``ROLLING`` is :mod:`.rolling`; ``BLUE_GREEN``, ``CANARY`` and ``LINEAR`` (with
``bakeTimeInMinutes``, ``canaryConfiguration``/``linearConfiguration``, PAUSE lifecycle
hooks, deployment alarms and ``loadBalancers[].advancedConfiguration``) are
:mod:`.shifting`. The ECS front accepts a strategy only once it is in
:data:`IMPLEMENTED`, so nothing is ever accepted and then run as something else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from mlopsctl.dataplane.scheduler import ServiceContext

#: Strategies the local data plane runs (the ECS front refuses the others).
IMPLEMENTED: tuple[str, ...] = ("ROLLING", "BLUE_GREEN", "CANARY", "LINEAR")


class Strategy(Protocol):
    def step(self, ctx: ServiceContext) -> None:
        """One pass over a service whose primary deployment uses this strategy."""


def strategy_for(name: str) -> Strategy:
    from mlopsctl.dataplane.rolling import Rolling
    from mlopsctl.dataplane.shifting import SHIFTING, TrafficShift

    registry: dict[str, Strategy] = {"ROLLING": Rolling()}
    registry.update({s: TrafficShift() for s in SHIFTING})
    return registry[name]
