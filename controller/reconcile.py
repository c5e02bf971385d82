"""Reconcile: observe -> plan -> execute -> status, for one or many ModelDeployments.

This is the one entry point every source calls (the kopf adapter, the S3 and folder
sources, the daemon, the CLI). It never writes the status anywhere: it returns it, and
the caller persists it and passes it back on the next call. The status carries what the
controller must remember between passes (the last good version, a failed version not to
retry), so a caller that loses it only costs a re-derivation from AWS.

    reconciler = Reconciler(platform, network=..., polling=...)  # from the settings
    result = reconciler.reconcile(deployment, previous_status)
    save(result.status)
    match result.requeue:   # how to retry, controller-runtime style
        case Requeue(after=seconds) if seconds is not None: schedule(key, after=seconds)
        case Requeue(backoff=True): schedule(key, after=backoff(key))
        case _: pass        # done until the spec or AWS changes (the resync still looks)

Expected failures never raise: bad input, gates, failed rollouts and AWS errors all come
back as a Degraded condition on that deployment's status, with the requeue that fits;
other deployments of the same ``reconcile_many`` call are unaffected.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog
from botocore.exceptions import BotoCoreError, ClientError

from controller.actions import Action, MovePointer, UpdateService, describe
from controller.api import DeletePolicy, ModelDeployment, ModelDeploymentStatus, degraded_status
from controller.costing import live_workload, with_live_cost
from controller.drifted import with_drifted
from controller.execute import ExecutionReport, Executor
from controller.observe import Observed, Observer
from controller.plan import Decision, Desired, NetworkConfig, Polling, decide
from mlops_core import aws
from mlops_core.cost.estimate import Estimate, estimate
from mlops_core.cost.prices import PriceBook, PriceResolver, PricesUnavailable
from mlops_core.errors import IntegrityError, MlopsError
from mlops_core.naming import Platform
from mlops_core.registry import Registry

Items = list[tuple[ModelDeployment, ModelDeploymentStatus | None]]


@dataclass(frozen=True)
class Requeue:
    """How a key is retried after a reconcile, as controller-runtime's ``Result`` says it:
    ``after`` seconds (a rollout in progress, actions just taken), with the key's
    exponential ``backoff`` (a transient failure: AWS unreachable or throttled, a source
    that could not be read), or neither: done until the next change or resync (converged,
    or blocked on something only a person can fix, such as a bad spec or a conflict)."""

    after: float | None = None
    backoff: bool = False

    @classmethod
    def in_(cls, seconds: float | None) -> Requeue:
        return cls(after=seconds) if seconds is not None else DONE


DONE = Requeue()
BACKOFF = Requeue(backoff=True)


class LeaseLost(MlopsError):
    """The lease lapsed before a write: the write was not made (another controller may
    hold the source now). Retried with backoff once the lease is held again."""

    reason = "LeaseLost"
    exit_code = 4


@dataclass(frozen=True)
class Drift:
    """A change made outside the controller, found on a deployment it had converged."""

    kind: str  # pointer | service
    found: str  # what was there (the hand-set value)
    restored: str  # what the controller puts back


def find_drift(
    generation: int | None,
    status: ModelDeploymentStatus | None,
    observed: Observed,
    actions: list[Action],
) -> list[Drift]:
    """The planned actions that revert hand-made changes rather than deploy a spec: the
    spec is the one already converged (same generation, same version), yet the pointer or
    the service's revision differs from what the controller last set."""
    if status is None or status.observed_generation != generation or not status.current_version:
        return []
    out = []
    for action in actions:
        match action:
            case MovePointer(version=v) if observed.pointer is not None:
                p = observed.pointer
                # A traffic-shifting rollout moves the pointer only once it completes:
                # until then the pointer names the stable version, by design.
                r = status.rollout
                followed = r is not None and r.canary_version == v and p.version == r.stable_version
                if v == status.current_version and p.version != v and not followed:
                    when = f"{p.promoted_at:%Y-%m-%dT%H:%M:%SZ}"
                    found = f"{p.version} (by {p.promoted_by} at {when})"
                    out.append(Drift("pointer", found, v))
            case UpdateService(task_definition=arn, task=task) if observed.service is not None:
                # Only a revert to the version already converged is drift: an update to
                # another one deploys the spec (after ECS rolled a superseded rollout
                # back, the service runs an older revision than the status names).
                live = observed.service.task_definition
                wanted = arn or status.task_definition
                same = task.version == status.current_version
                if status.task_definition and live != status.task_definition and wanted and same:
                    out.append(Drift("service", live.rpartition("/")[2], wanted.rpartition("/")[2]))
    return out


@dataclass
class ReconcileResult:
    key: str
    status: ModelDeploymentStatus
    #: The actions carried out in this pass (all of them unless an error stopped it).
    actions: list[Action] = field(default_factory=list)
    requeue: Requeue = DONE
    degraded: bool = False
    #: Hand-made changes this pass put back.
    drift: list[Drift] = field(default_factory=list)

    @property
    def requeue_after(self) -> float | None:
        return self.requeue.after


@dataclass
class DryRun:
    """What a reconcile would do, without doing it (``Reconciler.dry_run``)."""

    key: str
    actions: list[Action]
    status: ModelDeploymentStatus  # as it would read once the actions succeeded
    degraded: bool
    #: What the live service costs now per month (None: no live service, nothing billed).
    current: Estimate | None
    #: What the spec would cost (None: it cannot be priced, or it was refused earlier).
    desired: Estimate | None
    prices_error: str = ""

    @property
    def monthly_delta(self) -> float | None:
        if self.desired is None:
            return None
        return self.desired.total - (self.current.total if self.current is not None else 0.0)


def invalid_status(
    error: MlopsError,
    generation: int | None,
    previous: ModelDeploymentStatus | None,
    *,
    now: datetime | None = None,
) -> ModelDeploymentStatus:
    """The status of a manifest that failed to parse or validate: Degraded=True with the
    error's reason (e.g. InvalidSpec) and message, Ready=False. Makes no AWS call."""
    return degraded_status(previous, generation, error.reason, error.render(), now)


def _with_rollout(
    blocked: ModelDeploymentStatus, planned: ModelDeploymentStatus
) -> ModelDeploymentStatus:
    """A pass whose actions failed keeps what it observed of the rollout in progress
    (its shares, analysis steps, the approval decision): the call that failed may have
    gone through (a lost answer), and the next pass explains ECS's outcome from it."""
    if planned.rollout is None:
        return blocked
    return blocked.model_copy(update={"rollout": planned.rollout})


class Reconciler:
    """Converges AWS onto ModelDeployments. Thread-safe; keep one per process, since its
    observer's caches (task definitions, manifests) are what make steady passes cheap.
    Callers must not reconcile the same key concurrently (one worker per key)."""

    def __init__(
        self,
        platform: Platform,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        log=None,
        registry: Registry | None = None,
        network: NetworkConfig | None = None,
        polling: Polling | None = None,
        observer: Observer | None = None,
        executor: Executor | None = None,
        prices: PriceResolver | None = None,
        source: str = "",
    ):
        self.platform = platform
        #: Where the manifests come from (a source URI), recorded in the claims made.
        self.source = source
        self.clock = clock
        self.log = log or structlog.get_logger("controller.reconcile")
        self.registry = registry or Registry(self.platform)
        self.network = network or NetworkConfig()
        self.polling = polling or Polling()
        self.observer = observer or Observer(self.platform, self.registry, clock=clock)
        self.executor = executor or Executor(self.platform, self.registry, self.network)
        # The edge passes the resolver its settings ask for (MLOPS_PRICES).
        self.prices = prices or PriceResolver("auto")

    def reconcile(
        self, deployment: ModelDeployment, status: ModelDeploymentStatus | None
    ) -> ReconcileResult:
        return self.reconcile_many([(deployment, status)])[0]

    def dry_run(self, deployment: ModelDeployment, status: ModelDeploymentStatus | None) -> DryRun:
        """Observe and plan ``deployment`` as a reconcile would, and price it before and
        after, without executing anything: only AWS reads. AWS errors raise."""
        observed = self.observer.observe(deployment, status)
        desired = self._desired(deployment, status)
        decision = decide(desired, observed)
        current = None
        live = live_workload(observed, deployment.spec)
        if live is not None and desired.prices is not None:
            current = estimate(live, desired.prices)
        gen = deployment.metadata.generation
        return DryRun(
            key=deployment.key,
            actions=decision.actions,
            status=with_drifted(decision.status, deployment.spec, observed.drift, gen),
            degraded=decision.degraded,
            current=current,
            desired=decision.cost,
            prices_error=desired.prices_error,
        )

    def _desired(
        self, deployment: ModelDeployment, status: ModelDeploymentStatus | None
    ) -> Desired:
        book: PriceBook | None = None
        error = ""
        try:
            book = self.prices.get(self.platform.region)
        except PricesUnavailable as exc:
            error = exc.render()
        return Desired(
            deployment,
            status,
            self.platform,
            self.network,
            polling=self.polling,
            prices=book,
            prices_error=error,
            source=self.source,
        )

    def retire(self, key: str, project: str, env: str, policy: DeletePolicy) -> bool:
        """Deployment ``key`` of ``project``/``env`` was deleted (from any source): apply
        its delete policy. ``Retain`` leaves the service and the pointer as they are;
        ``ScaleToZero`` scales the service to zero tasks (the pointer stays, so
        re-creating the deployment resumes where it was). Both release the env's claim
        if ``key`` holds it, so that another deployment can adopt the env; an env another
        deployment owns is not touched. Returns whether AWS changed."""
        return self.executor.retire(key, project, env, scale_to_zero=policy == "ScaleToZero")

    def reconcile_many(
        self, items: Items, *, fence: Callable[[], bool] | None = None
    ) -> list[ReconcileResult]:
        """Reconcile several deployments, batching their observe reads. ``fence()`` is
        asked before every write; False stops the pass there (the lease was lost)."""
        if not items:
            return []
        try:
            observed = self.observer.observe_many(items)
        except (ClientError, BotoCoreError) as exc:
            return [self._aws_error(d, st, exc, []) for d, st in items]
        return [self._one(d, st, obs, fence) for (d, st), obs in zip(items, observed, strict=True)]

    # -- one deployment ----------------------------------------------------------------
    def _one(
        self,
        deployment: ModelDeployment,
        status: ModelDeploymentStatus | None,
        observed: Observed,
        fence: Callable[[], bool] | None = None,
    ) -> ReconcileResult:
        gen = deployment.metadata.generation
        log = self.log.bind(key=deployment.key, generation=gen)
        desired = self._desired(deployment, status)
        decision: Decision = decide(desired, observed)
        plog = log.bind(action="plan")
        if decision.actions:
            plog.info("planned", actions=[describe(a) for a in decision.actions])
        degraded = decision.status.condition("Degraded")
        if degraded is not None and degraded.reason == IntegrityError.reason:
            # Someone wrote to a published version or to a pin: a security event, not
            # drift. Nothing is done about it but saying so, loudly.
            plog.error("integrity check failed", message=degraded.message)
        drift = find_drift(gen, status, observed, decision.actions)
        for d in drift:
            log.bind(action="drift").warning(
                "reverting a change made outside the controller",
                kind=d.kind,
                found=d.found,
                restored=d.restored,
            )
        report = ExecutionReport()
        try:
            self.executor.execute(decision.actions, log, report, fence=fence)
        except MlopsError as exc:
            log.bind(action="execute").warning("action refused", error=exc.render())
            blocked = degraded_status(status, gen, exc.reason, exc.render(), self.clock())
            return ReconcileResult(
                key=deployment.key,
                status=_with_rollout(blocked, decision.status),
                actions=report.done,
                requeue=BACKOFF,
                degraded=True,
            )
        except (ClientError, BotoCoreError) as exc:
            failed = self._aws_error(deployment, status, exc, report.done)
            failed.status = _with_rollout(failed.status, decision.status)
            return failed
        finally:
            for spec, arn in report.task_definitions.items():
                self.observer.remember_task_definition(arn, spec)
        # Drifted is reported, never acted on: it plays no part in the plan above.
        new_status = with_drifted(
            decision.status, deployment.spec, observed.drift, gen, self.clock()
        )
        new_status = with_live_cost(
            new_status, deployment.spec, observed, desired.prices, gen, self.clock()
        )
        if new_status.task_definition is None and decision.task in report.task_definitions:
            # The plan could not know the ARN of a revision it asked to register.
            new_status = new_status.model_copy(
                update={"task_definition": report.task_definitions[decision.task]}
            )
        self._log_outcome(plog, status, new_status)
        return ReconcileResult(
            key=deployment.key,
            status=new_status,
            actions=report.done,
            requeue=Requeue.in_(decision.requeue_after),
            degraded=decision.degraded,
            drift=drift,
        )

    def _aws_error(
        self,
        deployment: ModelDeployment,
        status: ModelDeploymentStatus | None,
        exc: Exception,
        done: list[Action],
    ) -> ReconcileResult:
        gen = deployment.metadata.generation
        code = aws.error_code(exc) or type(exc).__name__
        self.log.bind(key=deployment.key, generation=gen, action="aws").warning(
            "AWS call failed; will retry", error=str(exc), code=code
        )
        message = f"an AWS call failed ({code}): {exc}; retrying with backoff"
        return ReconcileResult(
            key=deployment.key,
            status=degraded_status(status, gen, "AWSError", message, self.clock()),
            actions=done,
            requeue=BACKOFF,
            degraded=True,
        )

    @staticmethod
    def _log_outcome(log, before: ModelDeploymentStatus | None, after: ModelDeploymentStatus):
        old = {c.type: (c.status, c.reason) for c in (before.conditions if before else [])}
        for c in after.conditions:
            if old.get(c.type) != (c.status, c.reason):
                log.info(
                    "condition", type=c.type, status=c.status, reason=c.reason, message=c.message
                )
