"""Training as an ECS task of the training image: ``mlopsctl train --remote``.

For data that outgrows a laptop. The run has a prefix of its own under the project's
candidates (``Platform.candidates_prefix``, where Terraform's training role may read and
write), ``s3://{bucket}/{project}/candidates/{run}/``: the CLI uploads ``project.yaml`` there,
runs the project's training task definition (family
:func:`mlops_core.naming.training_task_family`) with the command

    mlopsctl train --config s3://.../candidates/{run}/project.yaml
                   --data s3://...  --out s3://.../candidates/{run}/artifacts/

(the training image's ENTRYPOINT is ``mlopsctl train``), follows the task's CloudWatch
Logs, and exits with the container's exit code. The ``artifacts/`` folder is a candidate:
``mlopsctl deploy --candidate`` publishes it after its gates.

The task definition is the one Terraform registers on AWS; where the family has none (the
local data plane), one is registered here with the same container (image from
``MLOPS_TRAINING_IMAGE`` or the platform's training repository at this release).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlops_core import aws
from mlops_core.errors import InvalidInput, MlopsError, NotFound
from mlops_core.naming import Platform
from mlops_core.project import PROJECT_FILE, load_project
from mlops_core.registry import split_s3_uri

CONTAINER_NAME = "training"
STREAM_PREFIX = "training"
TRAINING_IMAGE_ENV = "MLOPS_TRAINING_IMAGE"


class RemoteTrainingFailed(MlopsError):
    """The training task stopped with a non-zero exit code (or never started)."""

    reason = "TrainingFailed"


@dataclass(frozen=True)
class Network:
    """Where the task runs (``MLOPS_SUBNETS``, ``MLOPS_SECURITY_GROUPS``) and as whom
    ECS starts it (``MLOPS_EXECUTION_ROLE_ARN``: with it the task logs to CloudWatch)."""

    subnets: tuple[str, ...]
    security_groups: tuple[str, ...]
    execution_role_arn: str | None = None
    task_role_arn: str | None = None


@dataclass(frozen=True)
class RunResult:
    task_arn: str
    exit_code: int
    candidate: str


def _image(platform: Platform, version: str) -> str:
    ecr = aws.client("ecr")
    try:
        repo = ecr.describe_repositories(repositoryNames=[platform.ecr_training_repository])
    except ecr.exceptions.RepositoryNotFoundException:
        raise NotFound(
            f"no ECR repository {platform.ecr_training_repository!r} for the training image",
            hint=f"set {TRAINING_IMAGE_ENV}, or push the training image (training/Dockerfile)",
        ) from None
    return f"{repo['repositories'][0]['repositoryUri']}:{version}"


def task_definition(
    platform: Platform, project: str, network: Network, *, image: str | None, release: str
) -> str:
    """The family's latest ACTIVE revision, else a new one (what Terraform would make)."""
    ecs = aws.client("ecs")
    family = platform.training_task_family(project)
    try:
        return ecs.describe_task_definition(taskDefinition=family)["taskDefinition"][
            "taskDefinitionArn"
        ]
    except ecs.exceptions.ClientException:
        pass
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": image or _image(platform, release),
        "essential": True,
        "environment": [
            {"name": "MLOPS_PLATFORM", "value": platform.platform},
            {"name": "MLOPS_PROJECT", "value": project},
            {"name": "MLOPS_ARTIFACT_BUCKET", "value": platform.artifact_bucket},
            {"name": "AWS_REGION", "value": platform.region},
            {"name": "AWS_DEFAULT_REGION", "value": platform.region},
            {"name": "MLOPS_LOG_FORMAT", "value": "json"},
        ],
    }
    kwargs: dict[str, Any] = {}
    if network.execution_role_arn:
        kwargs["executionRoleArn"] = network.execution_role_arn
        container["logConfiguration"] = {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": platform.training_log_group(project),
                "awslogs-region": platform.region,
                "awslogs-stream-prefix": STREAM_PREFIX,
                "awslogs-create-group": "true",
            },
        }
    if network.task_role_arn:
        kwargs["taskRoleArn"] = network.task_role_arn
    return ecs.register_task_definition(
        family=family,
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="2048",
        memory="8192",
        runtimePlatform={"operatingSystemFamily": "LINUX", "cpuArchitecture": "X86_64"},
        containerDefinitions=[container],
        **kwargs,
    )["taskDefinition"]["taskDefinitionArn"]


def run(
    project_dir: Path,
    data: str | None,
    platform: Platform,
    network: Network,
    *,
    image: str | None,
    release: str,
    echo: Callable[[str], None],
    poll: float = 1.0,
    timeout: float = 3600.0,
) -> RunResult:
    """Run training as a task, echo its log lines, return its exit code and candidate."""
    config = load_project(project_dir)
    source = data or config.data.source
    if not source.startswith("s3://"):
        raise InvalidInput(
            f"remote training reads its data from S3, not {source!r}",
            where="--data" if data else f"{project_dir / PROJECT_FILE}: data.source",
            hint="upload the CSV (aws s3 cp data.csv s3://BUCKET/KEY) and pass --data s3://...",
        )
    split_s3_uri(source)  # a malformed URI fails here, not in the task
    if not network.subnets:
        raise InvalidInput(
            "no subnets to run the training task in",
            where="MLOPS_SUBNETS",
            hint="set MLOPS_SUBNETS and MLOPS_SECURITY_GROUPS (Terraform's controller_environment; "
            "'mlopsctl dev up' exports them)",
        )
    run_id = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
    prefix = f"{platform.candidates_prefix(config.name)}{run_id}/"
    base = f"s3://{platform.artifact_bucket}/{prefix}"
    aws.client("s3").put_object(
        Bucket=platform.artifact_bucket,
        Key=prefix + PROJECT_FILE,
        Body=(project_dir / PROJECT_FILE).read_bytes(),
        IfNoneMatch="*",
    )
    candidate = f"{base}artifacts/"
    td = task_definition(platform, config.name, network, image=image, release=release)
    ecs = aws.client("ecs")
    command = ["--config", f"{base}{PROJECT_FILE}", "--data", source, "--out", candidate]
    started = ecs.run_task(
        cluster=platform.ecs_cluster,
        taskDefinition=td,
        launchType="FARGATE",
        startedBy=f"mlopsctl-train/{run_id}"[:36],
        networkConfiguration={
            "awsvpcConfiguration": {
                "subnets": list(network.subnets),
                "securityGroups": list(network.security_groups),
                "assignPublicIp": "DISABLED",
            }
        },
        overrides={"containerOverrides": [{"name": CONTAINER_NAME, "command": command}]},
    )
    if started.get("failures") or not started.get("tasks"):
        raise RemoteTrainingFailed(
            f"ECS did not start the training task: {started.get('failures')}"
        )
    task_arn = started["tasks"][0]["taskArn"]
    echo(f"training task {task_arn.rpartition('/')[2]} of {td.rpartition('/')[2]} started")
    task = _follow(platform, config.name, td, task_arn, echo, poll, timeout)
    container = task["containers"][0]
    code = container.get("exitCode")
    if code is None:
        raise RemoteTrainingFailed(
            f"the training task stopped before its container ran: {task.get('stoppedReason')}",
            where=task_arn,
        )
    if code != 0:
        error = RemoteTrainingFailed(
            f"the training task exited with code {code} ({task.get('stoppedReason')})",
            where=task_arn,
            hint="its log lines are above; nothing was written as a candidate",
        )
        error.exit_code = int(code)
        raise error
    return RunResult(task_arn, 0, candidate)


def _follow(
    platform: Platform,
    project: str,
    td: str,
    task_arn: str,
    echo: Callable[[str], None],
    poll: float,
    timeout: float,
) -> dict[str, Any]:
    """Wait for the task to stop, echoing its CloudWatch log lines as they arrive."""
    ecs = aws.client("ecs")
    logs = aws.client("logs")
    container = ecs.describe_task_definition(taskDefinition=td)["taskDefinition"][
        "containerDefinitions"
    ][0]
    options = (container.get("logConfiguration") or {}).get("options") or {}
    group = options.get("awslogs-group")
    stream = (
        f"{options.get('awslogs-stream-prefix')}/{container['name']}/{task_arn.rpartition('/')[2]}"
    )
    token: str | None = None
    deadline = time.monotonic() + timeout

    def drain() -> None:
        nonlocal token
        if not group:
            return
        while True:
            kwargs: dict[str, Any] = {
                "logGroupName": group,
                "logStreamName": stream,
                "startFromHead": True,
            }
            if token:
                kwargs["nextToken"] = token
            try:
                page = logs.get_log_events(**kwargs)
            except logs.exceptions.ResourceNotFoundException:
                return  # no output yet
            for event in page["events"]:
                echo(event["message"])
            if page.get("nextForwardToken") in (None, token):
                return
            token = page["nextForwardToken"]

    while True:
        (task,) = ecs.describe_tasks(cluster=platform.ecs_cluster, tasks=[task_arn])["tasks"]
        drain()
        if task["lastStatus"] == "STOPPED":
            time.sleep(poll)  # the last lines reach CloudWatch just after the stop
            drain()
            return task
        if time.monotonic() > deadline:
            raise RemoteTrainingFailed(
                f"the training task did not finish within {timeout:.0f}s", where=task_arn
            )
        time.sleep(poll)
