"""A traffic-shifting rollout's pauses: approval, analysis, and the status of both.

Pure, like :mod:`controller.plan` that calls it: from what :mod:`controller.shifts`
observed (the ECS service deployment, the production rule's weights, a step's
measurement, an approval) and the last status, it returns the rollout's status and at
most one action, the answer to the hook ECS holds the deployment at.

Why every decision takes two passes: a step's verdict and values are written to the
status (by the pass that measured them) before the pass after it answers the hook. A
controller killed in between finds the verdict in the status and answers it, without
measuring again; one killed before finds the hook still waiting and measures the same
window (its start is in the status too). Nothing is repeated, and nothing is lost.

- At the approval pause (``POST_TEST_TRAFFIC_SHIFT``): CONTINUE on an approval of this
  version, ROLLBACK on a rejection, else wait with ``Progressing=True
  AwaitingApproval``. A rollback (a version live before, or a restore) needs none.
- At each analysis pause (``PRODUCTION_TRAFFIC_SHIFT``, after a step's bake): measure the
  step, judge it (:mod:`controller.analysis`), CONTINUE once it passed; after more than
  ``failureLimit`` failures, ROLLBACK. A failure within the limit measures a fresh
  window. Too little traffic waits, and says how much it has.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from controller.actions import (
    ANALYSIS_STAGE,
    APPROVAL_STAGE,
    ContinueDeployment,
)
from controller.analysis import FAIL, INCONCLUSIVE, PASS, judge
from controller.api import AnalysisStep, ApprovalRecord, ModelDeploymentSpec, RolloutStatus
from controller.observe import ServiceState
from controller.shifts import ShiftState
from mlops_core.approvals import PAST

#: Condition reasons while a rollout shifts traffic.
SHIFTING = "ShiftingTraffic"
AWAITING_APPROVAL = "AwaitingApproval"
ANALYSING = "AnalysisRunning"
STAGE_ORDER = (
    "RECONCILE_SERVICE",
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


@dataclass
class Progress:
    rollout: RolloutStatus
    reason: str
    message: str
    actions: list[ContinueDeployment] = field(default_factory=list)
    #: Look again soon: a verdict was just written and waits for its answer.
    soon: bool = False


def _groups(
    svc: ServiceState, shift: ShiftState, strategy: str, known: RolloutStatus | None
) -> tuple[str | None, str | None]:
    """(canary, stable) target groups: as first recorded, else inferred from the weights
    (before production traffic moves, the stable group has it all)."""
    if known is not None and known.canary_target_group and known.stable_target_group:
        return known.canary_target_group, known.stable_target_group
    pair = [g for g in (*svc.load_balancers[:1], svc.alternate_target_group) if g]
    if len(pair) != 2:
        return None, None
    w = shift.weights
    stage = shift.stage if shift.stage in STAGE_ORDER else "PRE_SCALE_UP"
    shifted = STAGE_ORDER.index(stage) >= STAGE_ORDER.index(ANALYSIS_STAGE)
    lighter = min(pair, key=lambda g: (w.get(g, 0), g != svc.alternate_target_group))
    heavier = pair[0] if lighter == pair[1] else pair[1]
    if shifted and strategy == "BLUE_GREEN":
        return heavier, lighter
    return lighter, heavier


def progress(
    spec: ModelDeploymentSpec,
    svc: ServiceState,
    shift: ShiftState,
    known: RolloutStatus | None,
    *,
    canary_version: str,
    stable_version: str | None,
    approval_needed: bool,
    no_gate_reason: str | None,
    approval: ApprovalRecord | None,
    owner: str,
    now: datetime,
) -> Progress:
    """The rollout's status and the answer to its hook, if one is due.

    ``no_gate_reason`` says why this rollout is neither held for approval nor analysed
    (a rollback); ``approval`` is the observed :class:`ApprovalRecord`, if any."""
    if known is not None and known.service_deployment != shift.service_deployment:
        known = None
    strategy = svc.deployment_strategy.strategy if svc.deployment_strategy else "CANARY"
    canary_tg, stable_tg = _groups(svc, shift, strategy, known)
    canary_pct = shift.percent(canary_tg) if canary_tg else None
    stable_pct = None if canary_pct is None else round(100.0 - canary_pct, 1)
    since = known.traffic_since if known is not None else None
    if known is None or known.canary_percent != canary_pct or since is None:
        since = now
    rollout = RolloutStatus(
        service_deployment=shift.service_deployment,
        strategy=strategy,
        stage=shift.stage,
        stable_version=stable_version,
        canary_version=canary_version,
        stable_percent=stable_pct,
        canary_percent=canary_pct,
        canary_target_group=canary_tg,
        stable_target_group=stable_tg,
        traffic_since=since,
        failures=known.failures if known is not None else 0,
        steps=list(known.steps) if known is not None else [],
        approval=known.approval if known is not None else None,
    )
    shares = (
        f"{canary_version} gets {canary_pct:g}% of production traffic, "
        f"{stable_version or 'the stable revision'} {stable_pct:g}%"
        if canary_pct is not None and stable_pct is not None
        else f"{canary_version} is rolling out"
    )
    base = f"{shares} (ECS stage {shift.stage or 'unknown'})"
    hook = shift.hook
    if hook is None:
        return Progress(rollout, SHIFTING, base)

    def answer(action: str, why: str) -> ContinueDeployment:
        return ContinueDeployment(
            service_deployment=shift.service_deployment,
            hook_id=hook.id,
            action=action,  # type: ignore[arg-type]
            reason=why,
            project=spec.project,
            env=spec.env,
            owner=owner,
        )

    if hook.stage == APPROVAL_STAGE:
        if not approval_needed or no_gate_reason:
            why = no_gate_reason or "no approval is required"
            return Progress(rollout, SHIFTING, f"{base}; {why}", [answer("CONTINUE", why)])
        record = approval
        version = record.version if record is not None else None
        if record is not None and version == canary_version:
            rollout = rollout.model_copy(update={"approval": record})
            who = f"{PAST[record.decision]} by {record.by}: {record.reason}"
            action = "CONTINUE" if record.decision == "approve" else "ROLLBACK"
            return Progress(rollout, SHIFTING, f"{base}; {who}", [answer(action, who)])
        other = f" (a decision names {version}, not {canary_version})" if record else ""
        return Progress(
            rollout,
            AWAITING_APPROVAL,
            f"{canary_version} waits for approval before production traffic shifts{other}: "
            f"'mlopsctl approve {owner.rpartition('/')[2]} --version {canary_version} "
            "--reason TEXT', or 'mlopsctl reject'",
        )

    if hook.stage != ANALYSIS_STAGE:
        return Progress(rollout, SHIFTING, f"{base}; paused at hook {hook.id}")
    analysis = spec.analysis
    if analysis is None or no_gate_reason:
        why = no_gate_reason or "no analysis is configured"
        return Progress(rollout, SHIFTING, f"{base}; {why}", [answer("CONTINUE", why)])
    last = next((s for s in reversed(rollout.steps) if s.hook == hook.id), None)
    if last is not None and last.verdict == PASS:
        why = f"analysis passed at {last.traffic_percent:g}%: {last.message}"
        return Progress(rollout, ANALYSING, f"{base}; {why}", [answer("CONTINUE", why)])
    if rollout.failures > analysis.failure_limit:
        failed = last.message if last is not None else "analysis failed"
        why = (
            f"analysis failed {rollout.failures} time(s), more than failureLimit="
            f"{analysis.failure_limit}: {failed}"
        )
        return Progress(rollout, ANALYSING, f"{base}; {why}", [answer("ROLLBACK", why)])
    m = shift.measurement
    if m is None or m.error:
        why = f"cannot measure yet: {m.error}" if m is not None and m.error else "measuring"
        return Progress(rollout, ANALYSING, f"{base}; {why}")
    verdict = judge(analysis, m.canary, m.stable, m.prediction_shift)
    step = AnalysisStep(
        hook=hook.id,
        traffic_percent=canary_pct or 0.0,
        canary=m.canary,
        stable=m.stable,
        prediction_shift=m.prediction_shift,
        verdict=verdict.verdict,
        message=verdict.message,
        at=now,
    )
    if verdict.verdict == INCONCLUSIVE:
        rollout = rollout.model_copy(update={"measuring": step})
        return Progress(rollout, ANALYSING, f"{base}; {verdict.message}")
    update: dict = {"steps": [*rollout.steps, step]}
    if verdict.verdict == FAIL:
        # A failure within the limit is judged afresh, over a new window.
        update |= {"failures": rollout.failures + 1, "traffic_since": now}
    rollout = rollout.model_copy(update=update)
    return Progress(
        rollout,
        ANALYSING,
        f"{base}; step {verdict.verdict.lower()}ed: {verdict.message}",
        soon=True,
    )
