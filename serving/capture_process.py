"""The capture writer's own process: where one-record bodies are converted and written.

Why a process: measured with ``benchmarks/capture.py``'s pinned services, converting and
writing a batch in the worker's writer thread slowed the worker's request path by about
twice the writer's own CPU, for as long as capture ran, and left the worker slower
for its life once it had run Arrow at all (the ``primed`` arm of ``--diagnose``). The same
conversion in a process of its own on the same core cost the service less than half as
much. The process is *spawned* (a fresh interpreter, ``python -m serving.capture_process``),
not forked: it shares nothing with the worker but a pipe. It schedules itself as batch
work (:func:`batch_scheduling`), so that its wake-ups do not preempt the request path.

The protocol, over the child's stdin and a pipe of its own for the answers (its file
descriptor the child's one argument: not stdout, where anything printed before the
child's code runs, a ``sitecustomize`` say, would corrupt it; the child's stdout goes to
its stderr), pickled (both ends are this module, in a parent and the child it started;
``-P``, so that a ``serving`` in the worker's current folder is not what it imports):
first the platform, the env
and the capture settings, then per batch the bodies (:meth:`_Bodies.pack`) answered by the
counts the child's own writer recorded for it (written, files, dropped by reason, CPU
seconds), which the parent adds to its metrics. A child that dies or stops answering
costs the batch in flight (counted as ``write_failed``: its files may be partly written,
so it is not written again) and is started again for the next one. A child that does not
answer within :meth:`WriterProcess.answer_timeout` (stopped, or deadlocked) is killed,
which is the same failure. A child that fails again and again is started again after a
growing pause (:data:`RESTART_PAUSES`), not for every batch: the batches of that pause
are counted as ``write_failed`` too, rather than converted in the worker, which would
bring back the cost the process exists to keep off the request path, and would expose
the worker to whatever made the child fail.

The worker's writer thread waits for each answer (in a pipe read, without the GIL), so
``flush()`` still returns once the batch is in S3 or counted as lost.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import sysconfig
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from mlops_core import aws
from mlops_core.logs import get_logger

if TYPE_CHECKING:
    from mlops_core.naming import Platform
    from serving.capture import _Bodies
    from serving.capture_settings import CaptureSettings

log = get_logger("serving.capture")

#: The counters the child reports per batch, by the name of its writer's metric.
COUNTS = {
    "written": ("mlops_serving_capture_written_records_total", {}),
    "files": ("mlops_serving_capture_files_total", {}),
    "cpu": ("mlops_serving_capture_writer_cpu_seconds_total", {}),
    **{
        reason: ("mlops_serving_capture_dropped_records_total", {"reason": reason})
        for reason in ("buffer_full", "write_failed", "error")
    },
}

#: Seconds before a child is started again after its n-th failure in a row (the last
#: repeats): a single crash costs only its batch; a child that cannot live is tried once
#: a minute, not once per batch (each start imports pyarrow and botocore: about a
#: second of CPU taken from the worker's core).
RESTART_PAUSES = (0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0)

#: Seconds a child may take for a batch beyond its PUTs' own worst case (decoding and
#: encoding 20,000 records takes about 20 ms; this is for a container starved of CPU).
ANSWER_GRACE_SECONDS = 30.0
#: ... and at most this in all (``AWS_MAX_ATTEMPTS`` in the thousands would make it hours).
MAX_ANSWER_SECONDS = 600.0


class _Pausing(Exception):
    def __init__(self, seconds: float):
        super().__init__(f"restarted in {seconds:.0f} s")
        self.seconds = seconds


class _Died(Exception):
    pass


class _NoTime(Exception):
    pass


def _check_answer(counts: Any, records: int) -> None:
    """An answer of the protocol: every count, a finite number not below zero, and the
    records accounted for exactly (what the child's writer did not count, it counted as
    ``error``)."""
    if not isinstance(counts, dict) or set(counts) != set(COUNTS):
        raise ValueError(f"not an answer of the protocol: {str(counts)[:100]}")
    if not all(type(v) in (int, float) and 0 <= v < float("inf") for v in counts.values()):
        raise ValueError(f"counts out of range: {str(counts)[:200]}")
    done = counts["written"] + counts["write_failed"] + counts["error"]
    if abs(done - records) > 0.5:
        raise ValueError(f"answered for {done:.0f} records of {records}")


class WriterProcess:
    """The parent's end: starts the child, hands it batches, ends it.

    Used by the writer thread (``write``) and by whoever closes the writer (``close``),
    possibly while a write is stuck: ``_lock`` guards which child is current."""

    #: The child's command line (this interpreter: the worker's own environment).
    command: tuple[str, ...] = (sys.executable, "-P", "-m", "serving.capture_process")

    def __init__(self, platform: Platform, env: str, settings: CaptureSettings):
        self.platform, self.env, self.settings = platform, env, settings
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._busy: subprocess.Popen[bytes] | None = None  # the child a write waits on
        self._closed = False
        self._failures = 0  # in a row
        self._pause_said = False  # the pause's one log line
        self._resume_at = 0.0  # monotonic: no child is started before

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return None if proc is None else proc.pid

    def start(self) -> None:
        """Start the child now (the writer's start, with the service's: its imports then
        cost the start-up, not the first flush under traffic). A child that cannot start
        is said and tried again at the next batch. After :meth:`close`, it opens the
        writer again (an app's lifespan run twice)."""
        with self._lock:
            self._closed, self._failures, self._resume_at = False, 0, 0.0
        try:
            self._current()
        except Exception as exc:  # noqa: BLE001 - capture must never stop the service
            log.warning("capture writer process did not start", error=str(exc)[:300])
            self._failed()

    def _current(self) -> subprocess.Popen[bytes]:
        """The live child, started if there is none (or it ended since the last batch)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the capture writer is closed")
            proc = self._proc
            if proc is not None and proc.poll() is None:
                return proc
        if proc is not None:  # it ended between batches: said, and a failure like any
            self._stop(proc, timeout=0)
            log.warning("capture writer process exited between batches; starting another",
                        pid=proc.pid, exit_code=proc.returncode)  # fmt: skip
            self._failed()
        if time.monotonic() < self._resume_at:
            raise _Pausing(self._resume_at - time.monotonic())
        proc = self._start()
        with self._lock:
            if not self._closed and self._proc is None:
                self._proc = proc
                return proc
        self._stop(proc, timeout=0)  # closed (or replaced) meanwhile
        raise RuntimeError("the capture writer is closed")

    def _start(self) -> subprocess.Popen[bytes]:
        answers, theirs = os.pipe()
        try:
            proc = subprocess.Popen(
                [*self.command, str(theirs)],
                stdin=subprocess.PIPE,
                pass_fds=(theirs,),
                env=_child_environment(),
                # A terminal's Ctrl-C must not stop it before the worker's last flush: it
                # ends when its stdin does (the worker closes it, or dies).
                start_new_session=True,
            )
        except BaseException:
            os.close(answers)
            raise
        finally:
            os.close(theirs)  # the child's now: its end closes when it exits
        # Read as the child's output stream (closed with it in _stop).
        proc.stdout = os.fdopen(answers, "rb")
        try:
            assert proc.stdin is not None
            handshake = (self.platform, self.env, self.settings.model_dump(), aws.limits())
            pickle.dump(handshake, proc.stdin)
            proc.stdin.flush()
        except Exception:
            self._stop(proc, timeout=0)
            raise
        return proc

    def answer_timeout(self, records: int) -> float:
        """How long the child may take to answer for a batch of ``records`` (of one hour):
        each of its files' PUT may take its worst case."""
        files = max(1, -(-records // self.settings.batch_records))
        return min(MAX_ANSWER_SECONDS, files * aws.limits().worst_case() + ANSWER_GRACE_SECONDS)

    def write(self, batch: _Bodies, deadline: float | None = None) -> dict[str, float] | None:
        """The child's counts for ``batch``, or None when it could not be written: the
        child failed (it is gone then), it is pausing after failures, the writer is
        closed, or ``deadline`` (monotonic) came first. None's batch may be partly
        written: it is counted, never written again."""
        records = len(batch.bodies)
        try:
            proc = self._current()
        except _Pausing as pause:
            if not self._pause_said:  # once per pause: its batches are counted, not logged
                self._pause_said = True
                log.warning("capture batches dropped while the writer process is paused "
                            "after failing", failures=self._failures,
                            restart_in_s=round(pause.seconds, 1))  # fmt: skip
            return None
        except Exception as exc:  # noqa: BLE001 - a lost child costs its batch, not the thread
            if not self._closed:
                log.warning("capture writer process did not start", records=records,
                            error=str(exc)[:300])  # fmt: skip
                self._failed()
            return None
        timed_out = threading.Event()

        def expire() -> None:
            timed_out.set()
            proc.kill()  # the blocked write or read below fails at once

        watchdog: threading.Timer | None = None
        try:
            wait = self.answer_timeout(records)
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
            if wait <= 0:
                raise _NoTime()
            assert proc.stdin is not None and proc.stdout is not None
            with self._lock:
                self._busy = proc
            watchdog = threading.Timer(wait, expire)
            watchdog.daemon = True
            watchdog.start()
            pickle.dump(batch.pack(), proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            proc.stdin.flush()
            try:
                counts = pickle.load(proc.stdout)
            except EOFError:
                raise _Died() from None
            _check_answer(counts, records)
        except _NoTime:
            log.warning("capture batch not written: the writer's close ran out of time",
                        records=records)  # fmt: skip
            return None
        except Exception as exc:  # noqa: BLE001 - a lost child costs its batch, not the thread
            self._stop(proc, timeout=1.0)  # reaped: its exit code is known
            if timed_out.is_set():
                error = f"no answer in {wait:.0f} s: killed"
            elif isinstance(exc, _Died):
                error = "it exited before answering"
            else:
                error = f"{type(exc).__name__}: {str(exc)[:300]}"
            log.warning("capture batch lost: the writer process failed", records=records,
                        pid=proc.pid, exit_code=proc.returncode, error=error)  # fmt: skip
            if not self._closed:
                self._failed()
            return None
        finally:
            if watchdog is not None:
                watchdog.cancel()
            with self._lock:
                self._busy = None
        self._failures, self._pause_said = 0, False
        return counts

    def _failed(self) -> None:
        self._failures += 1
        self._pause_said = False
        pause = RESTART_PAUSES[min(self._failures, len(RESTART_PAUSES)) - 1]
        self._resume_at = time.monotonic() + pause

    def close(self, timeout: float = 5.0) -> None:
        """End the child: it has answered for every batch it was given, or the writer's
        close gave up on the one still in flight (a write that outlived the writer's
        shutdown deadline), which is then killed. No child is started after."""
        with self._lock:
            self._closed = True
            busy, proc, self._proc = self._busy, self._proc, None
        if busy is not None:
            busy.kill()  # the stuck write fails, and its thread stops this child
        if proc is not None and proc is not busy:
            self._stop(proc, timeout)

    def _stop(self, proc: subprocess.Popen[bytes], timeout: float) -> None:
        with self._lock:
            if self._proc is proc:
                self._proc = None
        try:
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(timeout)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _child_environment() -> dict[str, str]:
    """The worker's environment, but for prometheus_client's multiprocess directory and
    with the folder this code was imported from first on ``PYTHONPATH`` (unless it is
    the interpreter's own site-packages): a worker started from a checkout by a path of
    its own (``uvicorn --app-dir``, a ``sys.path`` edit, a ``chdir`` after start) runs a
    child that imports the same code, not none."""
    env = dict(os.environ)
    # Its counts reach /metrics through the worker's own metrics; its own counters in
    # the workers' multiprocess directory would be summed in as well, counted twice.
    for name in ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir"):
        env.pop(name, None)
    root = str(Path(__file__).resolve().parent.parent)
    installed = {str(Path(sysconfig.get_paths()[k]).resolve()) for k in ("purelib", "platlib")}
    if root not in installed:
        env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    return env


def _serve(inp: BinaryIO, out: BinaryIO) -> None:
    """The child's loop: one batch in, its counts out, until stdin ends."""
    from prometheus_client import CollectorRegistry

    from serving.capture import CaptureWriter, _Bodies
    from serving.capture_settings import CaptureSettings

    platform, env, settings, limits = pickle.load(inp)
    aws.configure(limits)  # the worker's: the parent's answer timeout counts on them
    registry = CollectorRegistry()
    # The child's writer writes here: it has no writer process of its own to hand to.
    own = CaptureSettings(**{**settings, "writer_process": False})
    writer = CaptureWriter(own, platform=platform, env=env, registry=registry)

    def counts() -> dict[str, float]:
        return {k: registry.get_sample_value(n, labels) or 0.0 for k, (n, labels) in COUNTS.items()}

    while True:
        try:
            packed: Any = pickle.load(inp)
        except EOFError:
            return
        before, cpu = counts(), time.process_time()
        accounted = writer.metrics.accounted()
        batch = _Bodies.unpack(packed)
        try:
            writer._write_bodies(batch)
        except Exception as exc:  # noqa: BLE001 - one batch must not end the process
            log.error("capture write failed", version=batch.schema.version,
                      error=str(exc)[:300])  # fmt: skip
        after = counts()
        after["cpu"] += time.process_time() - cpu
        # Every record of the batch is accounted for: what no counter took was lost.
        done = writer.metrics.accounted() - accounted
        after["error"] += max(0.0, len(batch.bodies) - done)
        try:
            pickle.dump({k: after[k] - before[k] for k in after}, out)
            out.flush()
        except BrokenPipeError:  # the worker is gone: nobody to answer, nothing left to do
            return


def batch_scheduling() -> None:
    """Have the kernel schedule this process as batch work (Linux's ``SCHED_BATCH``);
    elsewhere, where it is refused, or where the worker runs under a policy its operator
    chose (``chrt``: idle or real-time), nothing changes.

    The child may share its worker's core, and a pipe read or a PUT's answer wakes it
    many times per batch. A normal task that wakes may preempt the one running, the
    worker in the middle of a request; a batch task does not (it runs when the running
    task sleeps, or at the scheduler's tick). Its weight stays a normal task's (same
    nice); on a saturated core each wake-up waits for a turn, so it drains batches more
    slowly there: fed far beyond what one worker answers, it drops sooner than with the
    default policy (the README says by how much). Measured with benchmarks/capture.py's
    services, arm against arm in one run: capture's cost to /predict fell by 0.8-2.9
    points of throughput (three runs).

    The policy is the calling thread's and passes to the threads it starts after: this
    is called first in the child, before it starts any thread. Unprivileged, the switch
    from the default policy is allowed; musl (ENOSYS) and gVisor (EINVAL) refuse it."""
    policy = getattr(os, "SCHED_BATCH", None)
    if policy is None or not hasattr(os, "sched_setscheduler"):
        return
    try:
        if os.sched_getscheduler(0) != os.SCHED_OTHER:
            return  # the operator's choice stands
        os.sched_setscheduler(0, policy, os.sched_param(0))
    except OSError as exc:  # a sandbox that forbids it: the default policy works too
        log.info("capture writer process keeps the default scheduling", error=str(exc))


def main() -> None:
    # The answers go to the pipe given as the one argument; anything printed goes to
    # stderr, with the logs.
    out = os.fdopen(int(sys.argv[1]), "wb")
    if sys.stderr is None:  # the worker runs with no stderr: the logs go nowhere
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.stderr = sys.stdout
    else:
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from mlops_core.logs import configure

    configure()
    batch_scheduling()
    _serve(sys.stdin.buffer, out)


if __name__ == "__main__":
    main()
