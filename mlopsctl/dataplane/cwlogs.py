"""Task output to CloudWatch Logs, as the ``awslogs`` log driver sends it.

Each task's stdout and stderr go to a file in its folder (so a slow shipper never blocks
the task, and nothing is lost if the data plane restarts); this shipper tails the files
and sends complete lines with ``PutLogEvents`` to the group and stream the task
definition's ``logConfiguration`` names: stream ``{awslogs-stream-prefix}/{container
name}/{task id}``, as ECS names it, and the group created first when
``awslogs-create-group`` is ``true``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from mlops_core.logs import get_logger
from mlopsctl.dataplane.clients import Clients

log = get_logger("dataplane.logs")

MAX_BATCH_EVENTS = 10_000
MAX_BATCH_BYTES = 1_000_000
MAX_EVENT_BYTES = 256 * 1024 - 26  # CloudWatch's limit, less its per-event overhead


@dataclass(frozen=True)
class AwsLogs:
    """A container's ``awslogs`` options."""

    group: str
    region: str | None
    stream_prefix: str | None
    create_group: bool

    @classmethod
    def from_container(cls, container: dict) -> AwsLogs | None:
        config = container.get("logConfiguration") or {}
        if config.get("logDriver") != "awslogs":
            return None
        options = config.get("options") or {}
        group = options.get("awslogs-group")
        if not group:
            return None
        return cls(
            group=group,
            region=options.get("awslogs-region"),
            stream_prefix=options.get("awslogs-stream-prefix"),
            create_group=str(options.get("awslogs-create-group", "")).lower() == "true",
        )

    def stream(self, container_name: str, task_id: str) -> str:
        if self.stream_prefix:
            return f"{self.stream_prefix}/{container_name}/{task_id}"
        return task_id


class LogGroupMissing(Exception):
    pass


@dataclass
class _Watched:
    path: Path
    target: AwsLogs
    stream: str
    offset: int = 0
    partial: bytes = b""
    done: bool = False
    created: bool = False


class LogShipper:
    def __init__(self, clients: Clients, flush_seconds: float):
        self.clients = clients
        self.flush_seconds = flush_seconds
        self._lock = threading.Lock()
        self._watched: dict[str, _Watched] = {}

    def prepare(self, target: AwsLogs) -> None:
        """Check (or create) the log group before the task starts, as ECS does; raises
        :class:`LogGroupMissing` with ECS's reason when it can do neither."""
        logs = self.clients("logs", target.region)
        groups = logs.describe_log_groups(logGroupNamePrefix=target.group)["logGroups"]
        if any(g["logGroupName"] == target.group for g in groups):
            return
        if not target.create_group:
            raise LogGroupMissing(
                "ResourceInitializationError: failed to validate logger args: "
                f"The specified log group does not exist. : {target.group}"
            )
        with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
            logs.create_log_group(logGroupName=target.group)

    def watch(self, key: str, path: Path, target: AwsLogs, stream: str) -> None:
        with self._lock:
            self._watched[key] = _Watched(path, target, stream)

    def finish(self, key: str) -> None:
        """The task stopped: send what is left, then stop watching."""
        with self._lock:
            watched = self._watched.get(key)
            if watched is not None:
                watched.done = True

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self.flush_seconds):
            self.flush()
        for w in list(self._watched.values()):
            w.done = True
        self.flush()

    def flush(self) -> None:
        with self._lock:
            items = list(self._watched.items())
        for key, w in items:
            try:
                self._ship(w)
            except Exception as exc:  # noqa: BLE001 - logs are best effort; the task goes on
                log.warning("cannot ship task output", stream=w.stream, error=str(exc))
            if w.done:
                with self._lock:
                    self._watched.pop(key, None)

    def _ship(self, w: _Watched) -> None:
        try:
            with w.path.open("rb") as f:
                f.seek(w.offset)
                data = f.read()
        except FileNotFoundError:
            return
        w.offset += len(data)
        data = w.partial + data
        lines = data.split(b"\n")
        w.partial = lines.pop()
        if w.done and w.partial:
            lines.append(w.partial)
            w.partial = b""
        if not lines:
            return
        logs = self.clients("logs", w.target.region)
        if not w.created:
            with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
                logs.create_log_stream(logGroupName=w.target.group, logStreamName=w.stream)
            w.created = True
        now = int(time.time() * 1000)
        batch: list[dict] = []
        size = 0
        for raw in lines:
            message = raw[:MAX_EVENT_BYTES].decode("utf-8", errors="replace").rstrip("\r")
            if not message:
                continue
            cost = len(message.encode()) + 26
            if batch and (len(batch) >= MAX_BATCH_EVENTS or size + cost > MAX_BATCH_BYTES):
                self._put(logs, w, batch)
                batch, size = [], 0
            batch.append({"timestamp": now, "message": message})
            size += cost
        if batch:
            self._put(logs, w, batch)

    @staticmethod
    def _put(logs, w: _Watched, batch: list[dict]) -> None:
        logs.put_log_events(logGroupName=w.target.group, logStreamName=w.stream, logEvents=batch)
