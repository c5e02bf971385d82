"""The controller runtime: one loop, one queue, one reconcile path for every source.

A source (a folder, an S3 prefix, a Kubernetes cluster through kopf's watch) only holds
manifests and their status; everything else happens here, the same way for all three:

    source.scan() --changed keys, and every key at each resync--> WorkQueue
    worker: guard(key) -> source.read(key) -> Document
            deleting  -> Reconciler.retire (the delete policy) -> source.retired(key)
            invalid   -> Degraded status, no AWS call
            valid     -> Reconciler.reconcile_many (batched reads) -> status
            -> write the status if it changed (fenced by the lease) -> announce
            -> requeue as the result says: after N s, with backoff, or not at all

- One worker per key at a time (the queue); several keys per batch (shared AWS reads).
- Every exception is logged with its key and retried with the key's backoff; with
  ``once`` each key has at most ``once_attempts`` attempts, so a pass always ends.
- A key (or, S3 and Kubernetes, the source) that another live controller holds is not a
  failure: a daemon tries again later; a ``once`` pass waits for the holder to let go,
  for at most ``busy_wait`` seconds (the lease's ttl), and then reconciles the key
  itself. A key still held past that is reported as held by that controller
  (:attr:`Outcome.held_by`), not failed.
- A key whose manifest is gone had its delete policy applied from its last status
  record (a folder or S3 manifest leaves nothing else behind).

No reconcile logic lives here: that is :mod:`controller.reconcile`'s.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Protocol

from controller.actions import Action, describe
from controller.api import (
    DeletePolicy,
    ModelDeployment,
    ModelDeploymentStatus,
    degraded_status,
    delete_policy,
    deployment_key,
)
from controller.metrics import ControllerMetrics
from controller.reconcile import BACKOFF, DONE, LeaseLost, ReconcileResult, Requeue
from controller.sources.base import Document, Source, StatusRecord, next_generation
from controller.workqueue import Backoff, WorkQueue, run_workers
from mlops_core.errors import MlopsError
from mlops_core.logs import get_logger

log = get_logger("controller")


class ReconcilerLike(Protocol):
    def reconcile_many(
        self,
        items: list[tuple[ModelDeployment, ModelDeploymentStatus | None]],
        *,
        fence: Callable[[], bool] | None = None,
    ) -> list[ReconcileResult]: ...

    def retire(self, key: str, project: str, env: str, policy: DeletePolicy) -> bool: ...


@dataclass
class Outcome:
    """The last reconcile of one key, for ``--once``'s table and exit code."""

    name: str
    key: str
    generation: int | None
    status: ModelDeploymentStatus | None
    actions: list[str] = field(default_factory=list)
    degraded: bool = False
    error: str | None = None
    #: ``once``: another live controller held the key past the wait (who, until when).
    held_by: str | None = None

    @property
    def failed(self) -> bool:
        return self.degraded or self.error is not None


@dataclass
class _Prepared:
    doc: Document
    deployment: ModelDeployment
    generation: int
    previous: StatusRecord | None


def _with_generation(deployment: ModelDeployment, generation: int) -> ModelDeployment:
    meta = deployment.metadata.model_copy(update={"generation": generation})
    return deployment.model_copy(update={"metadata": meta})


class Controller:
    def __init__(
        self,
        source: Source,
        reconciler: ReconcilerLike,
        *,
        workers: int = 4,
        batch: int = 10,
        resync: float = 60.0,
        poll: float = 1.0,
        lease_retry: float = 2.0,
        once_attempts: int = 4,
        busy_wait: float = 30.0,
        delete_policy: DeletePolicy = "Retain",
        queue: WorkQueue | None = None,
        metrics: ControllerMetrics | None = None,
    ) -> None:
        self.source = source
        self.reconciler = reconciler
        self.workers = max(1, workers)
        self.batch = max(1, batch)
        self.resync = resync
        self.poll = poll
        self.lease_retry = lease_retry
        self.once_attempts = max(1, once_attempts)
        #: How long a ``once`` pass waits for another controller to let go of a key or
        #: of the source (at least this, and at least up to the source lease's expiry).
        self.busy_wait = max(0.0, busy_wait)
        self._busy_since: dict[str, float] = {}
        self.default_policy: DeletePolicy = delete_policy
        self.queue = queue or WorkQueue()
        self.metrics = metrics or ControllerMetrics()
        self.outcomes: dict[str, Outcome] = {}
        #: Running totals: reconciles, actions, status_writes (for logs, tests, benchmarks).
        self.stats: Counter[str] = Counter()
        self._once = False
        self._lock = threading.Lock()
        self.metrics.watch_queue(self.queue)

    # -- one batch of keys -----------------------------------------------------------
    def handle(self, names: Sequence[str]) -> None:
        """Reconcile ``names`` (exclusively ours: the queue hands a key to one worker)."""
        with ExitStack() as held:
            ready: list[_Prepared] = []
            for name in names:
                try:
                    if not held.enter_context(self.source.guard(name)):
                        self._busy(name)
                        continue
                    with self._lock:
                        self._busy_since.pop(name, None)
                    prepared = self._prepare(name)
                except Exception as exc:  # noqa: BLE001 - anything: logged, retried, capped
                    self._failed(name, None, None, exc)
                    continue
                if prepared is not None:
                    ready.append(prepared)
            if ready:
                self._reconcile(ready)

    def _busy(self, name: str) -> None:
        """Another controller holds this key (or the source) right now: try later. With
        ``once``, for up to ``busy_wait`` seconds; then report who holds it (not a failure:
        that controller is converging it)."""
        if not self._once:
            self.queue.add_after(name, self.lease_retry)
            return
        now = time.monotonic()
        with self._lock:
            since = self._busy_since.setdefault(name, now)
        if now - since < self.busy_wait:
            if since == now:
                log.info(
                    "waiting for another controller",
                    key=self._key_of(name),
                    action="wait",
                    holder=self._holder(name),
                    wait=self.busy_wait,
                )
            self.queue.add_after(name, min(self.lease_retry, self.busy_wait - (now - since)))
            return
        holder = self._holder(name)
        key = self._key_of(name)
        log.warning(
            "skipped: held by another controller",
            key=key,
            action="skip",
            holder=holder,
            waited=round(now - since, 1),
        )
        self._record(Outcome(name, key, None, None, held_by=holder))

    def _holder(self, name: str) -> str:
        try:
            holder = self.source.holder(name)
        except Exception as exc:  # noqa: BLE001 - only for a message
            return f"another controller (unknown: {type(exc).__name__})"
        return holder.describe() if holder is not None else "another controller"

    def _key_of(self, name: str) -> str:
        """``namespace/name`` of NAME before it was prepared (for logs and outcomes):
        from its manifest if it can be read, else in the default namespace."""
        if "/" in name:
            return name  # Kubernetes: the queue key is namespace/name already
        try:
            doc = self.source.read(name)
        except Exception:  # noqa: BLE001 - only for a name
            doc = None
        return doc.key if doc is not None else deployment_key(None, name)

    def _prepare(self, name: str) -> _Prepared | None:
        doc = self.source.read(name)
        if doc is None:
            self._removed(name)
            return None
        previous = self.source.read_status(name)
        generation = next_generation(doc.generation, doc.digest, previous)
        if doc.deleting:
            self._retire(doc, previous, generation)
            return None
        if doc.error is not None or doc.deployment is None:
            self._invalid(doc, generation, previous)
            return None
        deployment = _with_generation(doc.deployment, generation)
        return _Prepared(doc, deployment, generation, previous)

    def _policy(self, doc: Document | None, *, warn: bool = False) -> DeletePolicy:
        try:
            return delete_policy(doc.annotations if doc else None, self.default_policy)
        except ValueError as err:
            # A typo must never block a deletion: say so, and apply the default.
            if warn and doc is not None:
                message = f"{err}; applying the default, {self.default_policy}"
                log.warning("invalid delete policy", key=doc.key, error=message)
                self.source.warn(doc.name, "InvalidDeletePolicy", message)
            return self.default_policy

    def _retire(self, doc: Document, previous: StatusRecord | None, generation: int) -> None:
        """The object is being deleted (Kubernetes): apply the delete policy, release it."""
        spec = doc.deployment.spec if doc.deployment is not None else None
        project = spec.project if spec else doc.project or (previous.project if previous else None)
        env = spec.env if spec else doc.env or (previous.env if previous else None)
        policy = self._policy(doc, warn=True)
        self._apply_policy(doc.name, doc.key, project, env, policy, generation)
        self.source.retired(doc.name)

    def _removed(self, name: str) -> None:
        """The manifest is gone (a folder or S3): apply the delete policy it asked for."""
        record = self.source.read_status(name)
        if record is not None:
            policy = record.delete_policy or self.default_policy
            key = record.key or name
            self._apply_policy(name, key, record.project, record.env, policy, record.generation)
            self.source.delete_status(name)
        with self._lock:
            self.outcomes.pop(name, None)
        self.queue.forget(name)

    def _apply_policy(
        self,
        name: str,
        key: str,
        project: str | None,
        env: str | None,
        policy: DeletePolicy,
        generation: int | None,
    ) -> None:
        if not self.source.may_write():
            raise LeaseLost("the lease lapsed before the delete policy could be applied")
        changed = False
        if project and env:  # an object that never had a valid spec never made anything
            changed = self.reconciler.retire(key, project, env, policy)
        log.info(
            "deployment deleted",
            key=key,
            generation=generation,
            action="retire",
            policy=policy,
            aws_changed=changed,
        )
        self.queue.forget(name)

    def _invalid(self, doc: Document, generation: int, previous: StatusRecord | None) -> None:
        err = doc.error
        assert err is not None
        status = degraded_status(
            previous.status if previous else None, generation, err.reason, err.render()
        )
        # Warn once per edit, not on every resync of the same broken file.
        seen = previous is not None and previous.spec_hash == doc.digest
        (log.debug if seen else log.warning)(
            "manifest not usable",
            key=doc.key,
            generation=generation,
            action="none",
            reason=err.reason,
            error=err.render(),
        )
        requeue = BACKOFF if doc.transient else DONE
        self._finish(doc, generation, previous, status, [], True, requeue)

    def _reconcile(self, ready: list[_Prepared]) -> None:
        items = [(p.deployment, p.previous.status if p.previous else None) for p in ready]
        started = time.monotonic()
        try:
            results = self.reconciler.reconcile_many(items, fence=self.source.may_write)
        except Exception as exc:  # noqa: BLE001 - anything else: logged per key, retried
            for p in ready:
                self._failed(p.doc.name, p.doc.key, p.generation, exc)
            return
        elapsed = (time.monotonic() - started) / len(ready)
        for p, result in zip(ready, results, strict=True):
            self.metrics.reconciled(result, elapsed)
            for drift in result.drift:
                self.metrics.drift_reverted(drift.kind)
            try:
                self._finish(
                    p.doc,
                    p.generation,
                    p.previous,
                    result.status,
                    result.actions,
                    result.degraded,
                    result.requeue,
                    deployment=p.deployment,
                )
            except Exception as exc:  # noqa: BLE001 - e.g. the status write failed
                self._failed(p.doc.name, p.doc.key, p.generation, exc)

    def _retry(self, name: str, key: str | None, generation: int | None, why: str) -> None:
        """Schedule ``name`` again with its backoff; with ``once``, give up (and record it)
        after ``once_attempts`` attempts, so that a pass always ends."""
        key = key or self._key_of(name)
        if self._once and self.queue.failures(name) + 1 >= self.once_attempts:
            log.error(
                "giving up",
                key=key,
                generation=generation,
                action="give-up",
                error=why,
                attempts=self.once_attempts,
            )
            self._record(Outcome(name, key, generation, None, error=why))
            return
        delay = self.queue.retry(name)
        log.warning(
            "will retry",
            key=key,
            generation=generation,
            action="retry",
            error=why,
            retry_in=round(delay, 2),
            attempt=self.queue.failures(name),
        )

    def _failed(self, name: str, key: str | None, generation: int | None, exc: Exception) -> None:
        """Something raised (a source that cannot be reached, a bug): log it with the key
        and retry with backoff, leaving the status as it was."""
        why = exc.render() if isinstance(exc, MlopsError) else f"{type(exc).__name__}: {exc}"
        key = key or self._key_of(name)
        if not isinstance(exc, MlopsError):
            log.exception("reconcile raised", key=key, generation=generation)
        self.metrics.failed()
        self._retry(name, key, generation, why)

    def _finish(
        self,
        doc: Document,
        generation: int,
        previous: StatusRecord | None,
        status: ModelDeploymentStatus,
        actions: list[Action],
        degraded: bool,
        requeue: Requeue,
        *,
        deployment: ModelDeployment | None = None,
    ) -> None:
        name, key = doc.name, doc.key
        spec = deployment.spec if deployment is not None else None
        record = StatusRecord(
            name=name,
            key=key,
            generation=generation,
            spec_hash=doc.digest,
            # A spec that no longer parses keeps the target it last deployed.
            project=spec.project if spec else (previous.project if previous else None),
            env=spec.env if spec else (previous.env if previous else None),
            # Said when the spec is new or edited: on a folder or S3 a typo would
            # otherwise surface only when the manifest is removed, as the default.
            delete_policy=self._policy(
                doc, warn=previous is None or previous.spec_hash != doc.digest
            ),
            status=status,
        )
        described = [describe(a) for a in actions]
        for action in described:
            log.info("action", key=key, generation=generation, action=action)
        if not record.same_content(previous):
            if not self.source.may_write():
                raise LeaseLost("the lease lapsed before the status could be written")
            self.source.write_status(name, record)
            self._count("status_writes")
            ready = status.condition("Ready")
            log.info(
                "status written",
                key=key,
                generation=generation,
                action="status",
                ready=ready.status if ready else None,
                reason=ready.reason if ready else None,
                degraded=degraded,
            )
        else:
            log.debug("in sync", key=key, generation=generation, action="none")
        self.source.announce(name, actions, previous.status if previous else None, status)
        self.metrics.conditions(name, status)
        self._count("reconciles")
        self._count("actions", len(actions))
        self._record(Outcome(name, key, generation, status, described, degraded))
        if requeue.backoff:
            self._retry(name, key, generation, _reason(status))
            return
        self.queue.forget(name)
        if requeue.after is not None and not self._once:
            self.queue.add_after(name, requeue.after)

    def _count(self, what: str, n: int = 1) -> None:
        with self._lock:
            self.stats[what] += n

    def _record(self, outcome: Outcome) -> None:
        with self._lock:
            previous = self.outcomes.get(outcome.name)
            if outcome.status is None and previous is not None and previous.status is not None:
                # Giving up after a status was written: keep the status, add the error.
                outcome.status, outcome.generation = previous.status, previous.generation
                outcome.degraded = previous.degraded
            self.outcomes[outcome.name] = outcome

    def _crashed(self, keys: list[str], exc: BaseException) -> None:
        """The safety net of the workers: ``handle`` raised past its own handling."""
        for name in keys:
            log.error("worker failed", key=name, error=f"{type(exc).__name__}: {exc}")
            self._retry(name, None, None, f"{type(exc).__name__}: {exc}")

    # -- modes -----------------------------------------------------------------------
    def _start_workers(self) -> list[threading.Thread]:
        return run_workers(
            self.queue,
            self.handle,
            workers=self.workers,
            batch=self.batch,
            on_error=self._crashed,
        )

    def run_once(self) -> list[Outcome]:
        """One full pass over every manifest; returns each one's outcome, by name. Ends
        whatever happens: each key is tried at most ``once_attempts`` times."""
        self._once = True
        self._busy_since.clear()
        try:
            held_by = self._lead_once()
            names = sorted(set(self.source.scan()) | set(self.source.recorded()))
            if held_by is not None:
                # The same report as a key a peer holds in a folder: held, not failed.
                for name in names:
                    self._record(Outcome(name, self._key_of(name), None, None, held_by=held_by))
                return [self.outcomes[n] for n in names]
            self.queue.add_all(names)
            threads = self._start_workers()
            # Renew the source's lease while the pass runs, as a daemon's loop does: a
            # batch that takes longer than the lease would otherwise lose it and report
            # its own keys as held by another controller (S3: nobody renewed it).
            renewing = threading.Event()
            renewer = threading.Thread(
                target=self._renew_while, args=(renewing,), name="renew", daemon=True
            )
            renewer.start()
            try:
                self.queue.wait_idle()
            finally:
                renewing.set()
                renewer.join()
            self.queue.shutdown()
            for t in threads:
                t.join()
        finally:
            self.source.close()
        with self._lock:
            return [self.outcomes[n] for n in names if n in self.outcomes]

    def _renew_while(self, done: threading.Event) -> None:
        """The heartbeat of a ``once`` pass until ``done``: cheap when nothing is due (a
        lease renews itself only every ttl/3), and it takes a lapsed lease back."""
        while not done.wait(min(self.poll, 0.5)):
            try:
                self.source.heartbeat()
            except Exception as exc:  # noqa: BLE001 - the next write's fence says no
                log.warning(
                    "lease renewal failed",
                    source=self.source.uri,
                    error=f"{type(exc).__name__}: {exc}",
                )

    def _lead_once(self) -> str | None:
        """Take the source's lease for a ``once`` pass. Held by another controller: wait
        for it to expire or be released (a dead holder's, or another pass that ends),
        for up to the lease's expiry and at least ``busy_wait`` seconds. Still held then
        (its holder is alive and renewing): who holds it and until when."""
        deadline: float | None = None
        started = time.monotonic()
        while not self.source.heartbeat():
            holder = self.source.holder(None)
            now = time.monotonic()
            if deadline is None:
                until = holder.until - time.time() if holder and holder.until else 0.0
                deadline = now + max(self.busy_wait, until + self.lease_retry)
                log.info(
                    "waiting for the source's lease",
                    source=self.source.uri,
                    holder=holder.describe() if holder else None,
                    wait=round(deadline - now, 1),
                )
            if now >= deadline:
                who = holder.describe() if holder else "another controller"
                log.warning(
                    "skipped: the source's lease is held by another controller",
                    source=self.source.uri,
                    holder=who,
                    action="skip",
                    waited=round(now - started, 1),
                )
                return who
            time.sleep(max(0.05, min(self.lease_retry, deadline - now)))
        return None

    def run(self, stop: threading.Event, *, ready: threading.Event | None = None) -> None:
        """Watch and reconcile until ``stop`` is set; then finish in-flight reconciles,
        release leases and return."""
        threads = self._start_workers()
        known: dict[str, str] = {}
        next_resync = 0.0
        first = True
        source_backoff = Backoff(base=self.poll, cap=60.0)
        log.info(
            "controller started",
            source=self.source.uri,
            workers=self.workers,
            resync=self.resync,
            poll=self.poll,
        )
        try:
            while not stop.is_set():
                try:
                    leader = self.source.heartbeat()
                    tokens = self.source.scan() if leader else {}
                    source_backoff.reset("source")
                except Exception as exc:  # noqa: BLE001 - the source is unreachable: back off
                    wait = source_backoff.next("source")
                    log.warning(
                        "source unreachable",
                        source=self.source.uri,
                        error=f"{type(exc).__name__}: {exc}",
                        retry_in=round(wait, 2),
                    )
                    stop.wait(wait)
                    continue
                self.metrics.leading(leader)
                now = time.monotonic()
                if leader and now >= next_resync:
                    # The first pass also visits records without a manifest (removed
                    # while no controller ran): their delete policy is still due.
                    orphans = set(self.source.recorded()) if first else set()
                    first = False
                    self.queue.add_all(sorted(set(tokens) | set(known) | orphans))
                    next_resync = now + self.resync
                    log.debug("resync", source=self.source.uri, keys=len(tokens))
                elif leader:
                    changed = [n for n, t in tokens.items() if known.get(n) != t]
                    gone = [n for n in known if n not in tokens]
                    self.queue.add_all(changed + gone)
                # A standby forgets what it saw, so that on taking over it does a full pass.
                if not leader and known:
                    next_resync = 0.0
                known = tokens if leader else {}
                if ready is not None:
                    ready.set()
                stop.wait(self.poll)
        finally:
            log.info(
                "controller stopping; finishing in-flight reconciles",
                in_flight=len(self.queue.processing()),
            )
            self.queue.shutdown()
            for t in threads:
                t.join()
            self.source.close()
            log.info("controller stopped", source=self.source.uri)


def _reason(status: ModelDeploymentStatus) -> str:
    degraded = status.condition("Degraded")
    return f"{degraded.reason}: {degraded.message}" if degraded is not None else "retry"
