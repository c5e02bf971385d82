"""Tasks that fail as real ones do: each shows in DescribeTasks/DescribeServices as on ECS,
and the load balancer never sends it traffic."""

from __future__ import annotations

import httpx
import pytest
from conftest import wait_for


def _failed_first_deployment(env, name: str, td: str) -> tuple[dict, list[dict]]:
    """Run ``td`` as a new service behind the load balancer until its circuit breaker
    fails the (first, so not rolled back) deployment; the deployment and stopped tasks."""
    group = env.load_balancer()
    env.service(name, td, target_group=group)
    failed = env.wait_rollout(name, "FAILED", timeout=90)
    stopped = env.tasks(name, status="STOPPED")
    return failed, stopped


@pytest.mark.parametrize(
    ("fault", "settings", "stop_code", "reason"),
    [
        (
            "crash on start",
            {"EXIT_AT_START": "3"},
            "EssentialContainerExited",
            "Essential container in task exited",
        ),
        (
            "never healthy",
            {"READY": "503"},
            "ServiceSchedulerInitiated",
            "Task failed ELB health checks in (target-group ",
        ),
        (
            "wrong port",
            {"PORT": "9090"},
            "ServiceSchedulerInitiated",
            "Task failed ELB health checks in (target-group ",
        ),
    ],
)
def test_a_failing_task_fails_its_deployment_and_gets_no_traffic(
    env, fault, settings, stop_code, reason
):
    td = env.register("demo-prod", VERSION="broken", **settings)
    failed, stopped = _failed_first_deployment(env, "demo-prod", td)
    assert failed["rolloutStateReason"] == "ECS deployment circuit breaker: tasks failed to start."
    assert failed["failedTasks"] >= 3
    assert len(stopped) >= 3
    for task in stopped:
        assert task["stopCode"] == stop_code, task
        assert task["stoppedReason"].startswith(reason), task
        if fault == "crash on start":
            assert task["containers"][0]["exitCode"] == 3
    # No rollback without a completed deployment: the failed one stays, launching nothing.
    svc = env.describe("demo-prod")
    assert [d["rolloutState"] for d in svc["deployments"]] == ["FAILED"]
    wait_for(lambda: not env.tasks("demo-prod"), what="the failed tasks to stop")
    # The load balancer never had a healthy target: 503, as an ALB answers.
    r = httpx.get(f"{env.url()}/", timeout=10)
    assert r.status_code == 503 and b"503 Service Temporarily Unavailable" in r.content
    assert r.headers["server"] == "awselb/2.0"


def test_an_image_that_cannot_be_pulled_stops_with_ecs_reason(env):
    td = env.register("demo-prod", image="docker.io/library/nginx:1.27", app=False)
    env.service("demo-prod", td, count=1)
    failed = env.wait_rollout("demo-prod", "FAILED", timeout=60)
    assert failed["failedTasks"] >= 3
    (task, *_) = env.tasks("demo-prod", status="STOPPED")
    assert task["stopCode"] == "TaskFailedToStart"
    assert task["stoppedReason"].startswith(
        "CannotPullContainerError: pull image manifest has been retried 1 time(s): failed to "
        "resolve ref docker.io/library/nginx:1.27"
    )
    assert task["containers"][0]["reason"] == task["stoppedReason"]
    assert "exitCode" not in task["containers"][0]


def test_a_command_the_image_lacks_cannot_start(env):
    arn = env.ecs().register_task_definition(
        family="demo-job",
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="256",
        memory="512",
        containerDefinitions=[
            {"name": "job", "image": "mlops/serving:1", "command": ["bash", "-c", "true"]}
        ],
    )["taskDefinition"]["taskDefinitionArn"]
    (task,) = env.ecs().run_task(
        cluster=env.platform.ecs_cluster,
        taskDefinition=arn,
        launchType="FARGATE",
        networkConfiguration=env.network,
    )["tasks"]
    assert task["lastStatus"] == "PROVISIONING" and task["desiredStatus"] == "RUNNING"
    stopped = wait_for(
        lambda: [t for t in env.tasks(status="STOPPED") if t["lastStatus"] == "STOPPED"],
        what="the task to stop",
    )
    assert stopped[0]["stopCode"] == "TaskFailedToStart"
    assert 'exec: "bash": executable file not found in $PATH' in stopped[0]["stoppedReason"]
