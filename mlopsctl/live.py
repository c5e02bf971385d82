"""What ECS runs for an env, read for the CLI's views (``cost``, ``logs``): the service
and the raw task definitions of its deployments, with their ``awslogs`` settings.

The controller's own reads (``controller.observe``) parse only what it pins; these views
need the rest of a revision (task size, CPU architecture, log configuration), whoever
registered it (Terraform's first revision too).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mlops_core import aws
from mlops_core.naming import Platform

ACTIVE = "ACTIVE"


@dataclass(frozen=True)
class LogTarget:
    """Where one container's output goes: ECS names each task's stream
    ``{stream prefix}/{container}/{task id}`` in the group."""

    group: str
    stream_prefix: str  # the awslogs-stream-prefix
    container: str
    region: str | None

    @property
    def streams(self) -> str:
        """The prefix every stream of this container starts with."""
        return f"{self.stream_prefix}/{self.container}/"


@dataclass(frozen=True)
class LiveService:
    name: str
    arn: str
    desired_count: int
    running_count: int
    task_definition: dict[str, Any]  # the service's current revision
    revisions: tuple[dict[str, Any], ...]  # of every deployment, current first
    #: When ECS created the service (None: not reported).
    created_at: datetime | None = None
    #: The service is attached to a target group (of the env's load balancer).
    load_balanced: bool = False

    @property
    def cpu(self) -> int:
        return int(self.task_definition.get("cpu") or 0)

    @property
    def memory(self) -> int:
        return int(self.task_definition.get("memory") or 0)

    @property
    def architecture(self) -> str:
        platform = self.task_definition.get("runtimePlatform") or {}
        return platform.get("cpuArchitecture") or "X86_64"

    def environment(self, name: str) -> str | None:
        """An environment variable of the revision's first container that sets it."""
        for c in self.task_definition.get("containerDefinitions", []):
            for pair in c.get("environment", []):
                if pair.get("name") == name:
                    return pair.get("value")
        return None


def log_targets(task_definition: dict[str, Any]) -> list[LogTarget]:
    """The ``awslogs`` destinations of a task definition's containers."""
    out = []
    for c in task_definition.get("containerDefinitions", []):
        config = c.get("logConfiguration") or {}
        options = config.get("options") or {}
        if config.get("logDriver") != "awslogs" or "awslogs-group" not in options:
            continue
        # Without a stream prefix ECS names streams by task id alone; the platform always
        # sets one (its task definitions and Terraform's).
        out.append(
            LogTarget(
                group=options["awslogs-group"],
                stream_prefix=options.get("awslogs-stream-prefix", ""),
                container=c["name"],
                region=options.get("awslogs-region"),
            )
        )
    return out


def live_service(platform: Platform, project: str, env: str) -> LiveService | None:
    """The env's ACTIVE ECS service and its revisions; None if there is none."""
    ecs = aws.client("ecs")
    name = platform.service_name(project, env)
    try:
        page = ecs.describe_services(cluster=platform.ecs_cluster, services=[name])
    except ecs.exceptions.ClusterNotFoundException:
        return None
    svc = next((s for s in page.get("services", []) if s.get("status") == ACTIVE), None)
    if svc is None:
        return None
    arns = [svc["taskDefinition"]]
    arns += [d["taskDefinition"] for d in svc.get("deployments", []) if d["taskDefinition"]]
    revisions = []
    for arn in dict.fromkeys(arns):  # distinct, in order
        try:
            revisions.append(ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"])
        except ecs.exceptions.ClientException:
            continue  # deregistered and gone
    current = revisions[0] if revisions and revisions[0]["taskDefinitionArn"] == arns[0] else {}
    return LiveService(
        name=name,
        arn=svc["serviceArn"],
        desired_count=int(svc.get("desiredCount") or 0),
        running_count=int(svc.get("runningCount") or 0),
        task_definition=current,
        revisions=tuple(revisions),
        created_at=created if isinstance(created := svc.get("createdAt"), datetime) else None,
        load_balanced=any(lb.get("targetGroupArn") for lb in svc.get("loadBalancers") or []),
    )
