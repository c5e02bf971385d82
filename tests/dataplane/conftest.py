"""The local data plane as ``dev up`` runs it: one process per test module, its state reset
between tests, fast timings (time scale 0.05: a 15 s health check interval is 0.75 s).

Tasks run :mod:`fake_app` (starts in milliseconds) from the platform's serving image with
a ``command`` override, as a task definition can; requests go over real HTTP through the
local load balancer.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest
from configured import env_platform

from controller import loadbalancing
from mlops_core import aws
from mlops_core.naming import Platform
from mlopsctl import local_aws

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlops/serving:test"
APP = (Path(__file__).parent / "fake_app.py").read_text()
FAST = {
    "MLOPS_DATAPLANE_TIME_SCALE": "0.05",
    # The scheduler's and load balancers' own defaults: polling faster than that doubled
    # an idle data plane's CPU (a quarter of a core) and gained the tests nothing.
    "MLOPS_DATAPLANE_LOOP_SECONDS": "0.2",
    "MLOPS_DATAPLANE_LB_REFRESH_SECONDS": "0.25",
    "MLOPS_DATAPLANE_MIN_GRACE_SECONDS": "2",
    "MLOPS_DATAPLANE_ANSWERED_GRACE_SECONDS": "1",
    "MLOPS_DATAPLANE_MIN_TIMEOUT_SECONDS": "0.5",
    "MLOPS_DATAPLANE_LOG_FLUSH_SECONDS": "0.2",
    "MLOPS_DATAPLANE_LB_METRICS_SECONDS": "0.5",
    "MLOPS_DATAPLANE_SCHEDULES_SECONDS": "0.5",
}


def wait_for(
    predicate: Callable[[], object],
    timeout: float = 30,
    what: str = "condition",
    show: Callable[[], object] | None = None,
):
    """Poll ``predicate`` until it returns something truthy; that value. On timeout the
    assertion says what was awaited, and ``show()`` what there was instead."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            seen = f"; saw {show()}" if show is not None else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{seen}")
        time.sleep(0.1)


@dataclass
class Plane:
    port: int
    state: Path
    log: Path
    process: subprocess.Popen

    def task_processes(self) -> list[psutil.Process]:
        """Task processes the data plane started (each leads its own process group)."""
        try:
            children = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        return [c for c in children if alive(c)]


def alive(process: psutil.Process) -> bool:
    # A task can exit between two questions to psutil: a vanished process is a stopped one.
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture(scope="module")
def plane(tmp_path_factory, request) -> Iterator[Plane]:
    """The module's data plane: FAST, with the module's ``PLANE_SETTINGS`` over it."""
    port = local_aws.free_port()
    root = tmp_path_factory.mktemp("plane")
    log = root / "dataplane.log"
    saved = dict(os.environ)
    os.environ.update({**FAST, **getattr(request.module, "PLANE_SETTINGS", {})})
    try:
        process = local_aws.start_dataplane(port, root / "state", log_path=log)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    plane = Plane(port, root / "state", log, process)
    try:
        yield plane
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@dataclass
class Env:
    """A clean local AWS with the base resources, this process' clients pointed at it."""

    plane: Plane
    platform: Platform
    subnets: list[str]
    security_group: str

    @property
    def network(self) -> dict:
        return {
            "awsvpcConfiguration": {
                "subnets": self.subnets,
                "securityGroups": [self.security_group],
                "assignPublicIp": "DISABLED",
            }
        }

    def ecs(self):
        return aws.client("ecs")

    def elb(self):
        return aws.client("elbv2")

    def register(
        self,
        family: str,
        *,
        image: str = IMAGE,
        app: bool = True,
        stop_timeout: int = 10,
        **env: str,
    ) -> str:
        """A Fargate task definition running the fake app (``env``: its settings)."""
        container: dict = {
            "name": "serving",
            "image": image,
            "essential": True,
            "portMappings": [{"containerPort": 8080, "protocol": "tcp"}],
            "environment": [{"name": k, "value": v} for k, v in env.items()],
            "stopTimeout": stop_timeout,
        }
        if app:
            container["command"] = ["python", "-c", APP]
        return self.ecs().register_task_definition(
            family=family,
            networkMode="awsvpc",
            requiresCompatibilities=["FARGATE"],
            cpu="256",
            memory="512",
            containerDefinitions=[container],
        )["taskDefinition"]["taskDefinitionArn"]

    def load_balancer(self, project: str = "demo", env: str = "prod") -> str:
        """The env's ALB as the controller ensures it; the blue target group's ARN."""
        return loadbalancing.ensure(
            self.platform,
            project,
            env,
            port=8080,
            subnets=tuple(self.subnets),
            security_groups=(self.security_group,),
        )

    def url(self, project: str = "demo", env: str = "prod") -> str:
        return wait_for(
            lambda: (
                (u := loadbalancing.endpoint_url(self.platform, project, env))
                and "127.0.0.1" in u
                and u
            ),
            what="the listener's local endpoint",
        )

    def service(
        self,
        name: str,
        task_definition: str,
        *,
        target_group: str | None = None,
        count: int = 2,
        rollback: bool = True,
        grace: int = 0,
        **config,
    ) -> dict:
        kwargs: dict = {}
        if target_group is not None:
            kwargs["loadBalancers"] = [
                {"targetGroupArn": target_group, "containerName": "serving", "containerPort": 8080}
            ]
            kwargs["healthCheckGracePeriodSeconds"] = grace
        return self.ecs().create_service(
            cluster=self.platform.ecs_cluster,
            serviceName=name,
            taskDefinition=task_definition,
            desiredCount=count,
            launchType="FARGATE",
            networkConfiguration=self.network,
            deploymentConfiguration={
                "deploymentCircuitBreaker": {"enable": True, "rollback": rollback},
                "minimumHealthyPercent": 100,
                "maximumPercent": 200,
                **config,
            },
            **kwargs,
        )["service"]

    def describe(self, name: str) -> dict:
        return self.ecs().describe_services(cluster=self.platform.ecs_cluster, services=[name])[
            "services"
        ][0]

    def primary(self, name: str) -> dict:
        return next(d for d in self.describe(name)["deployments"] if d["status"] == "PRIMARY")

    def deployments(self, name: str) -> list[tuple]:
        """(status, rolloutState, running, pending, failed, revision) of each deployment."""
        return [
            (
                d["status"],
                d["rolloutState"],
                d["runningCount"],
                d["pendingCount"],
                d["failedTasks"],
                d["taskDefinition"].rpartition(":")[2],
            )
            for d in self.describe(name)["deployments"]
        ]

    def wait_rollout(self, name: str, state: str, timeout: float = 60) -> dict:
        return wait_for(
            lambda: (p := self.primary(name))["rolloutState"] == state and p,
            timeout,
            f"{name}'s primary deployment to be {state}",
            show=lambda: self.deployments(name),
        )

    def tasks(self, name: str | None = None, status: str = "RUNNING") -> list[dict]:
        ecs = self.ecs()
        kwargs = {"serviceName": name} if name else {}
        arns = ecs.list_tasks(cluster=self.platform.ecs_cluster, desiredStatus=status, **kwargs)[
            "taskArns"
        ]
        if not arns:
            return []
        return ecs.describe_tasks(cluster=self.platform.ecs_cluster, tasks=arns)["tasks"]


@pytest.fixture
def env(plane, monkeypatch) -> Env:
    for key, value in local_aws.local_env(plane.port).items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "MLOPS_PLATFORM", "MLOPS_ARTIFACT_BUCKET"):
        monkeypatch.delenv(key, raising=False)
    local_aws.reset(plane.port)
    # After a reset the agent stops the processes of tasks the endpoint forgot.
    wait_for(lambda: not plane.task_processes(), 30, "the previous test's tasks to stop")
    platform = env_platform()
    resources = local_aws.bootstrap(platform)
    return Env(plane, platform, resources["subnets"].split(","), resources["security_groups"])


@dataclass
class Load:
    """Steady requests through the load balancer in a thread: every answer counted."""

    url: str
    interval: float = 0.02
    codes: Counter = field(default_factory=Counter)
    versions: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Load:
        def run() -> None:
            with httpx.Client(timeout=10) as client:
                while not self._stop.is_set():
                    try:
                        r = client.post(f"{self.url}/predict", json={"x": 1})
                        self.codes[r.status_code] += 1
                        if r.status_code == 200:
                            self.versions.append(r.json()["version"])
                    except httpx.HTTPError as exc:
                        self.codes[type(exc).__name__] += 1
                        self.errors.append(repr(exc))
                    time.sleep(self.interval)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=30)

    @property
    def failed(self) -> int:
        return sum(n for code, n in self.codes.items() if code != 200)

    @property
    def total(self) -> int:
        return sum(self.codes.values())
