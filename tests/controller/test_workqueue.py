"""The work queue: dedup, one worker per key, delayed adds, backoff, shutdown."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter

from controller.workqueue import WorkQueue, run_workers


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_key_added_many_times_is_queued_once():
    q = WorkQueue()
    for _ in range(5):
        q.add("a")
    q.add("b")
    assert q.get_batch(10) == ["a", "b"]
    assert q.get_batch(10, timeout=0) == []


def test_a_key_added_while_processing_waits_for_done():
    q = WorkQueue()
    q.add("a")
    assert q.get_batch(1) == ["a"]
    q.add("a")  # an event arrives while a worker has "a"
    assert q.get_batch(1, timeout=0) == [], "a second worker must not get the same key"
    q.done("a")
    assert q.get_batch(1, timeout=0) == ["a"], "the dirty key is queued once done"


def test_add_after_waits_and_keeps_the_earliest_schedule():
    clock = FakeClock()
    q = WorkQueue(clock=clock)
    q.add_after("a", 10)
    q.add_after("a", 5)  # sooner wins
    q.add_after("a", 20)  # later is ignored
    assert q.get_batch(1, timeout=0) == []
    clock.now = 5.0
    assert q.get_batch(1, timeout=0) == ["a"]
    q.done("a")
    clock.now = 30.0
    assert q.get_batch(1, timeout=0) == [], "superseded schedules must not fire again"


def test_an_immediate_add_supersedes_a_scheduled_one():
    clock = FakeClock()
    q = WorkQueue(clock=clock)
    q.add_after("a", 10)
    q.add("a")
    assert q.get_batch(1, timeout=0) == ["a"]
    q.done("a")
    clock.now = 11.0
    assert q.get_batch(1, timeout=0) == []


def test_backoff_is_exponential_capped_and_jittered_then_forgotten():
    q = WorkQueue(base_delay=1.0, max_delay=8.0, jitter=0.5, rng=random.Random(7))
    delays = [q.backoff("a") for _ in range(6)]
    ceilings = [1, 2, 4, 8, 8, 8]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling * 0.5 <= delay <= ceiling
    assert len(set(delays)) == len(delays), "jitter spreads retries of many keys apart"
    assert q.failures("a") == 6
    assert q.backoff("b") <= 1.0, "backoff is per key"
    q.forget("a")
    assert q.failures("a") == 0
    assert q.backoff("a") <= 1.0


def test_shutdown_wakes_blocked_workers():
    q = WorkQueue()
    got: list[list[str]] = []
    t = threading.Thread(target=lambda: got.append(q.get_batch(1)))
    t.start()
    time.sleep(0.05)
    q.shutdown()
    t.join(timeout=5)
    assert not t.is_alive()
    assert got == [[]]
    q.add("a")
    assert q.get_batch(1, timeout=0) == [], "nothing is handed out after shutdown"


def test_workers_never_hold_one_key_twice_and_all_keys_get_done():
    q = WorkQueue(base_delay=0.01)
    active: set[str] = set()
    overlaps: list[str] = []
    handled: Counter[str] = Counter()
    lock = threading.Lock()

    def handle(keys: list[str]) -> None:
        with lock:
            for k in keys:
                if k in active:
                    overlaps.append(k)
                active.add(k)
        time.sleep(0.002)
        with lock:
            for k in keys:
                active.discard(k)
                handled[k] += 1

    threads = run_workers(q, handle, workers=4, batch=3)
    keys = [f"k{i}" for i in range(20)]
    for _ in range(10):
        q.add_all(keys)
        time.sleep(0.003)
    assert q.wait_idle(timeout=10)
    q.shutdown()
    for t in threads:
        t.join(timeout=5)
    assert overlaps == []
    assert set(handled) == set(keys)


def test_a_handler_that_raises_retries_the_keys_with_backoff():
    q = WorkQueue(base_delay=0.01, max_delay=0.02)
    calls: Counter[str] = Counter()

    def handle(keys: list[str]) -> None:
        for k in keys:
            calls[k] += 1
            if calls[k] < 3:
                raise RuntimeError("AWS is down")
            q.forget(k)

    threads = run_workers(q, handle, workers=2)
    q.add("a")
    assert q.wait_idle(timeout=10)
    q.shutdown()
    for t in threads:
        t.join(timeout=5)
    assert calls["a"] == 3
    assert q.failures("a") == 0
