"""Running the service under uvicorn: the container entry and ``mlopsctl serve``.

**One process per core.** The predict path is a few microseconds of Python around an
onnxruntime call, so one process saturates one core; a second core needs a second
process. With ``MLOPS_WORKERS`` other than 1 (the container's default is one per core
it may use), this process becomes a small supervisor: it imports the service's modules
once, then forks N worker processes (each loading and verifying the model itself: no
model, thread or connection exists before the fork), so a worker starts in the time of
its model load rather than of a second interpreter's imports (about 1.5 s of a 2.4 s
cold start on 2 cores). Each worker
binds its *own* listening socket to the port with ``SO_REUSEPORT``. The kernel then
spreads incoming connections across the workers' sockets by a hash of the connection,
with no shared accept queue, no thundering herd and no lock (uvicorn's own ``--workers``
shares one socket, which lets one busy worker accept most connections of a burst). The
supervisor restarts a worker that dies, forwards SIGTERM/SIGINT, and owns the directory
where the workers share their Prometheus metrics (:mod:`serving.metrics`).

Against slow clients: ``MLOPS_READ_TIMEOUT_SECONDS`` bounds how long a request may take
to arrive (:mod:`serving.protocol`), ``MLOPS_KEEPALIVE_SECONDS`` how long an idle
keep-alive connection stays open.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import structlog
import uvicorn

from mlops_core import aws
from mlops_core.errors import InvalidInput, MlopsError
from mlops_core.logs import configure
from serving import capture_settings
from serving.settings import ServingSettings, load_settings

#: Pointer poll interval when following an env from the CLI (promotions show up fast).
DEV_POLL_SECONDS = 2.0
#: A worker that dies this many times within RESTART_WINDOW seconds is not restarted.
MAX_RESTARTS = 5
RESTART_WINDOW = 60.0
#: Seconds uvicorn lets open requests finish after SIGTERM.
GRACEFUL_SHUTDOWN_SECONDS = 10
#: Seconds a worker has to stop after SIGTERM before the supervisor kills it: the
#: graceful shutdown, then the capture writer's last flush, and a margin (25 s, within
#: ECS's default stop timeout of 30 s).
STOP_SECONDS = GRACEFUL_SHUTDOWN_SECONDS + capture_settings.CLOSE_SECONDS + 3.0
BACKLOG = 2048

log = structlog.get_logger("serving.server")


def cpu_count() -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup v2 CPU quota
    (a container limited to 1.5 CPUs gets 2 workers, not one per host core)."""
    cores = len(os.sched_getaffinity(0))
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def worker_count(settings: ServingSettings) -> int:
    return settings.workers or cpu_count()


def _socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    sock.set_inheritable(True)
    return sock


def serve_worker(settings: ServingSettings, *, log_level: str = "info") -> None:
    """Run one uvicorn server for ``settings`` until interrupted (blocking)."""
    from serving.app import create_app
    from serving.protocol import with_read_timeout

    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,  # structlog (mlops_core.logs) owns the output
        log_level=log_level,
        access_log=False,  # the app logs one structured line per request itself
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        timeout_keep_alive=int(math.ceil(settings.keepalive_seconds)),
        http=with_read_timeout(settings.read_timeout_seconds),
        backlog=BACKLOG,
    )
    server = uvicorn.Server(config)
    if settings.reuse_port:
        server.run(sockets=[_socket(settings.host, settings.port)])
    else:
        server.run()


class Worker:
    """A forked worker process, with the part of ``subprocess.Popen``'s interface the
    supervisor uses."""

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def _signal(self, signum: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"worker {self.pid}", timeout or 0.0)
            time.sleep(0.05)
        return code


class Supervisor:
    """Runs ``count`` worker processes on one port and keeps them running."""

    def __init__(self, settings: ServingSettings, count: int, log_level: str):
        self.settings = settings
        self.count = count
        self.log_level = log_level
        self.metrics_dir = Path(tempfile.mkdtemp(prefix="mlops-serving-metrics-"))
        self.worker_settings = settings.model_copy(
            update={"workers": 1, "reuse_port": True, "multiprocess_dir": self.metrics_dir}
        )
        self.workers: list[Worker] = []
        self.deaths: list[float] = []
        self.stopping = False

    def _preload(self) -> None:
        """Import what every worker runs, once, before any fork. prometheus_client picks
        its multiprocess mode when first imported, from the environment: set it first."""
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(self.metrics_dir)
        import serving.app  # noqa: F401
        import serving.protocol  # noqa: F401
        from serving.capture import preload

        if capture_settings.CaptureSettings().enabled:
            preload()
        # What was imported lives as long as the workers: frozen, the cyclic GC never
        # scans it again, nor writes to its pages (which the fork shares copy-on-write).
        gc.freeze()

    def _start(self) -> Worker:
        pid = os.fork()
        if pid:
            return Worker(pid)
        # The worker: uvicorn installs its own signal handlers; never return into the
        # supervisor's loop, whatever happens.
        code = 0
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            serve_worker(self.worker_settings, log_level=self.log_level)
        except SystemExit as exc:  # uvicorn's own exit (3: the app failed to start)
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException as exc:  # noqa: BLE001 - reported, then the process ends
            log.error("worker failed", error=f"{type(exc).__name__}: {exc}")
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def _stop(self, signum: int, _frame: Any) -> None:
        self.stopping = True

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        log.info(
            "starting workers",
            workers=self.count,
            port=self.settings.port,
            balancing="SO_REUSEPORT",
        )
        try:
            self._preload()
            self.workers = [self._start() for _ in range(self.count)]
            while not self.stopping:
                time.sleep(0.2)
                if self._reap():
                    return 1
            return 0
        finally:
            self._shutdown()

    def _reap(self) -> bool:
        """Restart dead workers; True when they die too often to go on."""
        from prometheus_client import multiprocess

        for i, proc in enumerate(self.workers):
            code = proc.poll()
            if code is None or self.stopping:
                continue
            multiprocess.mark_process_dead(proc.pid, str(self.metrics_dir))
            now = time.monotonic()
            self.deaths = [t for t in self.deaths if now - t < RESTART_WINDOW] + [now]
            if len(self.deaths) > MAX_RESTARTS:
                log.error("workers keep dying; stopping", exit_code=code, deaths=len(self.deaths))
                return True
            log.error("worker died; restarting it", pid=proc.pid, exit_code=code)
            self.workers[i] = self._start()
        return False

    def _shutdown(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + STOP_SECONDS
        for proc in self.workers:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.metrics_dir, ignore_errors=True)


def serve(settings: ServingSettings, *, log_level: str = "info") -> None:
    """Serve ``settings`` until interrupted: in this process, or with one worker process
    per core under a supervisor (see the module docstring)."""
    # Serving's own AWS call limits (pointer reads, capture writes): short enough that
    # a dead endpoint costs a worker seconds, not the CLI's minutes of retries.
    aws.configure(aws.SERVING)
    count = worker_count(settings)
    if count == 1:
        serve_worker(settings, log_level=log_level)
        return
    code = Supervisor(settings, count, log_level).run()
    if code:
        sys.exit(code)


def run_settings(
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    model_dir: Path | None = None,
    model_uri: str | None = None,
    model_sha256: str | None = None,
    project: str | None = None,
    env: str | None = None,
    poll_seconds: float | None = None,
    workers: int | None = None,
) -> ServingSettings:
    """The settings :func:`run` serves with (arguments over environment variables).
    On a laptop one worker is the default (``MLOPS_WORKERS`` or ``workers`` change it)."""
    if model_dir is not None and model_uri is not None:
        raise InvalidInput(
            "give a model folder or a model URI, not both",
            hint="--model-dir serves a local folder; MODEL_URI also takes s3:// URIs",
        )
    uri = str(model_dir) if model_dir is not None else model_uri
    environ: dict[str, str] = dict(os.environ)
    if project is not None and env is not None and uri is None:
        # An explicit env means its pointer, whatever MODEL_URI a shell may still export.
        environ.pop("MODEL_URI", None)
        if poll_seconds is None:
            poll_seconds = DEV_POLL_SECONDS
    if workers is None and not environ.get("MLOPS_WORKERS"):
        workers = 1
    return load_settings(
        environ,
        host=host,
        port=port,
        model_uri=uri,
        model_sha256=model_sha256,
        project=project,
        env=env,
        pointer_poll_seconds=poll_seconds,
        workers=workers,
    )


def run(host: str = "127.0.0.1", port: int = 8080, *, log_level: str = "info", **source) -> None:
    """Serve a model until interrupted; what ``mlopsctl serve`` calls.

    ``source`` takes :func:`run_settings`' keywords: ``model_dir`` (a local version
    folder) or ``model_uri`` (s3:// or local) to serve one version, or ``project`` +
    ``env`` to serve the env's pointer and follow it (every ``poll_seconds``, default
    2 s; 0 turns following off). Arguments left out fall back to the environment
    variables of :mod:`serving.settings`. Raises :class:`~mlops_core.errors.InvalidInput`
    for bad settings, before binding the port. A model that fails verification does not
    raise: the service runs, not ready, and logs why (see :mod:`serving.app`).
    """
    settings = run_settings(host, port, **source)
    configure(level=log_level)
    serve(settings, log_level=log_level)


def main() -> None:
    """The container entry (``python -m serving``): everything from the environment."""
    try:
        settings = load_settings()
        capture_settings.check_settings()
    except MlopsError as exc:
        configure()
        print(exc.render(), file=sys.stderr)
        sys.exit(exc.exit_code)
    configure(settings.config.log_level, settings.config.log_json)
    serve(settings)
