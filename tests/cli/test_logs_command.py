"""`mlopsctl logs`: the group and stream prefix come from the live service's task
definition (awslogs); events are written to the local CloudWatch Logs the way ECS's
awslogs driver names them, ``{prefix}/{container}/{task id}``."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta

import pytest
from factories import make_artifacts, project_config

from controller.api import ModelDeployment
from controller.plan import NetworkConfig
from controller.reconcile import Reconciler
from mlops_core import aws
from mlops_core.cost.prices import PriceResolver
from mlops_core.registry import Registry
from mlopsctl.cli import main
from mlopsctl.cmd_logs import tail, targets

PROJECT = "usedcar-price"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlops/serving:0.1.0"
EXECUTION_ROLE = "arn:aws:iam::123456789012:role/mlops-task-execution"
TASK_A = "0f3c6e1b2a9d4c8e8b7a6f5e4d3c2b1a"
TASK_B = "9a8b7c6d5e4f40312a1b2c3d4e5f6a7b"


def deploy(platform, network_env, tmp_path, *, execution_role: str | None = EXECUTION_ROLE):
    registry = Registry(platform)
    registry.register_project(project_config())
    make_artifacts(tmp_path / "v1", seed=1)
    version = registry.publish(tmp_path / "v1").version
    deployment = ModelDeployment.model_validate(
        {
            "metadata": {"name": "usedcar-price-prod", "generation": 1},
            "spec": {
                "project": PROJECT,
                "env": "prod",
                "model": {"version": version},
                "serving": {"image": IMAGE, "cpu": 256, "memory": 512},
            },
        }
    )
    network = NetworkConfig(
        subnets=tuple(network_env["MLOPS_SUBNETS"].split(",")),
        security_groups=(network_env["MLOPS_SECURITY_GROUPS"],),
        execution_role_arn=execution_role,
    )
    result = Reconciler(platform, network=network, prices=PriceResolver("table")).reconcile(
        deployment, None
    )
    assert not result.degraded, result.status


def write(platform, task: str, *messages: str, ago: timedelta = timedelta(seconds=5), stream=None):
    """Events as the awslogs driver ships them for the serving container of ``task``."""
    logs = aws.client("logs")
    group = platform.log_group(PROJECT, "prod")
    stream = stream or f"serving/serving/{task}"
    with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
        logs.create_log_group(logGroupName=group)
    with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
        logs.create_log_stream(logGroupName=group, logStreamName=stream)
    base = int((datetime.now(UTC) - ago).timestamp() * 1000)
    logs.put_log_events(
        logGroupName=group,
        logStreamName=stream,
        logEvents=[{"timestamp": base + n, "message": m} for n, m in enumerate(messages)],
    )


@pytest.fixture
def served(platform, network_env, tmp_path):
    deploy(platform, network_env, tmp_path)
    return platform


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["logs", "--project", PROJECT, *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_targets_come_from_the_task_definitions_awslogs_options(served):
    (target,) = targets(served, PROJECT, "prod")
    assert target.group == "/ecs/mlops/usedcar-price-prod"
    assert (target.stream_prefix, target.container) == ("serving", "serving")
    assert target.streams == "serving/serving/"


def test_logs_prints_every_task_in_time_order_within_since(served, capsys):
    write(served, TASK_A, "starting", "ready", ago=timedelta(seconds=30))
    write(served, TASK_B, "request 1", ago=timedelta(seconds=20))
    write(served, TASK_A, "too old", ago=timedelta(hours=2))
    # Another container's (or job's) stream in the same group is not this service's.
    write(served, "x", "not ours", stream="drift/drift/x")
    code, out, err = run(capsys, "--env", "prod", "--since", "10m")
    assert code == 0, err
    lines = out.splitlines()
    assert [line.split(" ", 2)[2] for line in lines] == ["starting", "ready", "request 1"]
    assert lines[0].split(" ")[1] == f"serving/{TASK_A[:12]}"
    assert lines[2].split(" ")[1] == f"serving/{TASK_B[:12]}"
    code, out, err = run(capsys, "--env", "prod", "--since", "3h", "-o", "json")
    docs = [json.loads(x) for x in out.splitlines()]
    assert [d["message"] for d in docs] == ["too old", "starting", "ready", "request 1"]
    assert docs[0]["task"] == TASK_A and docs[0]["stream"] == f"serving/serving/{TASK_A}"


def test_follow_prints_new_events_once_each(served):
    write(served, TASK_A, "first", ago=timedelta(seconds=10))
    (target,) = targets(served, PROJECT, "prod")
    seen: list[str] = []
    polls = []

    def stop() -> bool:
        polls.append(1)
        if len(polls) == 1:  # between the first and the second poll, a task writes more
            write(served, TASK_B, "second", ago=timedelta(seconds=1))
        return len(polls) >= 3

    start = int((datetime.now(UTC) - timedelta(minutes=1)).timestamp() * 1000)
    count = tail([target], start, seen.append, follow=True, interval=0.05, stop=stop)
    assert count == 2
    assert [line.rsplit(" ", 1)[1] for line in seen] == ["first", "second"]


def test_no_service_is_not_found(platform, capsys):
    Registry(platform).register_project(project_config())
    code, out, err = run(capsys, "--env", "prod")
    assert code == 3, out + err
    assert "no ECS service usedcar-price-prod" in err


def test_a_revision_without_awslogs_says_how_to_get_logs(platform, network_env, tmp_path, capsys):
    deploy(platform, network_env, tmp_path, execution_role=None)
    code, out, err = run(capsys, "--env", "prod")
    assert code == 3, out + err
    assert "no awslogs log configuration" in err
    assert "MLOPS_EXECUTION_ROLE_ARN" in err


def test_bad_since_is_exit_2(platform, capsys):
    code, out, err = run(capsys, "--env", "prod", "--since", "yesterday")
    assert code == 2 and "not a duration" in err


def test_the_group_may_not_exist_before_the_first_output(served, capsys):
    code, out, err = run(capsys, "--env", "prod")
    assert code == 0, err
    assert out == ""
