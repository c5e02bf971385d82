"""Standalone tasks (RunTask): exit codes, stoppedReason and logs in CloudWatch, as ECS
reports them."""

from __future__ import annotations

import pytest
from conftest import APP, IMAGE, wait_for

from mlops_core import aws


def _job(env, command: list[str], *, awslogs: dict | None = None, **extra) -> str:
    container = {"name": "job", "image": IMAGE, "essential": True, "command": command, **extra}
    if awslogs is not None:
        container["logConfiguration"] = {"logDriver": "awslogs", "options": awslogs}
    return env.ecs().register_task_definition(
        family="demo-job",
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="256",
        memory="512",
        containerDefinitions=[container],
    )["taskDefinition"]["taskDefinitionArn"]


def _run(env, td: str, **kwargs) -> dict:
    (task,) = env.ecs().run_task(
        cluster=env.platform.ecs_cluster,
        taskDefinition=td,
        launchType="FARGATE",
        networkConfiguration=env.network,
        **kwargs,
    )["tasks"]
    return task


def _events(group: str, stream: str) -> list[dict]:
    logs = aws.client("logs")
    try:
        return logs.get_log_events(logGroupName=group, logStreamName=stream)["events"]
    except logs.exceptions.ResourceNotFoundException:
        return []  # not created yet


def _stopped(env, arn: str) -> dict:
    def done():
        (t,) = env.ecs().describe_tasks(cluster=env.platform.ecs_cluster, tasks=[arn])["tasks"]
        return t if t["lastStatus"] == "STOPPED" else None

    return wait_for(done, 60, "the task to stop")


LOGS = {
    "awslogs-group": "/ecs/mlops/demo-job",
    "awslogs-region": "us-east-1",
    "awslogs-stream-prefix": "demo",
    "awslogs-create-group": "true",
}


@pytest.mark.parametrize("code", [0, 7])
def test_run_task_reports_the_exit_code_and_sends_output_to_cloudwatch(env, code):
    script = (
        "import sys; print('hello from the job'); print('to stderr', file=sys.stderr); "
        f"sys.exit({code})"
    )
    td = _job(env, ["python", "-c", script], awslogs=LOGS)
    task = _run(env, td, startedBy="test")
    assert (task["lastStatus"], task["desiredStatus"]) == ("PROVISIONING", "RUNNING")
    assert task["group"] == "family:demo-job" and task["startedBy"] == "test"
    done = _stopped(env, task["taskArn"])
    assert done["containers"][0]["exitCode"] == code
    assert done["stopCode"] == "EssentialContainerExited"
    assert done["stoppedReason"] == "Essential container in task exited"
    assert done["startedAt"] <= done["stoppedAt"]
    task_id = task["taskArn"].rpartition("/")[2]
    # ECS's stream name: prefix/container/task id.
    stream = f"demo/job/{task_id}"
    events = wait_for(
        lambda: len(got := _events(LOGS["awslogs-group"], stream)) >= 2 and got,
        what="the task's output in CloudWatch Logs",
    )
    assert [e["message"] for e in events] == ["hello from the job", "to stderr"]


def test_overrides_secrets_and_stop_task(env):
    aws.client("ssm").put_parameter(Name="/demo/token", Value="s3cr3t", Type="SecureString")
    td = _job(
        env,
        ["python", "-c", "print('never')"],
        awslogs=LOGS,
        secrets=[{"name": "TOKEN", "valueFrom": "/demo/token"}],
    )
    script = (
        "import os, time; print(os.environ['GREETING'], os.environ['TOKEN'], flush=True); "
        "time.sleep(60)"
    )
    task = _run(
        env,
        td,
        overrides={
            "containerOverrides": [
                {
                    "name": "job",
                    "command": ["python", "-c", script],
                    "environment": [{"name": "GREETING", "value": "hi"}],
                }
            ]
        },
    )
    stream = f"demo/job/{task['taskArn'].rpartition('/')[2]}"
    wait_for(
        lambda: any(e["message"] == "hi s3cr3t" for e in _events(LOGS["awslogs-group"], stream)),
        what="the overridden command's output",
    )
    stopping = env.ecs().stop_task(
        cluster=env.platform.ecs_cluster, task=task["taskArn"], reason="enough"
    )["task"]
    assert stopping["desiredStatus"] == "STOPPED" and stopping["lastStatus"] != "STOPPED"
    done = _stopped(env, task["taskArn"])
    assert (done["stopCode"], done["stoppedReason"]) == ("UserInitiated", "enough")
    assert done["containers"][0]["exitCode"] == 143  # SIGTERM, as Docker reports it


def test_a_missing_log_group_stops_the_task_before_it_starts(env):
    td = _job(
        env,
        ["python", "-c", APP],
        awslogs={**LOGS, "awslogs-create-group": "false", "awslogs-group": "/nope"},
    )
    done = _stopped(env, _run(env, td)["taskArn"])
    assert done["stopCode"] == "TaskFailedToStart"
    assert done["stoppedReason"].startswith(
        "ResourceInitializationError: failed to validate logger args: "
        "The specified log group does not exist."
    )


def test_run_task_refuses_what_ecs_refuses(env):
    from botocore.exceptions import ClientError

    td = _job(env, ["python", "-c", "pass"])
    ecs = env.ecs()
    with pytest.raises(ClientError) as no_network:
        ecs.run_task(cluster=env.platform.ecs_cluster, taskDefinition=td, launchType="FARGATE")
    assert no_network.value.response["Error"]["Code"] == "InvalidParameterException"
    assert "Network Configuration must be provided" in str(no_network.value)
    with pytest.raises(ecs.exceptions.ClusterNotFoundException):
        ecs.run_task(cluster="nope", taskDefinition=td, networkConfiguration=env.network)
    with pytest.raises(ClientError, match="count must be between 1 and 10"):
        ecs.run_task(
            cluster=env.platform.ecs_cluster,
            taskDefinition=td,
            count=11,
            networkConfiguration=env.network,
        )
