"""Plan: from the desired and the observed state to actions and the status that follows.

Everything here is pure: no I/O, no clock (``Observed.now`` carries the time). ``decide``
returns the actions *and* the status the deployment has once they succeed; ``plan`` is
just its actions. ``apply`` simulates actions on an observed state, so tests can check
that a plan reaches the desired state and that planning again yields nothing.

The rules, in order:

1. Observation errors (unknown project, unpublished version, bad candidate) and an env
   claimed by another deployment block the deployment: no actions, Degraded=True. An
   unclaimed env is claimed first (ClaimEnv), and a service the deployment did not create
   is labelled its own next (AdoptService), before any other action.
   So does a spec whose estimated monthly cost (``controller.costing``, at
   ``Desired.prices``) exceeds ``spec.budget.maxMonthlyUSD``: BudgetExceeded, nothing
   changes, except that a failed or stuck rollout is still rolled back (2, 3): that
   returns to what ran before. Every status carries the spec's estimate
   (``status.cost``) when prices are known.
2. A version that failed at this generation (status ``failedVersion``/``failedGeneration``,
   or the service's failed-version tags) is held: the restored version is kept converged,
   the failed one is not retried until the spec changes.
3. A failed rollout of the desired version (ECS rolloutState FAILED, e.g. the circuit
   breaker, or stuck past ``progressDeadlineSeconds``) fails it: with ``rollback.onFailure``
   service and pointer return to the last good version.
4. Gates: a version must pass them (project gates overridden by ``spec.gates``) against
   the env's current version before it goes live; failing, nothing changes. A live version
   failing them (gates tightened) is rolled back like a failed rollout.
5. Converge on the version: publish a candidate, register a task definition pinning
   (image, version, digest) unless a matching revision is known, create or update the
   service, and move the pointer last, with the service.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from controller.actions import (
    ANALYSIS_STAGE,
    APPROVAL_STAGE,
    TAG_DEPLOYMENT,
    TAG_FAILED_GENERATION,
    TAG_FAILED_VERSION,
    TAG_REPLICAS,
    TAG_RESTORED_VERSION,
    Action,
    AdoptService,
    ClaimEnv,
    ContinueDeployment,
    CreateService,
    MovePointer,
    PauseHook,
    PublishCandidate,
    RegisterTaskDefinition,
    Rollback,
    Rollout,
    ServiceSpec,
    StopDeployment,
    TaskSpec,
    UpdateService,
    describe,
)
from controller.api import (
    Analysis,
    Approval,
    CanaryStep,
    LinearSteps,
    ModelDeployment,
    ModelDeploymentStatus,
    Strategy,
    degraded_status,
    set_condition,
)
from controller.costing import cost_status, spec_workload
from controller.observe import (
    COMPLETED,
    FAILED,
    DeploymentState,
    Observed,
    ServiceState,
    TaskDefinitionState,
)
from controller.ownership import conflict, other_owner, service_label
from controller.progressive import Progress, progress
from controller.shifts import ACTIVE_STATUSES
from mlops_core.artifacts import MANIFEST, Manifest, sha256_bytes
from mlops_core.claims import Claim
from mlops_core.config import PlatformSettings
from mlops_core.cost.estimate import BudgetExceeded, Estimate, check_budget, estimate
from mlops_core.cost.prices import PriceBook
from mlops_core.errors import IntegrityError
from mlops_core.gates import GateReport, Override, check, gate_values, merge
from mlops_core.naming import MANAGED_BY_TAG, Platform
from mlops_core.pointer import ModelPointer
from mlops_core.policy import check_in_force
from mlops_core.project import Gates, ProjectConfig
from mlops_core.publication import SIGNATURE, Pins

# How soon to look again: while a rollout runs, and right after acting (defaults of
# Polling; a blocked deployment is looked at again after RETRY_SECONDS).
ROLLOUT_POLL_SECONDS = 15.0
AFTER_ACTION_SECONDS = 5.0
RETRY_SECONDS = 30.0

RETRY_HINT = (
    ". Change the spec to try again: declare another version, or roll this one out again "
    "with 'mlopsctl deploy --retry' (kubectl: bump spec.retry)."
)
# How an ECS service deployment ends when it did not go through.
ROLLED_BACK = ("ROLLBACK_SUCCESSFUL", "ROLLBACK_FAILED", "ROLLBACK_IN_PROGRESS", "STOPPED")

READY = "Ready"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"
# The reason of Degraded=True when a stored version or a pin disagrees with publication.
INTEGRITY_FAILED = IntegrityError.reason


@dataclass(frozen=True)
class NetworkConfig:
    """Where Fargate tasks run: Terraform's outputs, passed in the environment."""

    subnets: tuple[str, ...] = ()
    security_groups: tuple[str, ...] = ()
    assign_public_ip: bool = False
    execution_role_arn: str | None = None
    task_role_arn: str | None = None
    #: The role ECS moves the listener rule's weights with (traffic-shifting strategies;
    #: Terraform's ecs_infrastructure role).
    infrastructure_role_arn: str | None = None
    #: Whose load balancers services attach to (controller.loadbalancing): "terraform"
    #: (found by name), "managed" (the controller creates them), "none".
    load_balancers: str = "none"
    #: healthCheckGracePeriodSeconds of load-balanced services (None: the default).
    health_check_grace_seconds: int | None = None

    @property
    def load_balancers_on(self) -> bool:
        return self.load_balancers != "none"

    @classmethod
    def from_settings(cls, s: PlatformSettings) -> NetworkConfig:
        """Terraform's ``controller_environment``: ``MLOPS_SUBNETS``,
        ``MLOPS_SECURITY_GROUPS``, ``MLOPS_ASSIGN_PUBLIC_IP``, the role ARNs and
        ``MLOPS_LOAD_BALANCERS``, as :mod:`mlops_core.config` read them."""
        return cls(
            subnets=s.subnet_ids,
            security_groups=s.security_group_ids,
            assign_public_ip=s.assign_public_ip,
            execution_role_arn=s.execution_role_arn or None,
            task_role_arn=s.task_role_arn or None,
            infrastructure_role_arn=s.infrastructure_role_arn or None,
            load_balancers=s.load_balancers,
            health_check_grace_seconds=s.health_check_grace_seconds,
        )


@dataclass(frozen=True)
class Polling:
    """How soon the controller looks at a deployment again (seconds): the controller's
    settings ``MLOPS_ROLLOUT_POLL_SECONDS`` and ``MLOPS_AFTER_ACTION_SECONDS`` (a local
    data plane finishes rollouts in seconds; AWS in minutes)."""

    rollout: float = ROLLOUT_POLL_SECONDS
    after_action: float = AFTER_ACTION_SECONDS


@dataclass(frozen=True)
class Desired:
    deployment: ModelDeployment
    status: ModelDeploymentStatus | None
    platform: Platform
    network: NetworkConfig = NetworkConfig()
    polling: Polling = Polling()
    #: The region's prices, for the estimate and the budget; None: unknown (why: below).
    prices: PriceBook | None = None
    prices_error: str = ""
    #: Where the deployment's manifest lives, recorded in the claim it makes.
    source: str = ""


@dataclass(frozen=True)
class Decision:
    actions: list[Action]
    status: ModelDeploymentStatus  # as it reads once the actions succeeded
    requeue_after: float | None
    degraded: bool
    #: The revision the service should run, when the plan registers it (ARN unknown yet).
    task: TaskSpec | None = None
    #: The spec's monthly cost estimate (None: no prices, or nothing to price yet).
    cost: Estimate | None = None


def task_spec(
    platform: Platform, deployment: ModelDeployment, manifest: Manifest, pins: Pins
) -> TaskSpec:
    """The revision that serves ``manifest``, pinned as its publication recorded it, with
    the deployment's serving settings."""
    s = deployment.spec
    return TaskSpec(
        family=platform.task_family(s.project, s.env),
        project=s.project,
        env=s.env,
        image=s.serving.image,
        version=manifest.version,
        sha256=manifest.model_sha256,
        model_uri=platform.version_uri(s.project, manifest.version),
        cpu=s.serving.cpu,
        memory=s.serving.memory,
        port=s.serving.port,
        manifest_sha256=pins.manifest_sha256,
        object_versions=pins.objects_json(),
        capture_percent=s.monitoring.capture_percent,
        capture_flush_seconds=(s.monitoring.capture_flush_seconds or 0.0)
        if s.monitoring.capture_percent
        else 0.0,
        drift=tuple(sorted(s.monitoring.drift.job_environment().items())),
    )


def _pinned_as(spec: TaskSpec, pins: Pins | None) -> bool:
    """Whether a revision pins what publication recorded (older revisions pin nothing)."""
    return pins is not None and (spec.manifest_sha256, spec.object_versions) == (
        pins.manifest_sha256,
        pins.objects_json(),
    )


def service_spec(
    platform: Platform,
    deployment: ModelDeployment,
    network: NetworkConfig | None = None,
    project: ProjectConfig | None = None,
) -> ServiceSpec:
    s = deployment.spec
    return ServiceSpec(
        name=platform.service_name(s.project, s.env),
        replicas=s.serving.replicas,
        min_healthy_percent=s.strategy.min_healthy_percent,
        max_percent=s.strategy.max_percent,
        load_balanced=network is not None and network.load_balancers != "none",
        rollout=rollout(
            s.strategy,
            analysis=s.analysis,
            approval=approval(deployment, project),
            alarm=platform.canary_alarm(s.project, s.env),
        ),
    )


def approval(deployment: ModelDeployment, project: ProjectConfig | None) -> Approval | None:
    """The approval a new revision needs: the spec's, else the project's default for the
    env (its registered ``approval_required``), for traffic-shifting strategies only."""
    s = deployment.spec
    if not s.strategy.shifts_traffic:
        return None
    if s.approval is not None:
        return s.approval if s.approval.required else None
    if project is not None and s.env in project.approval_required:
        return Approval()
    return None


ECS_STRATEGIES = {"Rolling": "ROLLING", "Canary": "CANARY", "Linear": "LINEAR",
                  "BlueGreen": "BLUE_GREEN"}  # fmt: skip


def rollout(
    strategy: Strategy,
    *,
    analysis: Analysis | None = None,
    approval: Approval | None = None,
    alarm: str | None = None,
) -> Rollout:
    """``spec.strategy`` as ECS's deployment configuration (the spec's defaults filled in,
    so that what ECS reports back compares equal), with the PAUSE hooks that approval and
    analysis need."""
    canary = linear = None
    if strategy.type == "Canary":
        c = strategy.canary or CanaryStep()
        canary = (c.percent, c.bake_minutes)
    elif strategy.type == "Linear":
        step = strategy.linear or LinearSteps()
        linear = (step.step_percent, step.step_bake_minutes)
    hooks: list[PauseHook] = []
    if strategy.shifts_traffic and approval is not None:
        hooks.append(PauseHook(APPROVAL_STAGE, approval.timeout_minutes, "ROLLBACK"))
    if strategy.shifts_traffic and analysis is not None:
        hooks.append(PauseHook(ANALYSIS_STAGE, analysis.timeout_minutes, analysis.timeout_action))
    return Rollout(
        strategy=ECS_STRATEGIES[strategy.type],
        canary=canary,
        linear=linear,
        bake_minutes=strategy.bake_minutes,
        hooks=tuple(hooks),
        # With analysis, an alarm on the new revision's 5xx share rolls back by ECS
        # itself, so a rollout is guarded while no controller judges it.
        alarms=(alarm,) if strategy.shifts_traffic and analysis is not None and alarm else (),
        alarm_error_rate=analysis.max_error_rate if analysis is not None else 0.05,
    )


def plan(desired: Desired, observed: Observed) -> list[Action]:
    """The actions that move ``observed`` to ``desired``; [] when converged."""
    return decide(desired, observed).actions


# -- the decision ---------------------------------------------------------------------
class _Status:
    """Builds the next status from the previous one; conditions via set_condition."""

    def __init__(self, previous: ModelDeploymentStatus | None, generation: int | None, now):
        self.fields = (previous or ModelDeploymentStatus()).model_dump()
        self.fields["observed_generation"] = generation
        self.conditions = list((previous or ModelDeploymentStatus()).conditions)
        self.generation = generation
        self.now = now

    def set(self, type_: str, status: bool, reason: str, message: str = "") -> None:
        self.conditions = set_condition(
            self.conditions,
            type_,
            "True" if status else "False",
            reason,
            message,
            observed_generation=self.generation,
            now=self.now,
        )

    def build(self) -> ModelDeploymentStatus:
        fields = {k: v for k, v in self.fields.items() if k != "conditions"}
        return ModelDeploymentStatus(**fields, conditions=self.conditions)


def _gen(value: int | None) -> int:
    return value or 0


def _td(observed: Observed, arn: str | None) -> TaskDefinitionState | None:
    return observed.task_definitions.get(arn) if arn else None


def _version_of(observed: Observed, arn: str | None) -> str | None:
    td = _td(observed, arn)
    return td.spec.version if td is not None and td.spec is not None else None


def _was_ready(status: ModelDeploymentStatus | None) -> bool:
    c = status.condition(READY) if status else None
    return c is not None and c.status == "True"


def _find_td(observed: Observed, spec: TaskSpec, prefer: list[str | None]) -> str | None:
    """An observed, active revision pinning exactly ``spec`` (``prefer``red ARNs first)."""
    arns = [a for a in prefer if a] + sorted(observed.task_definitions)
    for arn in arns:
        td = observed.task_definitions.get(arn)
        if td is not None and td.active and td.spec == spec:
            return arn
    return None


def _progressing_since(status: ModelDeploymentStatus | None) -> datetime | None:
    c = status.condition(PROGRESSING) if status else None
    return c.last_transition_time if c is not None and c.status == "True" else None


def _failure(desired: Desired, observed: Observed, version: str) -> tuple[str | None, str] | None:
    """A not-yet-handled failed rollout of ``version``: (ECS deployment id, why)."""
    svc = observed.service
    if svc is None:
        return None
    st = desired.status
    handled = st.failed_deployment if st else None
    for d in svc.deployments:
        if d.id == handled or _version_of(observed, d.task_definition) != version:
            continue
        if d.rollout_state == FAILED:
            why = d.rollout_reason or "the ECS deployment circuit breaker stopped it"
            why += _judged(st, version)
            return d.id, (
                f"the rollout of {version} failed: {why} "
                f"({d.failed_tasks} failed tasks, {d.running}/{d.desired} running)"
            )
    known = st.rollout if st is not None else None
    end = observed.rollout_end
    if (
        known is not None
        and known.canary_version == version
        and end is not None
        and end[0] in ROLLED_BACK
        # Of this spec: a rollout ECS ended while nobody looked, of a generation the
        # spec has moved on from since, is that generation's failure, not this one's
        # (which is then tried, as any changed spec is).
        and st is not None
        and _gen(st.observed_generation) == _gen(desired.deployment.metadata.generation)
    ):
        why = end[1] or f"ECS ended it {end[0]}"
        return None, f"the rollout of {version} was rolled back by ECS: {why}{_judged(st, version)}"
    if _version_of(observed, svc.task_definition) != version:
        return None
    rollout = svc.rollout
    if rollout is not None and rollout.rollout_state in (COMPLETED, FAILED):
        return None
    # Like a Kubernetes Deployment's progress deadline: from the start of the ECS
    # deployment, or (before ECS lists one) from when this controller started it.
    started = rollout.created_at if rollout is not None else None
    started = started or _progressing_since(st)
    deadline = desired.deployment.spec.strategy.progress_deadline_seconds
    if started is None or (observed.now - started).total_seconds() <= deadline:
        return None
    running = f"{rollout.running}/{rollout.desired}" if rollout else f"0/{svc.desired_count}"
    return (rollout.id if rollout else None), (
        f"the rollout of {version} did not complete within "
        f"progressDeadlineSeconds={deadline} ({running} tasks running)"
    )


def _judged(status: ModelDeploymentStatus | None, version: str) -> str:
    """What judged a rolled-back progressive rollout of ``version``: the rejection, or
    the failed analysis step (from the status the pauses wrote)."""
    r = status.rollout if status is not None else None
    if r is None or r.canary_version != version:
        return ""
    if r.approval is not None and r.approval.decision == "reject":
        return f" (rejected by {r.approval.by}: {r.approval.reason})"
    failed = [s for s in r.steps if s.verdict == "Fail"]
    if failed:
        return f" (analysis at {failed[-1].traffic_percent:g}%: {failed[-1].message})"
    if r.measuring is not None:
        # No verdict came (too little traffic, say) before ECS's timeout or an alarm.
        m = r.measuring
        return f" (the step at {m.traffic_percent:g}% had no verdict yet: {m.message})"
    return ""


def _live_version(observed: Observed) -> str | None:
    svc = observed.service
    return _version_of(observed, svc.task_definition) if svc else None


def _restore_target(desired: Desired, observed: Observed, failing: str) -> str | None:
    """The last good version to return to when ``failing`` fails."""
    st = desired.status
    options = [st.current_version, st.previous_version] if st is not None else []
    # Then what AWS serves (the status may be lost, or from before a first deploy).
    options += [_live_version(observed), observed.pointer.version if observed.pointer else None]
    for v in options:
        if v and v != failing and v in observed.pins:
            return v
    return None


def _held(desired: Desired, observed: Observed, version: str) -> str | None:
    """If ``version`` failed at this generation: the version restored instead ('' if none)."""
    st = desired.status
    gen = _gen(desired.deployment.metadata.generation)
    if st is not None and st.failed_version == version and _gen(st.failed_generation) == gen:
        return st.current_version if st.current_version != version else ""
    svc = observed.service
    if (
        svc is not None
        and svc.tags.get(TAG_FAILED_VERSION) == version
        and svc.tags.get(TAG_FAILED_GENERATION) == str(gen)
    ):
        return svc.tags.get(TAG_RESTORED_VERSION, "")
    return None


def decide(desired: Desired, observed: Observed) -> Decision:
    return _Planner(desired, observed).decide()


class _Planner:
    def __init__(self, desired: Desired, observed: Observed):
        self.desired = desired
        self.observed = observed
        self.dep = desired.deployment
        self.spec = desired.deployment.spec
        self.gen = desired.deployment.metadata.generation
        self.st = desired.status
        self.status = _Status(desired.status, self.gen, observed.now)
        self.cost: Estimate | None = None
        #: The ownership check passed: the env is this deployment's, or free to claim.
        self.owned = False
        #: The gates' verdict on the desired version (None until judged).
        self.report: GateReport | None = None

    # -- outcomes ----------------------------------------------------------------------
    def blocked(self, reason: str, message: str, requeue: float | None = None) -> Decision:
        """Nothing to do until something changes: say why on all three conditions."""
        status = degraded_status(self.status.build(), self.gen, reason, message, self.observed.now)
        return Decision([], status, requeue, degraded=True)

    def decide(self) -> Decision:
        decision = self._decide()
        # A refusal (gates, budget, ...) writes nothing, not even a claim; a converged env
        # from before claims is claimed, so that no other deployment can take it.
        if self.owned and (decision.actions or not decision.degraded):
            decision = replace(decision, actions=self.ownership() + decision.actions)
        return replace(decision, cost=self.cost)

    def ownership(self) -> list[Action]:
        """Claim the env if unclaimed, then label a service made by someone else as this
        deployment's: the first writes, so a loser of the claim writes nothing more."""
        out: list[Action] = []
        key, spec, svc = self.dep.key, self.spec, self.observed.service
        if self.observed.claim is None:
            out.append(ClaimEnv(spec.project, spec.env, key, self.desired.source))
        if svc is not None and svc.status == "ACTIVE" and service_label(svc.tags) != key:
            out.append(AdoptService(svc.arn, key, spec.project, spec.env))
        return out

    def _decide(self) -> Decision:
        obs = self.observed
        if obs.error is not None:
            return self.blocked(obs.error.reason, obs.error.render())
        owner = other_owner(self.dep.key, obs.claim)
        if owner is not None:
            return self.blocked(
                "Conflict", conflict(self.spec.project, self.spec.env, self.dep.key, owner).render()
            )
        self.owned = True
        svc = obs.service
        if svc is not None and svc.status == "DRAINING":
            return self.blocked(
                "ServiceDraining",
                f"ECS service {svc.name} is being deleted; it is created again once gone",
                RETRY_SECONDS,
            )
        if self.spec.strategy.shifts_traffic and not self.desired.network.load_balancers_on:
            return self.blocked(
                "InvalidSpec",
                f"strategy {self.spec.strategy.type} shifts traffic between the env's two "
                "target groups, and this controller runs without load balancers "
                "(MLOPS_LOAD_BALANCERS=none); nothing changed",
            )
        version = obs.desired_version
        assert version is not None
        # Priced first (every status carries the estimate), refused after the failure
        # handling: a rollback returns to what ran before, so a budget (lowered during a
        # rollout, or a spec over it) never keeps a failed or stuck rollout in place.
        refused = self.budget(version)
        on_failure = self.spec.rollback.on_failure

        restored = _held(self.desired, obs, version)
        if restored is not None:
            return self.hold(version, restored, on_failure)

        failure = _failure(self.desired, obs, version)
        if failure is not None:
            deployment_id, why = failure
            return self.fail(version, why, "RolloutFailed", deployment_id)

        if refused is not None:
            return refused

        deleted = self.deleted_revisions()
        if deleted is not None:
            return self.blocked(INTEGRITY_FAILED, deleted)

        gate_failure = self.gates(version)
        if gate_failure is not None:
            live = _live_version(obs) == version or (
                obs.pointer is not None and obs.pointer.version == version
            )
            if live:
                return self.fail(version, gate_failure, "GateFailed", None)
            serving = self.st.current_version if self.st else None
            return self.blocked(
                "GateFailed",
                f"{gate_failure}; nothing changed"
                + (f" ({serving} is still served)" if serving else ""),
            )
        unmeasurable = self.unmeasurable_shift()
        if unmeasurable is not None:
            return self.blocked("InvalidSpec", unmeasurable)
        unapproved = self.approval_policy_unmet(version)
        if unapproved is not None:
            return self.blocked("InvalidSpec", unapproved)
        superseded = self.supersede(version)
        if superseded is not None:
            return superseded
        return self.converge(version)

    def unmeasurable_shift(self) -> str | None:
        """Why a rollout's prediction shift could never be measured, if so: the analysis
        compares the new revision's captured predictions with the live revision's, and a
        live revision that captures none (capture came with this very change) has none to
        compare. Its steps would wait for ECS's timeout, which then fails the version."""
        analysis, svc = self.spec.analysis, self.observed.service
        if (
            analysis is None
            or analysis.max_prediction_shift is None
            or svc is None
            or not self.spec.strategy.shifts_traffic
            or (self.report is not None and self.report.rollback)  # not analysed
        ):
            return None
        live = _td(self.observed, svc.task_definition)
        if live is None or live.spec is None or live.spec.capture_percent > 0:
            return None
        return (
            "spec.analysis.maxPredictionShift compares the new revision's captured "
            f"predictions with those of the live revision ({live.spec.version}), which "
            "captures none: deploy spec.monitoring.capturePercent without "
            f"maxPredictionShift first, then add it; nothing changed ({live.spec.version} "
            "is still served)"
        )

    def approval_policy_unmet(self, version: str) -> str | None:
        """Why this rollout would skip the approval the project's policy requires for the
        env (``approval_required``, changed only by ``mlopsctl policy set --reason``), if
        it would: a policy that any manifest author could opt out of, by choosing Rolling
        or ``approval.required: false``, would govern nothing. A rollback is never held
        (it returns to a version that ran), nor is a version already live."""
        project, spec = self.observed.project, self.spec
        if (
            project is None
            or spec.env not in project.approval_required
            or _live_version(self.observed) in (None, version)
            or (self.report is not None and self.report.rollback)
        ):
            return None
        if not spec.strategy.shifts_traffic:
            why = f"its strategy is {spec.strategy.type}, which no one approves"
        elif spec.approval is not None and not spec.approval.required:
            why = "spec.approval.required is false"
        else:
            return None
        serving = self.st.current_version if self.st else None
        return (
            f"{spec.project}/{spec.env} requires approval of each new version (the "
            f"project's approval_required policy), but {why}: use a Canary, Linear or "
            "BlueGreen strategy and leave spec.approval out (or required: true); "
            "nothing changed" + (f" ({serving} is still served)" if serving else "")
        )

    def supersede(self, version: str) -> Decision | None:
        """A traffic-shifting rollout of another version is in progress: ECS would start a
        second one beside it (both new revisions in the group that gets the canary's
        share, neither judged on its own), so the one in progress is rolled back first
        (at its pause, or by ECS's stop when it has none) and ``version`` is deployed once
        it has ended. Only the rollout this deployment's status names is stopped: one
        ECS started itself (a rollback) is waited for."""
        obs = self.observed
        svc, shift = obs.service, obs.shift
        if svc is None or shift is None or shift.status not in ACTIVE_STATUSES:
            return None
        rolling = _version_of(obs, svc.task_definition)
        if rolling is None or rolling == version:
            return None
        known = self.st.rollout if self.st is not None else None
        own = (
            known is not None
            and known.service_deployment == shift.service_deployment
            and known.outcome is None
        )
        actions: list[Action] = []
        message = f"{version} is declared while ECS's rollout of {rolling} is in progress"
        why = f"superseded by {version} (generation {_gen(self.gen)})"
        stage = shift.stage or "unknown"
        if shift.status not in ("PENDING", "IN_PROGRESS"):
            message += f": ECS is rolling it back ({shift.status})"
        elif not own:
            message += f": waiting for it to end (ECS stage {stage})"
        elif shift.hook is not None:
            actions.append(
                ContinueDeployment(
                    service_deployment=shift.service_deployment,
                    hook_id=shift.hook.id,
                    action="ROLLBACK",
                    reason=why,
                    project=self.spec.project,
                    env=self.spec.env,
                    owner=self.dep.key,
                )
            )
            message += f": it is rolled back at its pause (ECS stage {stage})"
        elif shift.status == "IN_PROGRESS":
            # No pause to answer (no analysis, no approval): ECS's own stop rolls it back
            # now, rather than after its whole shift (a rollback in an incident).
            actions.append(
                StopDeployment(
                    service_deployment=shift.service_deployment,
                    reason=why,
                    project=self.spec.project,
                    env=self.spec.env,
                    owner=self.dep.key,
                )
            )
            message += f": it is stopped and rolled back (ECS stage {stage})"
        else:
            message += ": waiting for ECS to start it, then it is rolled back"
        message += f"; then {version} is deployed, never beside it"
        s = self.status
        s.set(DEGRADED, False, "AsExpected")
        s.set(PROGRESSING, True, "Superseding", message)
        s.set(READY, False, "Superseding", message)
        return Decision(actions, s.build(), self.desired.polling.after_action, degraded=False)

    def budget(self, version: str) -> Decision | None:
        """Price the spec (into the status); a Decision if it is over its budget or
        cannot be priced against one."""
        limit = self.spec.budget.max_monthly_usd
        prices = self.desired.prices
        if prices is None:
            if limit is None:
                return None
            return self.blocked(
                "PricesUnavailable",
                "spec.budget.maxMonthlyUSD is set but the spec cannot be priced: "
                f"{self.desired.prices_error or 'no prices'}; nothing changed",
                RETRY_SECONDS,
            )
        workload = spec_workload(
            self.spec,
            self.observed.manifests.get(version),
            load_balanced=self.desired.network.load_balancers_on,
        )
        self.cost = estimate(workload, prices)
        self.status.fields["cost"] = cost_status(self.cost).model_dump()
        try:
            check_budget(self.cost, limit, serving=self.st.current_version if self.st else None)
        except BudgetExceeded as exc:
            return self.blocked(exc.reason, exc.render())
        return None

    def deleted_revisions(self) -> str | None:
        """Why the registration in force cannot judge (mlops_core.policy.check_in_force:
        the live value was judged by a newer revision than the newest there is, as
        ``promote`` refuses); None if it can."""
        p, revision = self.observed.pointer, self.observed.policy_revision
        if p is None or revision is None:
            return None
        platform = self.desired.platform
        try:
            check_in_force(
                p.policy_revision,
                revision,
                what=f"the live value of {self.spec.project}/{self.spec.env}",
                where=f"s3://{platform.artifact_bucket}/"
                f"{platform.registration_prefix(self.spec.project)}",
            )
        except IntegrityError as exc:
            return exc.render()
        return None

    def effective_gates(self) -> Gates:
        """The project's gates with the deployment's overrides: what judges a version."""
        assert self.observed.project is not None
        return merge(self.observed.project.gates, self.spec.gates.thresholds())

    def gates(self, version: str) -> str | None:
        """None if ``version`` may go live (it passes the gates, or a rollback skipped
        max_regression, or the spec's override names it), else a message naming the
        failed gates."""
        obs = self.observed
        assert obs.project is not None
        # Judged against the env's current version (the one it replaces, or replaced
        # when it went live): the same one a failure would restore, so the verdict does
        # not change once the version is live.
        before = _restore_target(self.desired, obs, version)
        current = obs.manifests.get(before) if before else None
        given = self.spec.gates.override
        override = None if given is None else Override(given.version, given.reason, given.by)
        self.report = check(
            self.effective_gates(),
            obs.manifests[version],
            current,
            env=self.spec.env,
            live_at=obs.live_at,
            override=override,
        )
        return None if self.report.passed else self.report.summary()

    def gate_note(self) -> str:
        """What changed the gates' verdict (a rollback's skip, an override), for the
        status; '' when nothing did."""
        r = self.report
        if r is None or not r.passed or not (r.forced or r.skipped):
            return ""
        parts = []
        if r.forced:
            assert r.override is not None
            parts.append(f"FORCED past {', '.join(g.name for g in r.failed)} ({r.override.note()})")
        parts += [f"SKIP {g.name}: {g.detail}" for g in r.skipped]
        return "; gates: " + "; ".join(parts)

    def fail(self, version: str, why: str, reason: str, deployment_id: str | None) -> Decision:
        """``version`` failed (rollout or gates): record it and restore the last good one."""
        f = self.status.fields
        f["failed_version"] = version
        f["failed_generation"] = self.gen
        if deployment_id is not None:
            f["failed_deployment"] = deployment_id
        target = _restore_target(self.desired, self.observed, version)
        if not self.spec.rollback.on_failure or target is None:
            cause = (
                "spec.rollback.onFailure is false"
                if not self.spec.rollback.on_failure
                else "there is no earlier good version"
            )
            f["current_version"] = version
            return self.blocked(reason, f"{why}; not rolled back: {cause}")
        message = f"{why}; restored {target}"
        record: list[Action] = []
        if self.observed.service is not None:
            record.append(
                Rollback(
                    service_arn=self.observed.service.arn,
                    failed_version=version,
                    generation=_gen(self.gen),
                    restored_version=target,
                    reason=why,
                )
            )
        decision = self.converge(target, degraded=(reason, message), restoring=True)
        return replace(decision, actions=record + decision.actions)

    def hold(self, version: str, restored: str, on_failure: bool) -> Decision:
        """``version`` failed at this generation: keep the restored one, do not retry."""
        self.status.fields["failed_version"] = version
        self.status.fields["failed_generation"] = self.gen
        previous = self.st.condition(DEGRADED) if self.st else None
        if (
            previous is not None
            and previous.status == "True"
            and previous.reason in ("RolloutFailed", "GateFailed")
        ):
            reason, message = previous.reason, previous.message  # keep saying why
        else:
            reason = "RolloutFailed"
            message = f"{version} failed at generation {_gen(self.gen)}" + (
                f"; restored {restored}" if restored else ""
            )
        if not message.endswith(RETRY_HINT):
            message += RETRY_HINT
        if not on_failure or not restored or restored not in self.observed.pins:
            return self.blocked(reason, message)
        return self.converge(restored, degraded=(reason, message), restoring=True)

    # -- converging --------------------------------------------------------------------
    def _restore_spec(self, version: str) -> tuple[TaskSpec, str | None]:
        """Restore exactly the revision that served ``version`` if it is known."""
        st = self.st
        prefer = []
        if st is not None:
            if st.previous_version == version:
                prefer.append(st.previous_task_definition)
            if st.current_version == version:
                prefer.append(st.task_definition)
        for arn in [a for a in prefer if a] + sorted(self.observed.task_definitions):
            td = self.observed.task_definitions.get(arn)
            if (
                td is not None
                and td.active
                and td.spec is not None
                and td.spec.version == version
                and _pinned_as(td.spec, self.observed.pins.get(version))
            ):
                return td.spec, arn
        obs = self.observed
        return task_spec(
            self.desired.platform, self.dep, obs.manifests[version], obs.pins[version]
        ), None

    def converge(
        self,
        version: str,
        *,
        degraded: tuple[str, str] | None = None,
        restoring: bool = False,
    ) -> Decision:
        obs = self.observed
        platform = self.desired.platform
        svc = obs.service
        manifest = obs.manifests[version]
        pins = obs.pins.get(version)
        if pins is None:
            # A candidate not yet published. What serves it is pinned by the object
            # versions S3 assigns when it is published, so that comes first, alone.
            assert self.spec.model.candidate is not None and not restoring
            publish: list[Action] = [
                PublishCandidate(
                    uri=self.spec.model.candidate, project=self.spec.project, version=version
                )
            ]
            return self._conditions(version, None, publish, degraded)
        p = obs.pointer
        if p is not None and p.version == version and p.pins is not None and p.pins != pins:
            return self.blocked(
                INTEGRITY_FAILED,
                f"the pointer of {self.spec.project}/{self.spec.env} pins version {version} "
                f"as manifest {p.pins.manifest_sha256[:12]}…, but its publication recorded "
                f"{pins.manifest_sha256[:12]}…"
                + ("" if p.pins.manifest_sha256 != pins.manifest_sha256 else " (other objects)")
                + "; nothing is re-pinned: find who wrote the pointer, then promote a version "
                "explicitly ('mlopsctl promote VERSION --env ENV')",
            )
        if restoring:
            spec, arn = self._restore_spec(version)
        else:
            spec = task_spec(platform, self.dep, manifest, pins)
            arn = _find_td(obs, spec, [svc.task_definition if svc else None])
        service = service_spec(platform, self.dep, self.desired.network, obs.project)
        actions: list[Action] = []

        if arn is None:
            actions.append(RegisterTaskDefinition(spec))
        if svc is None:
            if not self.desired.network.subnets:
                return self.blocked(
                    "NetworkNotConfigured",
                    f"cannot create ECS service {service.name}: no subnets configured",
                    RETRY_SECONDS,
                )
            actions.append(
                CreateService(service, spec, deployment_key=self.dep.key, task_definition=arn)
            )
        else:
            rollout = svc.rollout
            retry_failed = (
                arn is not None
                and svc.task_definition == arn
                and rollout is not None
                and rollout.rollout_state == FAILED
                and not restoring
            )
            # The spec's count is applied when it changes (or was never recorded);
            # in between an autoscaler may own the service's desired count.
            applied = svc.tags.get(TAG_REPLICAS)
            scale = (
                applied != str(service.replicas)
                if applied is not None
                else svc.desired_count != service.replicas
            )
            attach = service.load_balanced and (
                not svc.load_balancers
                or (service.rollout.shifts_traffic and svc.alternate_target_group is None)
                # Back to Rolling: the service's target group becomes the one production
                # traffic goes to (after a shift, possibly the green one).
                or (not service.rollout.shifts_traffic and svc.alternate_target_group is not None)
            )
            if (
                arn is None
                or svc.task_definition != arn
                or scale
                or _differs(svc.min_healthy_percent, service.min_healthy_percent)
                or _differs(svc.max_percent, service.max_percent)
                or (
                    svc.deployment_strategy is not None
                    and svc.deployment_strategy != service.rollout
                )
                or svc.circuit_breaker is False
                or retry_failed
                or attach
            ):
                actions.append(
                    UpdateService(
                        service,
                        spec,
                        task_definition=arn,
                        force=retry_failed,
                        scale=scale,
                        attach_load_balancer=attach,
                    )
                )
        uri = platform.version_uri(self.spec.project, version)
        # With a traffic-shifting strategy the pointer follows the traffic: it moves once
        # ECS completed the deployment (all traffic on the new revision, the old one gone);
        # a rollback leaves it on the version that kept serving.
        service_now = obs.service
        shifted = (
            not any(isinstance(a, CreateService | UpdateService) for a in actions)
            and service_now is not None
            and service_now.task_definition == arn
            and service_now.rollout is not None
            and service_now.rollout.rollout_state == COMPLETED
        )
        waits_for_traffic = self.spec.strategy.shifts_traffic and not restoring and not shifted
        # A value written under another owner (a hand-over, or before claims) is
        # rewritten once, so that the pointer names who owns the env.
        if not waits_for_traffic and (
            p is None
            or p.version != version
            or p.pins != pins
            or p.uri != uri
            or p.owner != self.dep.key
        ):
            actions.append(
                MovePointer(
                    project=self.spec.project,
                    env=self.spec.env,
                    version=version,
                    uri=uri,
                    sha256=manifest.model_sha256,
                    manifest_sha256=pins.manifest_sha256,
                    object_versions=pins.objects_json(),
                    owner=self.dep.key,
                    reason=self._pointer_reason(restoring, degraded),
                    action="rollback" if restoring else "promote",
                    # A promotion passed gates() before converging: record what judged it.
                    gates=None if restoring else gate_values(self.effective_gates()),
                    policy_revision=None if restoring else obs.policy_revision,
                    approval=None if restoring else self._approval_of(version),
                )
            )
        moving = None
        if not any(isinstance(a, CreateService | UpdateService) for a in actions):
            moving = self._progress(version, arn, restoring)
            if moving is not None:
                actions.extend(moving.actions)
        else:
            # A new rollout starts: one ECS ended while nobody looked keeps its outcome.
            known = self.st.rollout if self.st is not None else None
            end = self.observed.rollout_end
            if known is not None and known.outcome is None and end and end[0] in ROLLED_BACK:
                self.status.fields["rollout"] = {**known.model_dump(), "outcome": "RolledBack"}
        self._versions(version, arn, restoring)
        return replace(self._conditions(version, arn, actions, degraded, moving), task=spec)

    def _approval_of(self, version: str) -> dict | None:
        """The approval of the rollout that made ``version`` live, for the pointer."""
        known = self.st.rollout if self.st is not None else None
        if known is None or known.canary_version != version or known.approval is None:
            return None
        return known.approval.model_dump(mode="json", by_alias=True)

    def _progress(self, version: str, arn: str | None, restoring: bool) -> Progress | None:
        """A traffic-shifting rollout of ``arn`` in progress: its status and the answer to
        its pause (controller.progressive). Once it is over, the status keeps the last
        rollout with its outcome."""
        obs, f = self.observed, self.status.fields
        svc, shift = obs.service, obs.shift
        known = self.st.rollout if self.st is not None else None
        # A restore is ECS's own rollback (or the controller's, to the revision that kept
        # serving): the status keeps the rollout that failed, with its steps.
        if svc is None or shift is None or svc.task_definition != arn or restoring:
            if known is not None and known.outcome is None and svc is not None:
                rolled = svc.rollout
                live = _version_of(obs, svc.task_definition)
                if live != known.canary_version or (rolled and rolled.rollout_state == FAILED):
                    f["rollout"] = {**known.model_dump(), "outcome": "RolledBack"}
                elif rolled is not None and rolled.rollout_state == COMPLETED:
                    f["rollout"] = {**known.model_dump(), "outcome": "Completed"}
            return None
        stable = next(
            (
                v
                for d in svc.deployments
                if d.task_definition != arn and (v := _version_of(obs, d.task_definition))
            ),
            None,
        )
        r = self.report
        no_gate = None
        if r is not None and r.rollback and r.current is not None:
            no_gate = f"a rollback to {version}, live here before, is neither held nor analysed"
        moving = progress(
            self.spec,
            svc,
            shift,
            known,
            canary_version=version,
            stable_version=stable,
            approval_needed=approval(self.dep, obs.project) is not None,
            no_gate_reason=no_gate,
            approval=obs.approval,
            owner=self.dep.key,
            now=obs.now,
        )
        f["rollout"] = moving.rollout.model_dump()
        return moving

    def _pointer_reason(self, restoring: bool, degraded: tuple[str, str] | None) -> str:
        reason = f"controller: {self.dep.key} generation {_gen(self.gen)}"
        if restoring:
            return reason + (f", rollback: {degraded[1][:300]}" if degraded else "")
        r = self.report
        if r is not None and r.rollback and r.current is not None:
            reason += (
                f", rollback to {r.version} (live at promotion log entry {r.live_at}; "
                "max_regression skipped)"
            )
        if r is not None and r.forced:
            assert r.override is not None
            reason = r.forced_reason(f"{r.override.reason} (override by {r.override.by}); {reason}")
        return reason

    def _versions(self, version: str, arn: str | None, restoring: bool) -> None:
        """current/previous bookkeeping: previous is the last good version before current."""
        f = self.status.fields
        st = self.st
        if st is not None:
            current, current_td, good = st.current_version, st.task_definition, _was_ready(st)
        else:
            current = _live_version(self.observed) or (
                self.observed.pointer.version if self.observed.pointer else None
            )
            current_td = self.observed.service.task_definition if self.observed.service else None
            if _version_of(self.observed, current_td) != current:
                current_td = None
            good = True
        if restoring:
            if current != version:
                f["previous_version"] = None
                f["previous_task_definition"] = None
        elif current and current != version and good:
            f["previous_version"], f["previous_task_definition"] = current, current_td
        f["current_version"] = version
        f["task_definition"] = arn

    def _conditions(
        self,
        version: str,
        arn: str | None,
        actions: list[Action],
        degraded: tuple[str, str] | None,
        moving: Progress | None = None,
    ) -> Decision:
        s = self.status
        if degraded is not None:
            s.set(DEGRADED, True, *degraded)
        else:
            s.set(DEGRADED, False, "AsExpected")
        note = "" if degraded is not None else self.gate_note()
        if moving is not None:
            # Progressing names where the shift is, who gets what, and the pause's verdict.
            message = f"{version}: {moving.message}"
            s.set(PROGRESSING, True, moving.reason, message[:1500])
            s.set(READY, False, moving.reason, message[:1500])
            soon = bool(actions) or moving.soon
            poll = self.desired.polling.after_action if soon else self.desired.polling.rollout
            return Decision(actions, s.build(), poll, degraded=degraded is not None)
        if actions:
            message = f"deploying {version}: " + "; ".join(describe(a) for a in actions) + note
            s.set(PROGRESSING, True, "Updating", message)
            s.set(READY, False, "Updating", message)
            poll = self.desired.polling.after_action
            return Decision(actions, s.build(), poll, degraded=degraded is not None)
        svc = self.observed.service
        assert svc is not None
        rollout = svc.rollout
        if rollout is None:
            waiting = f"{version}: waiting for ECS to start deploying {svc.task_definition}{note}"
            s.set(PROGRESSING, True, "RolloutInProgress", waiting)
            s.set(READY, False, "RolloutInProgress", waiting)
            poll = self.desired.polling.rollout
            return Decision([], s.build(), poll, degraded=degraded is not None)
        tasks = f"{rollout.running}/{rollout.desired} tasks running{note}"
        if rollout.rollout_state == COMPLETED:
            s.set(PROGRESSING, False, "RolloutComplete", f"{version}: {tasks}")
            s.set(READY, True, "RolloutComplete", f"{version} is live: {tasks}")
            return Decision([], s.build(), None, degraded=degraded is not None)
        if rollout.rollout_state == FAILED:
            # Only reached for a failure already handled (held): nothing more to do.
            s.set(PROGRESSING, False, "RolloutFailed", f"{version}: {tasks}")
            s.set(READY, False, "RolloutFailed", f"{version}: {tasks}")
            return Decision([], s.build(), None, degraded=True)
        s.set(PROGRESSING, True, "RolloutInProgress", f"{version}: {tasks}")
        s.set(READY, False, "RolloutInProgress", f"{version}: {tasks}")
        poll = self.desired.polling.rollout
        return Decision([], s.build(), poll, degraded=degraded is not None)


def _differs(observed: object | None, wanted: object) -> bool:
    """Only what ECS reports can be wrong; an unreported setting is left alone."""
    return observed is not None and observed != wanted


# -- simulation -----------------------------------------------------------------------
_SIM_TARGET_GROUP = "arn:aws:elasticloadbalancing:sim:000000000000:targetgroup/sim/0"
_SIM_ALTERNATE = "arn:aws:elasticloadbalancing:sim:000000000000:targetgroup/sim/1"


def _sim_arn(family: str, revision: int) -> str:
    return f"arn:aws:ecs:sim:000000000000:task-definition/{family}:{revision}"


def _resolve(tds: dict[str, TaskDefinitionState], spec: TaskSpec, arn: str | None) -> str:
    if arn is not None:
        return arn
    matches = [td for td in tds.values() if td.active and td.spec == spec]
    assert matches, f"no revision pins {spec}"
    return max(matches, key=lambda td: td.revision).arn


def apply(observed: Observed, actions: list[Action], *, actor: str = "controller") -> Observed:
    """What AWS and the registry look like after ``actions`` succeed (a pure simulator).

    A new ECS deployment starts IN_PROGRESS with no running tasks, as on ECS (and moto).
    """
    tds = dict(observed.task_definitions)
    service = observed.service
    pointer = observed.pointer
    claim = observed.claim
    published = set(observed.published)
    pins = dict(observed.pins)
    ids = iter(range(len(service.deployments) if service else 0, 1 << 30))

    def new_deployment(arn: str, replicas: int) -> DeploymentState:
        return DeploymentState(
            id=f"ecs-svc/sim{next(ids)}-{arn.rsplit(':', 1)[-1]}",
            status="PRIMARY",
            task_definition=arn,
            rollout_state="IN_PROGRESS",
            rollout_reason="",
            desired=replicas,
            running=0,
            failed_tasks=0,
            created_at=observed.now,
        )

    for action in actions:
        match action:
            case ClaimEnv(owner=owner, source=source):
                assert claim is None or claim.owner == owner
                claim = claim or Claim(owner=owner, source=source, created_at=observed.now)
            case AdoptService(owner=owner):
                assert service is not None and claim is not None and claim.owner == owner
                service = replace(service, tags={**service.tags, TAG_DEPLOYMENT: owner})
            case PublishCandidate(version=v):
                published.add(v)
                pins[v] = _sim_pins(observed.manifests[v])
            case RegisterTaskDefinition(task=t):
                revision = 1 + max(
                    (td.revision for td in tds.values() if td.family == t.family), default=0
                )
                arn = _sim_arn(t.family, revision)
                tds[arn] = TaskDefinitionState(arn, t.family, revision, True, t)
            case CreateService(service=s, task=t, deployment_key=key, task_definition=a):
                arn = _resolve(tds, t, a)
                service = ServiceState(
                    name=s.name,
                    arn=f"arn:aws:ecs:sim:000000000000:service/{s.name}",
                    status="ACTIVE",
                    desired_count=s.replicas,
                    task_definition=arn,
                    deployments=(new_deployment(arn, s.replicas),),
                    tags={
                        MANAGED_BY_TAG[0]: MANAGED_BY_TAG[1],
                        TAG_DEPLOYMENT: key,
                        TAG_REPLICAS: str(s.replicas),
                    },
                    min_healthy_percent=s.min_healthy_percent,
                    max_percent=s.max_percent,
                    circuit_breaker=True,
                    load_balancers=(_SIM_TARGET_GROUP,) if s.load_balanced else (),
                    deployment_strategy=s.rollout,
                    alternate_target_group=_SIM_ALTERNATE
                    if s.load_balanced and s.rollout.shifts_traffic
                    else None,
                )
            case UpdateService(
                service=s,
                task=t,
                task_definition=a,
                force=force,
                scale=scale,
                attach_load_balancer=lb,
            ):
                assert service is not None
                arn = _resolve(tds, t, a)
                count = s.replicas if scale else service.desired_count
                deployments = service.deployments
                if arn != service.task_definition or force or lb:
                    deployments = (new_deployment(arn, count),) + tuple(
                        replace(d, status="ACTIVE") for d in deployments
                    )
                else:
                    deployments = tuple(
                        replace(d, desired=count) if d.task_definition == arn else d
                        for d in deployments
                    )
                tags = dict(service.tags)
                if scale:
                    tags[TAG_REPLICAS] = str(s.replicas)
                service = replace(
                    service,
                    desired_count=count,
                    task_definition=arn,
                    deployments=deployments,
                    tags=tags,
                    min_healthy_percent=s.min_healthy_percent,
                    max_percent=s.max_percent,
                    circuit_breaker=True,
                    load_balancers=(_SIM_TARGET_GROUP,) if lb else service.load_balancers,
                    deployment_strategy=s.rollout,
                    alternate_target_group=(
                        _SIM_ALTERNATE
                        if (lb or service.load_balancers) and s.rollout.shifts_traffic
                        else None
                        if lb
                        else service.alternate_target_group
                    ),
                )
            case MovePointer(
                version=v,
                uri=uri,
                sha256=sha,
                reason=reason,
                action=kind,
                gates=gates,
                policy_revision=revision,
            ):
                pointer = ModelPointer(
                    version=v,
                    uri=uri,
                    sha256=sha,
                    promoted_at=observed.now,
                    promoted_by=actor,
                    reason=reason,
                    action=kind,
                    pins=Pins.from_values(action.manifest_sha256, action.object_versions, "sim"),
                    gates=None if gates is None else dict(gates),
                    policy_revision=revision,
                    owner=action.owner,
                )
            case Rollback(failed_version=fv, generation=g, restored_version=rv):
                assert service is not None
                service = replace(
                    service,
                    tags={
                        **service.tags,
                        TAG_FAILED_VERSION: fv,
                        TAG_FAILED_GENERATION: str(g),
                        TAG_RESTORED_VERSION: rv,
                    },
                )
    return replace(
        observed,
        task_definitions=tds,
        service=service,
        pointer=pointer,
        claim=claim,
        published=frozenset(published),
        pins=pins,
    )


def _sim_pins(manifest: Manifest) -> Pins:
    """Pins as a publication of ``manifest`` could record them (S3 picks the ids)."""
    names = [*manifest.files, MANIFEST, SIGNATURE]
    return Pins(
        manifest_sha256=sha256_bytes(manifest.to_json().encode()),
        objects={name: f"sim-{manifest.version}-{name}" for name in names},
    )
