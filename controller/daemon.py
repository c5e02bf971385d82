"""The controller daemon for manifest sources (a folder, an S3 prefix).

One loop watches the source (one cheap listing per poll) and feeds changed keys to a
:class:`~controller.workqueue.WorkQueue`; every ``resync`` seconds it feeds every key,
which is what puts back hand-made drift (level-triggered: whatever woke a key, the
reconciler compares the whole desired state with the whole observed state). A small pool
of workers takes keys in batches (one worker per key at a time) and, for each:

1. takes the key's lease (``source.guard``), else tries again later;
2. reads the manifest and its status record; computes the generation (spec hash);
3. an invalid manifest gets a Degraded/InvalidSpec status and no AWS call at all;
   valid ones go to ``Reconciler.reconcile_many`` together (batched AWS reads);
4. writes the status record back, only if it changed (the steady state writes nothing);
5. requeues after ``requeue_after``, or with per-key exponential backoff and jitter if the
   reconcile raised (AWS unreachable, throttled beyond the client's own retries).

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

from controller.actions import describe
from controller.api import ModelDeployment, ModelDeploymentStatus
from controller.manifests import key_of, parse_manifest, spec_hash, text_hash
from controller.sources.base import Source, StatusRecord, next_generation
from controller.workqueue import WorkQueue, run_workers
from mlops_core.errors import Conflict, MlopsError
from mlops_core.logs import get_logger

log = get_logger("controller")

#: Condition reason the reconciler gives a transient AWS failure (retried with backoff).
AWS_ERROR = "AWSError"


class ReconcilerLike(Protocol):
    def reconcile_many(self, items: list[tuple[ModelDeployment, ModelDeploymentStatus | None]]): ...


InvalidStatusFn = Callable[
    [MlopsError, int | None, ModelDeploymentStatus | None], ModelDeploymentStatus
]


@dataclass
class Outcome:
    """The last reconcile of one manifest, for ``--once``'s table and exit code."""

    name: str
    key: str
    generation: int | None
    status: ModelDeploymentStatus | None
    actions: list[str] = field(default_factory=list)
    degraded: bool = False
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.degraded or self.error is not None


@dataclass
class _Prepared:
    name: str
    deployment: ModelDeployment
    generation: int
    spec_hash: str
    previous: StatusRecord | None


def _with_generation(deployment: ModelDeployment, generation: int) -> ModelDeployment:
    meta = deployment.metadata.model_copy(update={"generation": generation})
    return deployment.model_copy(update={"metadata": meta})


class Controller:
    def __init__(
        self,
        source: Source,
        reconciler: ReconcilerLike | None = None,
        *,
        invalid_status: InvalidStatusFn | None = None,
        workers: int = 4,
        batch: int = 10,
        resync: float = 60.0,
        poll: float = 1.0,
        lease_retry: float = 2.0,
        once_attempts: int = 4,
        queue: WorkQueue | None = None,
    ) -> None:
        if reconciler is None or invalid_status is None:
            # Imported here so that sources and the queue load without the AWS planner.
            from controller import reconcile

            reconciler = reconciler or reconcile.Reconciler()
            invalid_status = invalid_status or reconcile.invalid_status
        self.source = source
        self.reconciler = reconciler
        self.invalid_status = invalid_status
        self.workers = max(1, workers)
        self.batch = max(1, batch)
        self.resync = resync
        self.poll = poll
        self.lease_retry = lease_retry
        self.once_attempts = once_attempts
        self.queue = queue or WorkQueue()
        self.outcomes: dict[str, Outcome] = {}
        #: Running totals: reconciles, actions, status_writes (for logs, tests, benchmarks).
        self.stats: Counter[str] = Counter()
        self._once = False
        self._lock = threading.Lock()

    # -- one batch of keys -----------------------------------------------------------
    def handle(self, names: Sequence[str]) -> None:
        """Reconcile ``names`` (exclusively ours: the queue hands a key to one worker)."""
        with ExitStack() as held:
            ready: list[_Prepared] = []
            for name in names:
                if not held.enter_context(self.source.guard(name)):
                    self._busy(name)
                    continue
                prepared = self._prepare(name)
                if prepared is not None:
                    ready.append(prepared)
            if ready:
                self._reconcile(ready)

    def _busy(self, name: str) -> None:
        """Another controller holds this key (or the source) right now: try later."""
        if self._once:
            if self._backoff(name) is None:
                self._record(
                    Outcome(name, name, None, None, error="another controller holds its lease")
                )
        else:
            self.queue.add_after(name, self.lease_retry)

    def _prepare(self, name: str) -> _Prepared | None:
        where = self.source.where(name)
        text = self.source.read(name)
        if text is None:
            self._removed(name)
            return None
        previous = self.source.read_status(name)
        try:
            deployment = parse_manifest(text, where, expected_name=name)
        except MlopsError as err:
            self._invalid(name, text, err, previous)
            return None
        digest = spec_hash(deployment)
        generation = next_generation(deployment.metadata.generation, digest, previous)
        return _Prepared(
            name, _with_generation(deployment, generation), generation, digest, previous
        )

    def _removed(self, name: str) -> None:
        # Deleting a manifest stops management; it never tears down a live endpoint.
        record = self.source.read_status(name)
        if record is not None:
            log.info(
                "manifest removed; deployment no longer managed, AWS resources left as they are",
                key=record.key or f"default/{name}",
                generation=record.generation,
                action="unmanage",
            )
            self.source.delete_status(name)
        with self._lock:
            self.outcomes.pop(name, None)
        self.queue.forget(name)

    def _invalid(
        self, name: str, text: str, err: MlopsError, previous: StatusRecord | None
    ) -> None:
        digest = text_hash(text)
        generation = next_generation(None, digest, previous)
        status = self.invalid_status(err, generation, previous.status if previous else None)
        key = key_of(text, name)
        # Warn once per edit, not on every resync of the same broken file.
        seen = previous is not None and previous.spec_hash == digest
        (log.debug if seen else log.warning)(
            "invalid manifest",
            key=key,
            generation=generation,
            action="none",
            reason=err.reason,
            error=err.render(),
        )
        self._finish(name, key, generation, digest, previous, status, [], True, None)

    def _reconcile(self, ready: list[_Prepared]) -> None:
        items = [(p.deployment, p.previous.status if p.previous else None) for p in ready]
        try:
            results = self.reconciler.reconcile_many(items)
        except Exception as exc:  # noqa: BLE001 - AWS down or throttled: back off, per key
            for p in ready:
                self._failed(p, exc)
            return
        for p, result in zip(ready, results, strict=True):
            requeue_after = result.requeue_after
            degraded = result.status.condition("Degraded")
            if degraded is not None and degraded.status == "True" and degraded.reason == AWS_ERROR:
                self._backoff(p.name)  # transient: backoff rather than a fixed interval
                requeue_after = None
            else:
                self.queue.forget(p.name)
            actions = [describe(a) for a in result.actions]
            self._finish(
                p.name,
                result.key,
                p.generation,
                p.spec_hash,
                p.previous,
                result.status,
                actions,
                result.degraded,
                requeue_after,
            )

    def _backoff(self, name: str) -> float | None:
        """Schedule a retry of ``name`` with per-key exponential backoff and jitter, so
        that many keys failing together do not retry in lockstep. Returns the delay, or
        None when ``--once`` has tried enough."""
        if self._once and self.queue.failures(name) + 1 >= self.once_attempts:
            return None
        delay = self.queue.backoff(name)
        self.queue.add_after(name, delay)
        return delay

    def _failed(self, p: _Prepared, exc: Exception) -> None:
        """reconcile_many raised (it reports AWS errors in the status; this is anything
        else): leave the status alone and retry with backoff."""
        key = p.deployment.key
        delay = self._backoff(p.name)
        if delay is None:
            log.error(
                "reconcile failed; giving up",
                key=key,
                generation=p.generation,
                action="give-up",
                error=str(exc),
            )
            self._record(Outcome(p.name, key, p.generation, None, error=str(exc)))
            return
        log.warning(
            "reconcile failed; will retry",
            key=key,
            generation=p.generation,
            action="retry",
            error=str(exc),
            retry_in=round(delay, 2),
            attempt=self.queue.failures(p.name),
        )

    def _finish(
        self,
        name: str,
        key: str,
        generation: int,
        digest: str,
        previous: StatusRecord | None,
        status: ModelDeploymentStatus,
        actions: list[str],
        degraded: bool,
        requeue_after: float | None,
    ) -> None:
        for action in actions:
            log.info("action", key=key, generation=generation, action=action)
        record = StatusRecord(
            name=name, key=key, generation=generation, spec_hash=digest, status=status
        )
        if not record.same_content(previous):
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
        self._count("reconciles")
        self._count("actions", len(actions))
        self._record(Outcome(name, key, generation, status, actions, degraded))
        if requeue_after is not None and not self._once:
            self.queue.add_after(name, requeue_after)

    def _count(self, what: str, n: int = 1) -> None:
        with self._lock:
            self.stats[what] += n

    def _record(self, outcome: Outcome) -> None:
        with self._lock:
            self.outcomes[outcome.name] = outcome

    # -- modes -----------------------------------------------------------------------
    def run_once(self) -> list[Outcome]:
        """One full pass over every manifest; returns each one's outcome, by name."""
        self._once = True
        try:
            if not self.source.heartbeat():
                raise Conflict(
                    f"another controller holds the lease on {self.source.uri}",
                    hint="that controller converges this source already; or stop it first",
                )
            names = sorted(self.source.scan())
            self.queue.add_all(names)
            threads = run_workers(self.queue, self.handle, workers=self.workers, batch=self.batch)
            self.queue.wait_idle()
            self.queue.shutdown()
            for t in threads:
                t.join()
        finally:
            self.source.close()
        with self._lock:
            return [self.outcomes[n] for n in names if n in self.outcomes]

    def run(self, stop: threading.Event, *, ready: threading.Event | None = None) -> None:
        """Watch and reconcile until ``stop`` is set; then finish in-flight reconciles,
        release leases and return."""
        threads = run_workers(self.queue, self.handle, workers=self.workers, batch=self.batch)
        known: dict[str, str] = {}
        next_resync = 0.0
        scan_failures = 0
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
                    scan_failures = 0
                except Exception as exc:  # noqa: BLE001 - the source is unreachable: back off
                    scan_failures += 1
                    wait = min(60.0, self.poll * 2**scan_failures)
                    log.warning(
                        "source unreachable", source=self.source.uri, error=str(exc), retry_in=wait
                    )
                    stop.wait(wait)
                    continue
                now = time.monotonic()
                if leader and now >= next_resync:
                    self.queue.add_all(sorted(set(tokens) | set(known)))
                    next_resync = now + self.resync
                    log.debug("resync", source=self.source.uri, keys=len(tokens))
                elif leader:
                    changed = [n for n, t in tokens.items() if known.get(n) != t]
                    gone = [n for n in known if n not in tokens]
                    self.queue.add_all(changed + gone)
                # A standby forgets what it saw, so that on taking over it does a full pass.
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
