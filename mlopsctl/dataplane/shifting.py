"""ECS's traffic-shifting deployments: ``BLUE_GREEN``, ``CANARY`` and ``LINEAR``.

A service that uses them has ``loadBalancers[].advancedConfiguration``: a second
(alternate) target group, the production listener rule and, optionally, a test listener
rule. ECS owns those rules' forward weights; one target group serves production (blue),
the new revision's tasks register in the other (green), and the deployment goes through
ECS's lifecycle stages:

    PRE_SCALE_UP -> SCALE_UP (green tasks start, all healthy) -> POST_SCALE_UP
    -> TEST_TRAFFIC_SHIFT (the test rule forwards to green) -> POST_TEST_TRAFFIC_SHIFT
    -> PRODUCTION_TRAFFIC_SHIFT (BLUE_GREEN: 100 % at once; CANARY: canaryPercent, then
       canaryBakeTimeInMinutes, then 100 %; LINEAR: stepPercent more every
       stepBakeTimeInMinutes) -> POST_PRODUCTION_TRAFFIC_SHIFT
    -> BAKE_TIME (bakeTimeInMinutes, blue still running) -> CLEAN_UP (blue stops)

A ``PAUSE`` lifecycle hook holds the deployment at its stage (``lifecycleHookDetails``
AWAITING_ACTION with a ``hookId``) until ContinueServiceDeployment CONTINUEs or ROLLs it
BACK, or its ``timeoutConfiguration`` takes its action. At PRODUCTION_TRAFFIC_SHIFT the
hook holds after each traffic step's bake, so a step can be judged on the traffic it got.
``AWS_LAMBDA`` hooks are refused by the local ECS front (no Lambda runs here).

A rollback (a hook's ROLLBACK, StopServiceDeployment ROLLBACK, the circuit breaker, or an
alarm of ``deploymentConfiguration.alarms`` in ALARM with ``rollback``) sends all traffic
back to blue at once, whose tasks never stopped, and stops green: the scheduler's
rollback deployment adopts blue's running tasks instead of starting new ones.

Durations are scaled by the data plane's time scale, as every AWS duration is here.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from mlops_core.logs import get_logger
from mlopsctl.dataplane import moto_bridge as bridge

if TYPE_CHECKING:
    from mlopsctl.dataplane.scheduler import ServiceContext

log = get_logger("dataplane.shifting")

SHIFTING = ("BLUE_GREEN", "CANARY", "LINEAR")
STAGES = (
    "PRE_SCALE_UP",
    "SCALE_UP",
    "POST_SCALE_UP",
    "TEST_TRAFFIC_SHIFT",
    "POST_TEST_TRAFFIC_SHIFT",
    "PRODUCTION_TRAFFIC_SHIFT",
    "POST_PRODUCTION_TRAFFIC_SHIFT",
    "BAKE_TIME",
    "CLEAN_UP",
)
DEFAULT_HOOK_TIMEOUT_MINUTES = 1440


def advanced(ctx: ServiceContext) -> dict[str, Any] | None:
    """The service's ``advancedConfiguration`` (the first load balancer that has one)."""
    for lb in ctx.load_balancers:
        if lb.get("advancedConfiguration"):
            return {**lb["advancedConfiguration"], "targetGroupArn": lb["targetGroupArn"]}
    return None


def steps(config: dict[str, Any]) -> list[tuple[float, float]]:
    """The production traffic steps: (percent to green, bake seconds after it)."""
    strategy = config.get("strategy")
    if strategy == "CANARY":
        c = config.get("canaryConfiguration") or {}
        percent = float(c.get("canaryPercent", 5.0))
        return [(percent, 60.0 * float(c.get("canaryBakeTimeInMinutes", 10))), (100.0, 0.0)]
    if strategy == "LINEAR":
        c = config.get("linearConfiguration") or {}
        step = float(c.get("stepPercent", 10.0))
        bake = 60.0 * float(c.get("stepBakeTimeInMinutes", 6))
        out, percent = [], step
        while percent < 100.0 - 1e-9:
            out.append((round(percent, 1), bake))
            percent += step
        return [*out, (100.0, 0.0)]
    return [(100.0, 0.0)]


@dataclass
class Shift:
    """One traffic-shifting deployment's progress (the scheduler keeps it in memory)."""

    blue: str  # target group ARNs
    green: str
    stage: str = "PRE_SCALE_UP"
    since: float = field(default_factory=time.monotonic)
    step: int = 0
    step_set: int = -1  # the last step whose weights were written
    #: The service's first deployment: nothing serves yet, so there is nothing to shift
    #: from or judge against; its tasks take all traffic once healthy.
    first: bool = False
    hook: dict[str, Any] | None = None  # the hook holding the deployment, if any
    held: set[tuple[str, int]] = field(default_factory=set)  # (stage, step) hooks passed

    def enter(self, stage: str) -> None:
        self.stage, self.since = stage, time.monotonic()


class TrafficShift:
    def step(self, ctx: ServiceContext) -> None:
        primary = ctx.require_primary()
        adv = advanced(ctx)
        if adv is None:  # the front refuses this; a service changed behind it falls back
            from mlopsctl.dataplane.rolling import Rolling

            Rolling().step(ctx)
            return
        if primary.get("rolloutState") != "IN_PROGRESS":
            return
        failed = ctx.s._rollbacks.get(primary["id"])
        if failed is not None and failed in ctx.s._shifts:
            self._return_to_blue(ctx, ctx.s._shifts[failed], adv)
            return
        shift = ctx.s._shifts.get(primary["id"])
        if shift is None:
            shift = self._begin(ctx, adv)
        if self._alarmed(ctx):
            return
        if shift.hook is not None and not self._hook_resolved(ctx, shift):
            return
        self._advance(ctx, shift, adv)

    # -- start ---------------------------------------------------------------------------
    def _begin(self, ctx: ServiceContext, adv: dict[str, Any]) -> Shift:
        primary = ctx.require_primary()
        pair = (adv["targetGroupArn"], adv["alternateTargetGroupArn"])
        weights = rule_weights(ctx, adv["productionListenerRule"])
        older = [t for t in ctx.live() if t.get("startedBy") != primary["id"]]
        # Blue serves production now; on the first deployment nothing does, and the new
        # revision goes to the service's own target group.
        blue = max(pair, key=lambda g: weights.get(g, 0)) if older and weights else pair[1]
        green = pair[0] if blue == pair[1] else pair[1]
        shift = Shift(blue=blue, green=green, first=not older)
        ctx.s._shifts[primary["id"]] = shift
        ctx.s._colors[primary["id"]] = green
        for t in older:
            ctx.s._colors.setdefault(t["startedBy"], blue)
        alarms = ctx.config.get("alarms") or {}
        if alarms.get("enable") and alarms.get("alarmNames"):
            bridge.update_service_deployment(
                primary["id"], alarms={"status": "MONITORING", "alarmNames": alarms["alarmNames"]}
            )
        log.info("traffic shift started", service=ctx.name, deployment=primary["id"],
                 strategy=ctx.config.get("strategy"), blue=blue, green=green)  # fmt: skip
        return shift

    # -- the stages ----------------------------------------------------------------------
    def _advance(self, ctx: ServiceContext, shift: Shift, adv: dict[str, Any]) -> None:
        primary = ctx.require_primary()
        settings = ctx.s.settings
        elapsed = time.monotonic() - shift.since
        stage = shift.stage
        if stage == "PRE_SCALE_UP":
            self._next(ctx, shift, "SCALE_UP")
        elif stage == "SCALE_UP":
            mine = ctx.live(primary["id"])
            if len(mine) < ctx.desired:
                ctx.start(primary["id"], ctx.desired - len(mine))
            elif len(mine) > ctx.desired:
                for t in sorted(mine, key=ctx.healthy)[: len(mine) - ctx.desired]:
                    ctx.stop(t, f"Scaling activity initiated by (deployment {primary['id']})")
            elif all(ctx.healthy(t) for t in mine):
                self._next(ctx, shift, "POST_SCALE_UP")
        elif stage == "POST_SCALE_UP":
            self._next(ctx, shift, "TEST_TRAFFIC_SHIFT")
        elif stage == "TEST_TRAFFIC_SHIFT":
            if adv.get("testListenerRule"):
                set_weights(ctx, adv["testListenerRule"], shift.blue, shift.green, 100.0)
            self._next(ctx, shift, "POST_TEST_TRAFFIC_SHIFT")
        elif stage == "POST_TEST_TRAFFIC_SHIFT":
            self._next(ctx, shift, "PRODUCTION_TRAFFIC_SHIFT")
        elif stage == "PRODUCTION_TRAFFIC_SHIFT":
            plan = [(100.0, 0.0)] if shift.first else steps(ctx.config)
            percent, bake = plan[shift.step]
            if shift.step_set < shift.step:
                set_weights(ctx, adv["productionListenerRule"], shift.blue, shift.green, percent)
                shift.step_set, shift.since = shift.step, time.monotonic()
                ctx.event(f"shifted {percent:g}% of production traffic to the new revision.")
                return
            if shift.step == len(plan) - 1:
                self._next(ctx, shift, "POST_PRODUCTION_TRAFFIC_SHIFT")
            elif elapsed >= settings.scaled(bake) and not self._hold(
                ctx, shift, "PRODUCTION_TRAFFIC_SHIFT", shift.step
            ):
                shift.step += 1
        elif stage == "POST_PRODUCTION_TRAFFIC_SHIFT":
            self._next(ctx, shift, "BAKE_TIME")
        elif stage == "BAKE_TIME":
            bake = 0.0 if shift.first else 60.0 * float(ctx.config.get("bakeTimeInMinutes", 0))
            if elapsed >= settings.scaled(bake):
                self._next(ctx, shift, "CLEAN_UP")
        elif stage == "CLEAN_UP":
            for t in ctx.live():
                if t.get("startedBy") != primary["id"]:
                    ctx.stop(t, f"Scaling activity initiated by (deployment {primary['id']})")
            if all(t.get("startedBy") == primary["id"] for t in ctx.occupied()):
                ctx.s._shifts.pop(primary["id"], None)
                ctx.complete()

    def _next(self, ctx: ServiceContext, shift: Shift, stage: str) -> None:
        """Leave the current stage (once its hooks let it) for ``stage``."""
        if self._hold(ctx, shift, shift.stage, 0):
            return
        shift.enter(stage)
        bridge.update_service_deployment(ctx.require_primary()["id"], lifecycleStage=stage)

    # -- hooks -----------------------------------------------------------------------------
    def _hold(self, ctx: ServiceContext, shift: Shift, stage: str, step: int) -> bool:
        """True while a PAUSE hook of ``stage`` holds the deployment (one per step)."""
        if (stage, step) in shift.held or shift.first:
            return False
        hooks = [
            h
            for h in ctx.config.get("lifecycleHooks") or []
            if stage in (h.get("lifecycleStages") or []) and h.get("targetType") == "PAUSE"
        ]
        if not hooks:
            shift.held.add((stage, step))
            return False
        timeout = hooks[0].get("timeoutConfiguration") or {}
        minutes = float(timeout.get("timeoutInMinutes", DEFAULT_HOOK_TIMEOUT_MINUTES))
        detail = {
            "hookId": uuid.uuid4().hex[:12],
            "targetType": "PAUSE",
            "status": "AWAITING_ACTION",
            "expiresAt": bridge.utcnow()
            + timedelta(seconds=ctx.s.settings.scaled(60.0 * minutes, floor=1.0)),
            "timeoutAction": timeout.get("action", "ROLLBACK"),
        }
        shift.hook = {**detail, "_stage": stage, "_step": step}
        bridge.update_service_deployment(
            ctx.require_primary()["id"], lifecycleStage=stage, lifecycleHookDetails=[detail]
        )
        ctx.event(f"deployment paused at {stage} (hook {detail['hookId']}).")
        return True

    def _hook_resolved(self, ctx: ServiceContext, shift: Shift) -> bool:
        """Whether the holding hook was acted on (CONTINUE: go on); a ROLLBACK or a
        timeout with ROLLBACK rolls back and returns False."""
        hook = shift.hook
        assert hook is not None
        primary = ctx.require_primary()
        action = bridge.hook_action(primary["id"], hook["hookId"])
        status = "SUCCEEDED"
        if action is None and bridge.utcnow() >= hook["expiresAt"]:
            action, status = hook["timeoutAction"], "TIMED_OUT"
        if action is None:
            return False
        detail = {k: v for k, v in hook.items() if not k.startswith("_")}
        detail["status"] = status if action == "CONTINUE" else "FAILED"
        if status == "TIMED_OUT":
            detail["status"] = "TIMED_OUT"
        bridge.update_service_deployment(primary["id"], lifecycleHookDetails=[detail])
        shift.held.add((hook["_stage"], hook["_step"]))
        shift.hook = None
        if action == "ROLLBACK":
            ctx.fail(f"ECS deployment rolled back at the {hook['_stage']} hook.", rollback=True)
            return False
        return True

    # -- rollback ------------------------------------------------------------------------
    def _alarmed(self, ctx: ServiceContext) -> bool:
        """An alarm of ``deploymentConfiguration.alarms`` in ALARM rolls back (or stops)."""
        alarms = ctx.config.get("alarms") or {}
        names = alarms.get("alarmNames") or []
        if not alarms.get("enable") or not names:
            return False
        found = ctx.s.clients("cloudwatch").describe_alarms(AlarmNames=names)["MetricAlarms"]
        firing = [a["AlarmName"] for a in found if a.get("StateValue") == "ALARM"]
        if not firing:
            return False
        bridge.update_service_deployment(
            ctx.require_primary()["id"],
            alarms={"status": "TRIGGERED", "alarmNames": names, "triggeredAlarmNames": firing},
        )
        ctx.fail(
            f"ECS deployment alarm triggered: {', '.join(firing)}.",
            rollback=bool(alarms.get("rollback")),
        )
        return True

    def _return_to_blue(self, ctx: ServiceContext, shift: Shift, adv: dict[str, Any]) -> None:
        """The rollback deployment: blue's running tasks are its own, all traffic goes back
        to blue at once, green stops; complete once green is gone."""
        primary = ctx.require_primary()
        failed = ctx.s._rollbacks[primary["id"]]
        set_weights(ctx, adv["productionListenerRule"], shift.blue, shift.green, 0.0)
        if adv.get("testListenerRule"):
            set_weights(ctx, adv["testListenerRule"], shift.blue, shift.green, 0.0)
        ctx.s._colors[primary["id"]] = shift.blue
        for t in ctx.live():
            owner = t.get("startedBy")
            if owner == failed:
                ctx.stop(t, f"Scaling activity initiated by (deployment {primary['id']})")
            elif owner != primary["id"] and t.get("taskDefinitionArn") == primary["taskDefinition"]:
                bridge.update_task(t["taskArn"], startedBy=primary["id"])
                t["startedBy"] = primary["id"]
        mine = ctx.live(primary["id"])
        if len(mine) < ctx.desired:
            ctx.start(primary["id"], ctx.desired - len(mine))
        elif all(ctx.healthy(t) for t in mine) and all(
            t.get("startedBy") == primary["id"] for t in ctx.occupied()
        ):
            ctx.s._shifts.pop(failed, None)
            ctx.complete()


# -- the listener rules ECS owns ---------------------------------------------------------
def rule_weights(ctx: ServiceContext, rule_arn: str) -> dict[str, int]:
    elb = ctx.s.clients("elbv2")
    (rule,) = elb.describe_rules(RuleArns=[rule_arn])["Rules"]
    out: dict[str, int] = {}
    for action in rule.get("Actions") or []:
        if action.get("Type") != "forward":
            continue
        groups = (action.get("ForwardConfig") or {}).get("TargetGroups") or []
        if groups:
            out.update({g["TargetGroupArn"]: int(g.get("Weight", 1)) for g in groups})
        elif action.get("TargetGroupArn"):
            out[action["TargetGroupArn"]] = 1
    return out


def set_weights(ctx: ServiceContext, rule_arn: str, blue: str, green: str, percent: float) -> None:
    """Forward ``percent`` of the rule's traffic to green, the rest to blue (weights in
    tenths of a percent, as canaryPercent takes them; ELB allows 0-999 per group)."""
    green_weight = round(percent * 10)
    blue_weight = 1000 - green_weight
    green_weight, blue_weight = min(green_weight, 999), min(blue_weight, 999)
    ctx.s.clients("elbv2").modify_rule(
        RuleArn=rule_arn,
        Actions=[
            {
                "Type": "forward",
                "ForwardConfig": {
                    "TargetGroups": [
                        {"TargetGroupArn": blue, "Weight": blue_weight},
                        {"TargetGroupArn": green, "Weight": green_weight},
                    ]
                },
            }
        ],
    )
