"""The local AWS endpoint and its data plane, in one process.

    python -m mlopsctl.dataplane --port 4566        (what ``mlopsctl dev up`` starts)

moto's server runs in this process, behind the ECS front (:mod:`.front`), on 127.0.0.1;
beside it run the ECS scheduler with the agent (:mod:`.scheduler`, :mod:`.agent`), the
load balancer (:mod:`.loadbalancer`), the log shipper (:mod:`.cwlogs`) and the schedules
(:mod:`.schedules`), each in a thread, each talking to the endpoint over HTTP. SIGTERM
stops the tasks (SIGTERM to each task's process group, SIGKILL after its stop timeout),
sends their last output to CloudWatch Logs and exits 0.
"""

from __future__ import annotations

import argparse
import faulthandler
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable

from werkzeug.serving import BaseWSGIServer, make_server

from mlops_core import logs
from mlops_core.errors import MlopsError
from mlops_core.naming import Platform
from mlopsctl import local_aws
from mlopsctl.dataplane import moto_bridge as bridge
from mlopsctl.dataplane.agent import Agent, reap_orphans
from mlopsctl.dataplane.clients import Clients
from mlopsctl.dataplane.cwlogs import LogShipper
from mlopsctl.dataplane.front import EcsFront
from mlopsctl.dataplane.loadbalancer import LoadBalancers
from mlopsctl.dataplane.network import LOOPBACK, LocalNetwork
from mlopsctl.dataplane.scheduler import EcsScheduler
from mlopsctl.dataplane.schedules import Schedules
from mlopsctl.dataplane.settings import DataPlaneSettings
from mlopsctl.motoserver import SerialisedConditionalWrites

log = logs.get_logger("dataplane")


class DataPlane:
    """Everything ``dev up`` runs; ``start`` returns once the endpoint answers."""

    def __init__(self, port: int, settings: DataPlaneSettings, platform: Platform):
        self.port = port
        self.settings = settings
        self.platform = platform
        self.stop_event = threading.Event()
        self._threads: list[threading.Thread] = []
        endpoint = f"http://{LOOPBACK}:{port}"
        self.clients = Clients(endpoint, platform.region)
        self.network = LocalNetwork()
        self.shipper = LogShipper(self.clients, settings.log_flush_seconds)
        self.agent = Agent(
            settings,
            self.clients,
            self.network,
            self.shipper,
            platform=platform.platform,
            aws_env=local_aws.local_env(port, platform.region),
        )
        self.scheduler = EcsScheduler(settings, self.clients, self.agent)
        self.load_balancers = LoadBalancers(settings, self.clients, self.network)
        self.schedules = Schedules(settings, self.clients)
        self.server: BaseWSGIServer | None = None

    def start(self) -> None:
        bridge.check_moto_version()
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        orphans = reap_orphans(self.settings.state_dir)
        if orphans:
            log.warning("stopped task processes a previous data plane left", tasks=orphans)
        os.environ.setdefault("MOTO_PORT", str(self.port))  # moto builds some URLs with it
        bridge.install(self.settings.scaled)
        bridge.watch_load_balancers(self.load_balancers)
        server = make_server(
            LOOPBACK,
            self.port,
            EcsFront(SerialisedConditionalWrites(bridge.wsgi_app())),
            threaded=True,
            request_handler=bridge.request_handler(),
        )
        self.server = server
        self._thread("endpoint", lambda _stop: server.serve_forever())
        self._thread("scheduler", self.scheduler.run)
        self._thread("load-balancers", self.load_balancers.run)
        self._thread("logs", self.shipper.run)
        self._thread("schedules", self.schedules.run)
        log.info("local AWS and data plane running", endpoint=f"http://{LOOPBACK}:{self.port}")

    def _thread(self, name: str, target: Callable[[threading.Event], None]) -> None:
        thread = threading.Thread(target=target, args=(self.stop_event,), name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        """Stop the tasks first (their output still reaches the endpoint), then the rest."""
        self.stop_event.set()
        by_name = {t.name: t for t in self._threads}
        if "scheduler" in by_name:
            by_name["scheduler"].join(timeout=30)
        self.agent.stop_all(timeout=self.settings.timeout(30))
        for name in ("schedules", "load-balancers", "logs"):
            if name in by_name:
                by_name[name].join(timeout=15)
        if self.server is not None:
            self.server.shutdown()
        log.info("local AWS and data plane stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlopsctl.dataplane", description=__doc__)
    parser.add_argument("--port", type=int, required=True, help="Port of the endpoint (127.0.0.1).")
    args = parser.parse_args(argv)
    # One line per request to the endpoint would drown everything else.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    try:
        settings = DataPlaneSettings()
        logs.configure(settings.log_level, settings.log_json)
        plane = DataPlane(args.port, settings, settings.names())
        plane.start()
    except MlopsError as exc:
        print(f"error: {exc.render()}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - a settings error or a busy port: say it plainly
        print(f"error: the local data plane cannot start: {exc}", file=sys.stderr)
        return 2
    done = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        log.info("signal received", signal=signal.Signals(signum).name)
        done.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stop)
    # kill -USR1 PID writes every thread's stack to the log: what is it waiting for?
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    done.wait()
    plane.stop()
    return 0
