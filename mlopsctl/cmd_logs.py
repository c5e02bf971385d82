"""``mlopsctl logs``: an env's task output, read from CloudWatch Logs.

The same command on AWS and locally: the log group and stream prefix come from the live
service's task definitions (their ``awslogs`` options), and ECS names each task's stream
``{prefix}/{container}/{task id}``, so one ``FilterLogEvents`` per container (stream name
prefix ``{prefix}/{container}/``) reads every task of the service, old revisions'
included while they drain. ``--follow`` polls for newer events, as ``aws logs tail``
does.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

import typer

from mlops_core import aws
from mlops_core.errors import NotFound
from mlops_core.naming import Platform
from mlopsctl import context
from mlopsctl.context import PROJECT_DIR_HELP, PROJECT_HELP, parse_duration
from mlopsctl.context import project_name as resolve_project
from mlopsctl.live import LogTarget, live_service, log_targets


class LogFormat(StrEnum):
    """Events are a stream, not a state: lines of text, or one JSON object per line."""

    text = "text"
    json = "json"


def targets(platform: Platform, project: str, env: str) -> list[LogTarget]:
    """Where the env's service sends its output, over all of its revisions."""
    live = live_service(platform, project, env)
    name = platform.service_name(project, env)
    if live is None:
        raise NotFound(
            f"no ECS service {name} in cluster {platform.ecs_cluster}",
            hint=f"deploy it first ('mlopsctl deploy --env {env}')",
        )
    found = list(dict.fromkeys(t for td in live.revisions for t in log_targets(td)))
    if not found:
        revision = live.task_definition.get("taskDefinitionArn", name).rpartition("/")[2]
        raise NotFound(
            f"the task definition {revision} of {name} sends no output to CloudWatch Logs "
            "(no awslogs log configuration)",
            hint="the controller adds one when it runs with MLOPS_EXECUTION_ROLE_ARN set "
            "(Terraform's controller_environment output)",
        )
    return found


def events(target: LogTarget, start_ms: int) -> Iterator[dict]:
    """Every event of the target's streams from ``start_ms`` on (all pages)."""
    logs = aws.client("logs", region=target.region)
    streams = target.streams
    kwargs = {
        "logGroupName": target.group,
        "logStreamNamePrefix": streams,
        "startTime": start_ms,
    }
    while True:
        try:
            page = logs.filter_log_events(**kwargs)
        except logs.exceptions.ResourceNotFoundException:
            return  # the group appears with the first task's output
        # The local endpoint (moto 5.2) ignores logStreamNamePrefix: check it here too.
        yield from (e for e in page.get("events", []) if e["logStreamName"].startswith(streams))
        token = page.get("nextToken")
        if not token:
            return
        kwargs["nextToken"] = token


def _line(target: LogTarget, event: dict, output: str) -> str:
    stamp = datetime.fromtimestamp(event["timestamp"] / 1000, tz=UTC)
    task = event["logStreamName"].removeprefix(target.streams)
    if output == "json":
        return json.dumps(
            {
                "timestamp": stamp.isoformat(timespec="milliseconds"),
                "container": target.container,
                "task": task,
                "stream": event["logStreamName"],
                "message": event["message"],
            }
        )
    return (
        f"{stamp:%Y-%m-%dT%H:%M:%S.%f}"[:-3]
        + f"Z {target.container}/{task[:12]} "
        + (event["message"].rstrip("\n"))
    )


def tail(
    found: list[LogTarget],
    start_ms: int,
    emit: Callable[[str], None],
    *,
    output: str = "text",
    follow: bool = False,
    interval: float = 2.0,
    stop: Callable[[], bool] = lambda: False,
) -> int:
    """Emit the events from ``start_ms`` in time order, then (``follow``) newer ones as
    they arrive. Returns how many were emitted."""
    seen: set[str] = set()  # event ids at the newest timestamp, which the next poll repeats
    count = 0
    while True:
        batch = [(e["timestamp"], e["eventId"], t, e) for t in found for e in events(t, start_ms)]
        batch.sort(key=lambda x: (x[0], x[1]))
        for stamp, event_id, target, event in batch:
            if event_id in seen:
                continue
            emit(_line(target, event, output))
            count += 1
            if stamp > start_ms:
                start_ms, seen = stamp, set()
            seen.add(event_id)
        if not follow or stop():
            return count
        time.sleep(interval)


def logs(
    env: str = typer.Option(..., "--env", "-e", help="Environment, e.g. prod."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new output."),
    since: str = typer.Option("10m", help="How far back to start: 90s, 10m, 12h, 2d."),
    project: str = typer.Option(None, "--project", "-p", help=PROJECT_HELP),
    project_dir_: Path = typer.Option(None, "--project-dir", help=PROJECT_DIR_HELP),
    output: LogFormat = typer.Option(
        LogFormat.text, "--output", "-o", help="text, or json (one object per line)."
    ),
    interval: float = typer.Option(2.0, help="With --follow: seconds between polls.", min=0.1),
) -> None:
    """The output of ENV's serving tasks, from CloudWatch Logs (on AWS and locally)."""
    window = parse_duration(since)
    name = resolve_project(project, project_dir_)
    found = targets(context.platform(), name, env)
    start_ms = int((datetime.now(UTC) - window).timestamp() * 1000)
    try:
        tail(found, start_ms, typer.echo, output=output, follow=follow, interval=interval)
    except KeyboardInterrupt:
        return
