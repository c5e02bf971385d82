"""A work queue of deployment keys, in the manner of client-go's workqueue.

- A key is queued at most once however often it is added (events coalesce).
- A key is handed to one worker at a time: added again while a worker has it, it is
  marked dirty and queued once that worker calls :meth:`WorkQueue.done`.
- :meth:`add_after` schedules a key later (requeue after a rollout check interval);
  :meth:`retry` does the same with per-key exponential backoff, capped, with jitter, and
  :meth:`forget` resets a key's backoff after a success.
- Workers take keys in batches (:meth:`get_batch`) so that a pass over many deployments
  can share AWS reads; each key in a batch is still exclusively that worker's.
"""

from __future__ import annotations

import contextvars
import heapq
import itertools
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable


class Backoff:
    """Per-key exponential backoff: ``base * 2^failures``, capped, with jitter (so that
    many keys failing together do not retry in lockstep). The controller's one formula:
    the queue's retries and the source poll loop both use it."""

    def __init__(
        self,
        *,
        base: float = 0.5,
        cap: float = 60.0,
        jitter: float = 0.5,
        rng: random.Random | None = None,
    ) -> None:
        self.base = base
        self.cap = cap
        self.jitter = jitter
        self._rng = rng or random.Random()
        self._failures: dict[str, int] = {}
        self._lock = threading.Lock()

    def next(self, key: str) -> float:
        """Count a failure of ``key``; the delay before its next attempt."""
        with self._lock:
            n = self._failures.get(key, 0)
            self._failures[key] = n + 1
            jitter = self._rng.random()
        delay = min(self.cap, self.base * (2**n))
        return delay * (1 - self.jitter * jitter)

    def reset(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)

    def failures(self, key: str) -> int:
        with self._lock:
            return self._failures.get(key, 0)


class WorkQueue:
    def __init__(
        self,
        *,
        base_delay: float = 0.5,
        max_delay: float = 60.0,
        jitter: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self._clock = clock
        self._backoff = Backoff(base=base_delay, cap=max_delay, jitter=jitter, rng=rng)
        self._cond = threading.Condition()
        self._queue: deque[str] = deque()
        self._dirty: set[str] = set()  # queued, or to be queued when its worker is done
        self._processing: set[str] = set()
        self._since: dict[str, float] = {}  # key -> when it was queued (for queue age)
        self._delayed: list[tuple[float, int, str]] = []  # heap of (when, seq, key)
        self._due: dict[str, float] = {}  # key -> earliest scheduled time (heap is lazy)
        self._seq = itertools.count()
        self._shutdown = False

    # -- producers -------------------------------------------------------------------
    def add(self, key: str) -> None:
        with self._cond:
            self._add_locked(key)

    def add_all(self, keys: Iterable[str]) -> None:
        with self._cond:
            for key in keys:
                self._add_locked(key)

    def _add_locked(self, key: str) -> None:
        if self._shutdown or key in self._dirty:
            return
        self._dirty.add(key)
        self._due.pop(key, None)  # an immediate add supersedes a scheduled one
        if key not in self._processing:
            self._queue.append(key)
            self._since.setdefault(key, self._clock())
            self._cond.notify()

    def add_after(self, key: str, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        with self._cond:
            if self._shutdown:
                return
            when = self._clock() + delay
            if key in self._due and self._due[key] <= when:
                return  # already scheduled sooner
            self._due[key] = when
            heapq.heappush(self._delayed, (when, next(self._seq), key))
            self._cond.notify()

    def backoff(self, key: str) -> float:
        """The next retry delay of ``key`` (see :class:`Backoff`), counting a failure."""
        return self._backoff.next(key)

    def retry(self, key: str) -> float:
        delay = self.backoff(key)
        self.add_after(key, delay)
        return delay

    def forget(self, key: str) -> None:
        self._backoff.reset(key)

    def failures(self, key: str) -> int:
        return self._backoff.failures(key)

    def oldest_wait(self) -> float:
        """Seconds the longest-waiting queued key has waited (0 when none waits)."""
        with self._cond:
            if not self._queue:
                return 0.0
            return max(0.0, self._clock() - self._since.get(self._queue[0], self._clock()))

    # -- consumers -------------------------------------------------------------------
    def _promote_due_locked(self) -> float | None:
        """Move due keys from the delayed heap to the queue; seconds to the next one."""
        now = self._clock()
        while self._delayed:
            when, _, key = self._delayed[0]
            if self._due.get(key) != when:
                heapq.heappop(self._delayed)  # superseded entry
                continue
            if when > now:
                return when - now
            heapq.heappop(self._delayed)
            del self._due[key]
            self._add_locked(key)
        return None

    def get_batch(self, max_items: int = 1, timeout: float | None = None) -> list[str]:
        """Block until at least one key is ready; take up to ``max_items``.

        Returns [] on shutdown or when ``timeout`` passes with nothing ready.
        """
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            while True:
                wait = self._promote_due_locked()
                if self._queue:
                    batch: list[str] = []
                    while self._queue and len(batch) < max_items:
                        key = self._queue.popleft()
                        self._since.pop(key, None)
                        self._dirty.discard(key)
                        self._processing.add(key)
                        batch.append(key)
                    return batch
                if self._shutdown:
                    return []
                if deadline is not None:
                    left = deadline - self._clock()
                    if left <= 0:
                        return []
                    wait = left if wait is None else min(wait, left)
                self._cond.wait(wait)

    def done(self, key: str) -> None:
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty and not self._shutdown:
                self._queue.append(key)
                self._since.setdefault(key, self._clock())
                self._cond.notify()
            self._cond.notify_all()  # wake wait_idle

    # -- lifecycle -------------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop handing out keys; workers finish what they hold and get []."""
        with self._cond:
            self._shutdown = True
            self._cond.notify_all()

    @property
    def is_shutdown(self) -> bool:
        return self._shutdown

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until nothing is queued, in progress or scheduled; False on timeout."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            while True:
                wait = self._promote_due_locked()
                if not self._queue and not self._processing and not self._due:
                    return True
                if self._shutdown and not self._processing:
                    return not self._queue and not self._due
                if deadline is not None:
                    left = deadline - self._clock()
                    if left <= 0:
                        return False
                    wait = left if wait is None else min(wait, left)
                self._cond.wait(wait)

    def __len__(self) -> int:
        with self._cond:
            return len(self._queue)

    def processing(self) -> set[str]:
        with self._cond:
            return set(self._processing)


def _retry_all(queue: WorkQueue) -> Callable[[list[str], BaseException], None]:
    def on_error(keys: list[str], exc: BaseException) -> None:
        for key in keys:
            queue.retry(key)

    return on_error


def run_workers(
    queue: WorkQueue,
    handle: Callable[[list[str]], None],
    *,
    workers: int,
    batch: int = 1,
    name: str = "reconcile-worker",
    on_error: Callable[[list[str], BaseException], None] | None = None,
) -> list[threading.Thread]:
    """Start ``workers`` threads that feed batches to ``handle`` until shutdown.

    ``handle`` must not raise for an expected failure (it requeues instead); if it does,
    ``on_error(keys, exc)`` decides (by default: retry the keys with backoff), so that one
    bad key cannot kill a worker. Each thread runs in a copy of the caller's context
    variables, as an asyncio task would.
    """
    on_error = on_error or _retry_all(queue)

    def loop() -> None:
        while True:
            keys = queue.get_batch(batch)
            if not keys:
                return
            try:
                handle(keys)
            except Exception as exc:  # noqa: BLE001 - a worker must survive anything
                on_error(keys, exc)
            finally:
                for key in keys:
                    queue.done(key)

    threads = [
        threading.Thread(
            target=contextvars.copy_context().run, args=(loop,), name=f"{name}-{i}", daemon=True
        )
        for i in range(workers)
    ]
    for t in threads:
        t.start()
    return threads
