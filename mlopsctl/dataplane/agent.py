"""The agent: each task's container as a local process, through ECS's task lifecycle.

For every task the endpoint lists, the agent does what the ECS agent and Fargate do:

- PROVISIONING -> PENDING -> RUNNING: resolve the image to a local command
  (:mod:`.images`), resolve ``secrets``, check the ``awslogs`` group, start the process with
  the container's environment plus the local AWS environment, ``HOST=127.0.0.1`` and one
  free loopback port per container port, in its own process group and its own folder;
- a process that exits: STOPPED with the container's exit code ("Essential container in
  task exited", unless the stop was asked for);
- a task asked to stop once it may (STOPPING, after its targets drained): SIGTERM to its
  process group, SIGKILL after the container's ``stopTimeout``;
- an image it cannot run, a secret it cannot read, a log group that does not exist:
  STOPPED with ECS's ``stoppedReason`` and ``stopCode`` ``TaskFailedToStart``.

Every process it starts is recorded in ``tasks.json`` in the state folder (pid and
start time), so :func:`reap_orphans` can stop what a crashed data plane left behind,
and never a process that merely reuses a pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from mlops_core.logs import get_logger
from mlopsctl.dataplane import images
from mlopsctl.dataplane import moto_bridge as bridge
from mlopsctl.dataplane.clients import Clients
from mlopsctl.dataplane.cwlogs import AwsLogs, LogGroupMissing, LogShipper
from mlopsctl.dataplane.network import LOOPBACK, LocalNetwork, free_port
from mlopsctl.dataplane.settings import DataPlaneSettings

log = get_logger("dataplane.agent")

REGISTRY = "tasks.json"
DEFAULT_STOP_TIMEOUT = 30  # seconds, ECS's default stopTimeout
# What a task's process inherits from the data plane's own environment (no more: a
# container does not see its host's environment).
INHERITED = ("PATH", "LANG", "LC_ALL", "TZ", "SYSTEMROOT")


def task_id(arn: str) -> str:
    return arn.rpartition("/")[2]


def private_ip(task: dict[str, Any]) -> str | None:
    for attachment in task.get("attachments") or []:
        for detail in attachment.get("details") or []:
            if detail.get("name") == "privateIPv4Address":
                return detail.get("value")
    return None


def _now():
    return bridge.utcnow()


# -- the process registry ----------------------------------------------------------------
class ProcessRegistry:
    """``tasks.json``: the process groups this data plane started, by task ARN."""

    def __init__(self, state_dir: Path):
        self.path = state_dir / REGISTRY
        self._lock = threading.Lock()

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            return json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def _write(self, entries: dict[str, dict[str, Any]]) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(entries, indent=1))
        os.replace(tmp, self.path)

    def add(self, arn: str, pid: int, folder: Path) -> None:
        with self._lock:
            entries = self._read()
            entries[arn] = {"pid": pid, "create_time": _create_time(pid), "folder": str(folder)}
            self._write(entries)

    def remove(self, arn: str) -> None:
        with self._lock:
            entries = self._read()
            if entries.pop(arn, None) is not None:
                self._write(entries)

    def entries(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return self._read()


def _create_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def _same_process(pid: int, create_time: float | None) -> bool:
    """``pid`` is still the live process that was recorded (not a recycled pid)."""
    if create_time is None:
        return False
    try:
        process = psutil.Process(pid)
        return (
            abs(process.create_time() - create_time) < 0.01
            and process.status() != psutil.STATUS_ZOMBIE
        )
    except psutil.Error:
        return False


def _kill_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def reap_orphans(state_dir: Path, timeout: float = 5.0) -> list[str]:
    """Stop the task processes a previous data plane recorded and left running (it
    crashed, or was killed). Returns the task ARNs whose processes were stopped."""
    registry = ProcessRegistry(state_dir)
    stopped = []
    alive = []
    for arn, entry in registry.entries().items():
        pid = int(entry["pid"])
        if _same_process(pid, entry.get("create_time")):
            _kill_group(pid, signal.SIGTERM)
            alive.append((pid, entry.get("create_time")))
            stopped.append(arn)
    deadline = time.monotonic() + timeout
    while alive and time.monotonic() < deadline:
        alive = [(p, c) for p, c in alive if _same_process(p, c)]
        time.sleep(0.1)
    for pid, _ in alive:
        _kill_group(pid, signal.SIGKILL)
    with contextlib.suppress(FileNotFoundError):
        registry.path.unlink()
    return stopped


# -- the agent ---------------------------------------------------------------------------
@dataclass
class _Running:
    arn: str
    process: subprocess.Popen
    folder: Path
    address: str | None
    stop_timeout: float
    kill_at: float | None = None  # set once SIGTERM was sent


class Agent:
    def __init__(
        self,
        settings: DataPlaneSettings,
        clients: Clients,
        network: LocalNetwork,
        shipper: LogShipper,
        *,
        platform: str,
        aws_env: dict[str, str],
    ):
        self.settings = settings
        self.clients = clients
        self.network = network
        self.shipper = shipper
        self.platform = platform
        self.aws_env = aws_env
        self.tasks_dir = settings.state_dir / "tasks"
        self.registry = ProcessRegistry(settings.state_dir)
        self._running: dict[str, _Running] = {}

    # -- one pass ----------------------------------------------------------------------
    def step(self, tasks: list[dict[str, Any]]) -> None:
        """Move every task one step through its lifecycle (``tasks``: DescribeTasks)."""
        seen = set()
        for t in tasks:
            arn = t["taskArn"]
            seen.add(arn)
            running = self._running.get(arn)
            last, desired = t.get("lastStatus"), t.get("desiredStatus")
            if desired == "RUNNING" and last == "PROVISIONING" and running is None:
                self._launch(t)
            elif desired == "STOPPED" and last != "STOPPED":
                if running is None:
                    self._stopped_before_start(t)
                elif last in ("STOPPING", "PROVISIONING", "PENDING", "ACTIVATING"):
                    self._terminate(running)
                elif last == "DEACTIVATING" and not t.get("group", "").startswith("service:"):
                    # A standalone task has no load balancer targets to drain.
                    bridge.update_task(arn, lastStatus="STOPPING")
                    self._terminate(running)
        for arn, running in list(self._running.items()):
            code = running.process.poll()
            if code is not None:
                self._finished(running, code)
            elif running.kill_at is not None and time.monotonic() >= running.kill_at:
                _kill_group(running.process.pid, signal.SIGKILL)  # past its stopTimeout
            elif arn not in seen:
                # The endpoint forgot the task (reset): nothing may keep running for it.
                self._terminate(running)

    def stop_all(self, timeout: float = 10.0) -> None:
        """The data plane stops: stop every task process (SIGTERM, then SIGKILL)."""
        for running in self._running.values():
            _kill_group(running.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for running in list(self._running.values()):
            left = max(0.0, deadline - time.monotonic())
            try:
                code = running.process.wait(timeout=left)
            except subprocess.TimeoutExpired:
                _kill_group(running.process.pid, signal.SIGKILL)
                code = running.process.wait()
            self._finished(running, code)

    # -- lifecycle ---------------------------------------------------------------------
    def _task_definition(self, arn: str) -> dict[str, Any]:
        # Not cached: one read per task start is cheap, and a reset endpoint reuses ARNs.
        return self.clients("ecs").describe_task_definition(taskDefinition=arn)["taskDefinition"]

    def _fail_to_start(self, arn: str, reason: str) -> None:
        now = _now()
        log.warning("task failed to start", task=task_id(arn), reason=reason)
        bridge.update_task(
            arn,
            lastStatus="STOPPED",
            desiredStatus="STOPPED",
            stoppedReason=reason,
            stopCode="TaskFailedToStart",
            stoppingAt=now,
            stoppedAt=now,
            executionStoppedAt=now,
            container={"lastStatus": "STOPPED", "reason": reason},
        )

    def _stopped_before_start(self, t: dict[str, Any]) -> None:
        now = _now()
        bridge.update_task(
            t["taskArn"],
            lastStatus="STOPPED",
            stoppedAt=now,
            executionStoppedAt=now,
            container={"lastStatus": "STOPPED"},
        )

    def _launch(self, t: dict[str, Any]) -> None:
        arn = t["taskArn"]
        bridge.update_task(arn, lastStatus="PENDING", pullStartedAt=_now())
        try:
            td = self._task_definition(t["taskDefinitionArn"])
        except Exception as exc:  # noqa: BLE001 - deregistered or gone
            self._fail_to_start(arn, f"ResourceInitializationError: {exc}")
            return
        container = td["containerDefinitions"][0]
        override: dict[str, Any] = next(
            (
                o
                for o in (t.get("overrides") or {}).get("containerOverrides") or []
                if o.get("name") in (None, container.get("name"))
            ),
            {},
        )
        try:
            argv, image_env = images.resolve(
                container["image"],
                self.platform,
                container.get("entryPoint"),
                override.get("command") or container.get("command"),
            )
        except images.ImageError as exc:
            self._fail_to_start(arn, exc.reason)
            return
        env = {k: os.environ[k] for k in INHERITED if k in os.environ}
        env.update(image_env)
        env.update({e["name"]: e["value"] for e in container.get("environment") or []})
        env.update({e["name"]: e["value"] for e in override.get("environment") or []})
        try:
            env.update(self._secrets(container.get("secrets") or []))
        except Exception as exc:  # noqa: BLE001 - any failure to read a secret stops the task
            self._fail_to_start(
                arn, f"ResourceInitializationError: unable to pull secrets or registry auth: {exc}"
            )
            return
        awslogs = AwsLogs.from_container(container)
        if awslogs is not None:
            try:
                self.shipper.prepare(awslogs)
            except LogGroupMissing as exc:
                self._fail_to_start(arn, str(exc))
                return
        folder = self.tasks_dir / task_id(arn)
        (folder / "tmp").mkdir(parents=True, exist_ok=True)
        for key, value in self.aws_env.items():
            if key == "AWS_REGION" or key == "AWS_DEFAULT_REGION":
                env.setdefault(key, value)
            else:
                env[key] = value
        env.update(
            {
                "HOME": str(folder),
                "TMPDIR": str(folder / "tmp"),
                "HOST": LOOPBACK,  # nothing a task starts listens beyond the loopback
                "AWS_EXECUTION_ENV": "AWS_ECS_FARGATE",
                "ECS_TASK_ARN": arn,
            }
        )
        address = private_ip(t)
        bindings = []
        mappings = container.get("portMappings") or []
        for i, mapping in enumerate(mappings):
            port = free_port()
            container_port = int(mapping["containerPort"])
            if address is not None:
                self.network.attach(address, container_port, port)
            bindings.append(
                {
                    "bindIP": LOOPBACK,
                    "containerPort": container_port,
                    "hostPort": port,
                    "protocol": mapping.get("protocol", "tcp"),
                }
            )
            if i == 0:
                # The app listens on $PORT: the container port, reachable at its loopback
                # port; a PORT set to anything else listens where nothing routes.
                wanted = env.get("PORT")
                env["PORT"] = str(port if wanted in (None, str(container_port)) else free_port())
        output = folder / "output.log"
        try:
            with output.open("ab") as out:
                process = subprocess.Popen(
                    argv,
                    cwd=folder,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group, stopped as one
                )
        except OSError as exc:
            if address is not None:
                self.network.detach(address)
            self._fail_to_start(arn, f"CannotStartContainerError: {exc}")
            return
        self.registry.add(arn, process.pid, folder)
        stop_timeout = self.settings.timeout(
            float(container.get("stopTimeout") or DEFAULT_STOP_TIMEOUT)
        )
        self._running[arn] = _Running(arn, process, folder, address, stop_timeout)
        if awslogs is not None:
            self.shipper.watch(
                arn, output, awslogs, awslogs.stream(container["name"], task_id(arn))
            )
        now = _now()
        bridge.update_task(
            arn,
            lastStatus="RUNNING",
            pullStoppedAt=now,
            startedAt=now,
            container={
                "lastStatus": "RUNNING",
                "runtimeId": f"{task_id(arn)}-{process.pid}",
                "networkBindings": bindings,
            },
        )
        log.info(
            "task started",
            task=task_id(arn),
            pid=process.pid,
            ports=[b["hostPort"] for b in bindings],
        )

    def _terminate(self, running: _Running) -> None:
        if running.kill_at is None:
            _kill_group(running.process.pid, signal.SIGTERM)
            running.kill_at = time.monotonic() + running.stop_timeout

    def _finished(self, running: _Running, code: int) -> None:
        arn = running.arn
        self._running.pop(arn, None)
        self.registry.remove(arn)
        _kill_group(running.process.pid, signal.SIGKILL)  # whatever it left in its group
        if running.address is not None:
            self.network.detach(running.address)
        self.shipper.finish(arn)
        shutil.rmtree(running.folder / "tmp", ignore_errors=True)
        exit_code = code if code >= 0 else 128 - code  # killed by a signal, as Docker reports
        bridge.task_exited(arn, exit_code)
        log.info("task stopped", task=task_id(arn), exit_code=exit_code)

    def _secrets(self, secrets: list[dict[str, Any]]) -> dict[str, str]:
        out = {}
        for secret in secrets:
            ref = secret["valueFrom"]
            if ":secretsmanager:" in ref:
                value = self.clients("secretsmanager").get_secret_value(SecretId=ref)[
                    "SecretString"
                ]
            else:
                name = ref.split(":parameter", 1)[1] if ":parameter" in ref else ref
                value = self.clients("ssm").get_parameter(Name=name, WithDecryption=True)[
                    "Parameter"
                ]["Value"]
            out[secret["name"]] = value
        return out
