"""The capture writer's own process: where one-record bodies are converted and written.

Why a process: measured with ``benchmarks/capture.py``'s pinned services, converting and
writing a batch in the worker's writer thread slowed the worker's request path by about
twice the writer's own CPU, for as long as capture ran, and left the worker slower
for its life once it had run Arrow at all (the ``primed`` arm of ``--diagnose``). The same
conversion in a process of its own on the same core cost the service less than half as
much. The process is *spawned* (a fresh interpreter, ``python -m serving.capture_process``),
not forked: it shares nothing with the worker but a pipe.

The protocol, over the child's stdin and stdout (its logs go to stderr), pickled (both
ends are this module, in a parent and the child it started): first the platform, the env
and the capture settings, then per batch the bodies (:meth:`_Bodies.pack`) answered by the
counts the child's own writer recorded for it (written, files, dropped by reason, CPU
seconds), which the parent adds to its metrics. A child that dies or stops answering
costs the batch in flight (counted as ``write_failed``: its files may be partly written,
so it is not written again) and is started again for the next one.

The worker's writer thread waits for each answer (in a pipe read, without the GIL), so
``flush()`` still returns once the batch is in S3 or counted as lost.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any, BinaryIO

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


class WriterProcess:
    """The parent's end: starts the child when first needed, hands it batches."""

    #: The child's command line (this interpreter: the worker's own environment).
    command: tuple[str, ...] = (sys.executable, "-m", "serving.capture_process")

    def __init__(self, platform: Platform, env: str, settings: CaptureSettings):
        self.platform, self.env, self.settings = platform, env, settings
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def start(self) -> None:
        """Start the child now (the writer's start, with the service's: its imports then
        cost the start-up, not the first flush under traffic). A child that cannot start
        is said and tried again at the next batch."""
        try:
            if self._proc is None or self._proc.poll() is not None:
                self._proc = self._start()
        except Exception as exc:  # noqa: BLE001 - capture must never stop the service
            log.warning("capture writer process did not start", error=str(exc)[:300])
            self._stop(timeout=0)

    def _start(self) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            list(self.command),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            # A terminal's Ctrl-C must not stop it before the worker's last flush: it
            # ends when its stdin does (the worker closes it, or dies).
            start_new_session=True,
        )
        assert proc.stdin is not None
        pickle.dump((self.platform, self.env, self.settings.model_dump()), proc.stdin)
        proc.stdin.flush()
        return proc

    def write(self, batch: _Bodies) -> dict[str, float] | None:
        """The child's counts for ``batch``, or None when the child failed (it is gone
        then, and the next batch starts another)."""
        try:
            if self._proc is None or self._proc.poll() is not None:
                self._proc = self._start()
            assert self._proc.stdin is not None and self._proc.stdout is not None
            pickle.dump(batch.pack(), self._proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            self._proc.stdin.flush()
            counts: dict[str, float] = pickle.load(self._proc.stdout)
            return counts
        except Exception as exc:  # noqa: BLE001 - a lost child costs its batch, not the thread
            code = None if self._proc is None else self._proc.poll()
            log.warning("capture writer process failed", error=str(exc)[:300], exit_code=code)
            self._stop(timeout=0)
            return None

    def close(self, timeout: float = 5.0) -> None:
        """End the child (it has answered for every batch it was given)."""
        self._stop(timeout)

    def _stop(self, timeout: float) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(timeout)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _serve(inp: BinaryIO, out: BinaryIO) -> None:
    """The child's loop: one batch in, its counts out, until stdin ends."""
    from prometheus_client import CollectorRegistry

    from serving.capture import CaptureWriter, _Bodies
    from serving.capture_settings import CaptureSettings

    platform, env, settings = pickle.load(inp)
    registry = CollectorRegistry()
    writer = CaptureWriter(CaptureSettings(**settings), platform=platform, env=env,
                           registry=registry)  # fmt: skip

    def counts() -> dict[str, float]:
        return {k: registry.get_sample_value(n, labels) or 0.0 for k, (n, labels) in COUNTS.items()}

    while True:
        try:
            packed: Any = pickle.load(inp)
        except EOFError:
            return
        before, cpu = counts(), time.process_time()
        batch = _Bodies.unpack(packed)
        try:
            writer._write_bodies(batch)
        except Exception as exc:  # noqa: BLE001 - one batch must not end the process
            log.error("capture write failed", version=batch.schema.version,
                      error=str(exc)[:300])  # fmt: skip
        after = counts()
        after["cpu"] += time.process_time() - cpu
        # Every record of the batch is accounted for: what no counter took was lost.
        done = sum(after[k] - before[k] for k in ("written", "write_failed", "error"))
        after["error"] += max(0.0, len(batch.bodies) - done)
        pickle.dump({k: after[k] - before[k] for k in after}, out)
        out.flush()


def main() -> None:
    # The protocol owns stdout: anything else printed (logs) goes to stderr.
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from mlops_core.logs import configure

    configure()
    _serve(sys.stdin.buffer, out)


if __name__ == "__main__":
    main()
