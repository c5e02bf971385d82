"""ECS's rolling update (``deploymentConfiguration.strategy`` ROLLING).

With ``D`` the desired count: new tasks start while the service has fewer than
``floor(D * maximumPercent / 100)`` tasks (stopping ones included, they still hold their
resources); a task of an older deployment stops only while at least
``ceil(D * minimumHealthyPercent / 100)`` healthy tasks remain without it (an unhealthy
one stops at once); the deployment is COMPLETED once it runs ``D`` healthy tasks and no
older deployment has a task left. A FAILED deployment starts nothing and leaves the older
deployment's healthy tasks serving.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlopsctl.dataplane.scheduler import ServiceContext


class Rolling:
    def step(self, ctx: ServiceContext) -> None:
        primary = ctx.primary
        assert primary is not None
        desired = ctx.desired
        failed = primary.get("rolloutState") == "FAILED"
        mine = ctx.live(primary["id"])
        older = [t for t in ctx.live() if t.get("startedBy") != primary["id"]]

        if not failed:
            ceiling = math.floor(desired * int(ctx.config.get("maximumPercent", 200)) / 100)
            room = ceiling - len(ctx.occupied())
            missing = desired - len(mine)
            if min(missing, room) > 0:
                ctx.start(primary["id"], min(missing, room))
        if len(mine) > desired:  # scaled in: the unhealthy and the newest go first
            extra = sorted(mine, key=lambda t: (ctx.healthy(t), str(t.get("createdAt"))))
            for t in extra[: len(mine) - desired]:
                ctx.stop(t, f"Scaling activity initiated by (deployment {primary['id']})")

        floor = math.ceil(desired * int(ctx.config.get("minimumHealthyPercent", 100)) / 100)
        healthy = sum(1 for t in ctx.live() if ctx.healthy(t))
        for t in sorted(older, key=ctx.healthy):
            if not ctx.healthy(t):
                ctx.stop(t, f"Scaling activity initiated by (deployment {primary['id']})")
            elif not failed and healthy - 1 >= floor:
                ctx.stop(t, f"Scaling activity initiated by (deployment {primary['id']})")
                healthy -= 1

        if (
            primary.get("rolloutState") == "IN_PROGRESS"
            and len(ctx.live(primary["id"])) == desired
            and all(ctx.healthy(t) for t in ctx.live(primary["id"]))
            and all(t.get("startedBy") == primary["id"] for t in ctx.occupied())
        ):
            ctx.complete()
