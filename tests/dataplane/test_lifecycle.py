"""``mlopsctl dev up|down`` with the data plane, as a user runs it: nothing it starts
listens beyond 127.0.0.1, ``down`` stops every task, ``up`` after a crash stops orphans."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import boto3
import psutil
import pytest
from conftest import APP, FAST, IMAGE, alive, wait_for

from mlopsctl import local_aws

MLOPSCTL = [sys.executable, "-m", "mlopsctl.cli"]


def _cli(args, env) -> subprocess.CompletedProcess:
    # dev up starts two servers and bootstraps the base resources: minutes on a loaded
    # 2-core machine.
    return subprocess.run([*MLOPSCTL, *args], env=env, capture_output=True, text=True, timeout=300)


def _exports(stdout: str) -> dict[str, str]:
    return dict(line.removeprefix("export ").split("=", 1) for line in stdout.splitlines())


def _ecs(exports: dict[str, str]):
    return boto3.client(
        "ecs",
        endpoint_url=exports["AWS_ENDPOINT_URL"],
        region_name=exports["AWS_REGION"],
        aws_access_key_id=exports["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=exports["AWS_SECRET_ACCESS_KEY"],
    )


def _start_task(ecs, exports) -> str:
    td = ecs.register_task_definition(
        family="demo-job",
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="256",
        memory="512",
        containerDefinitions=[
            {
                "name": "app",
                "image": IMAGE,
                "command": ["python", "-c", APP],
                "portMappings": [{"containerPort": 8080}],
            }
        ],
    )["taskDefinition"]["taskDefinitionArn"]
    (task,) = ecs.run_task(
        cluster="mlops",
        taskDefinition=td,
        networkConfiguration={
            "awsvpcConfiguration": {
                "subnets": exports["MLOPS_SUBNETS"].split(","),
                "securityGroups": [exports["MLOPS_SECURITY_GROUPS"]],
            }
        },
    )["tasks"]
    return task["taskArn"]


def _task_pid(ecs, arn: str) -> int:
    def running():
        (t,) = ecs.describe_tasks(cluster="mlops", tasks=[arn])["tasks"]
        return t if t["lastStatus"] == "RUNNING" else None

    task = wait_for(running, 30, "the task to run")
    runtime = task["containers"][0]["runtimeId"]  # {task id}-{pid}
    return int(runtime.rpartition("-")[2])


@pytest.mark.timeout(900)
def test_dev_up_runs_tasks_on_loopback_down_stops_them_up_reaps_orphans(tmp_path):
    port = local_aws.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLOPS_"))}
    env.update(FAST, MLOPS_STATE_DIR=str(tmp_path / "state"))
    up = _cli(["dev", "up", "--port", str(port)], env)
    assert up.returncode == 0, up.stderr
    exports = _exports(up.stdout)
    assert exports["MLOPS_LOAD_BALANCERS"] == "managed"
    assert exports["MLOPS_EXECUTION_ROLE_ARN"].endswith(":role/mlops-task-execution")
    plane = psutil.Process(int(_state(tmp_path, port)["pid"]))
    try:
        ecs = _ecs(exports)
        pid = _task_pid(ecs, _start_task(ecs, exports))
        task = psutil.Process(pid)
        # Everything the data plane and its tasks listen on is the loopback interface.
        listening = [
            c.laddr
            for p in (plane, *plane.children(recursive=True))
            for c in p.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN
        ]
        assert listening and {a.ip for a in listening} == {"127.0.0.1"}, listening
        assert any(a.port == port for a in listening)

        # A crashed data plane leaves its task running (its own process group)...
        os.kill(plane.pid, signal.SIGKILL)
        wait_for(lambda: not alive(plane))
        assert task.is_running()
        # ...which the next `up` finds and stops.
        again = _cli(["dev", "up", "--port", str(port)], env)
        assert again.returncode == 0, again.stderr
        assert "stopped 1 task process(es) left by a previous data plane" in again.stderr
        wait_for(lambda: not alive(task))
        plane = psutil.Process(int(_state(tmp_path, port)["pid"]))
        exports = _exports(again.stdout)  # a new endpoint: its state starts afresh
        pid = _task_pid(_ecs(exports), _start_task(_ecs(exports), exports))
        task = psutil.Process(pid)
    finally:
        down = _cli(["dev", "down", "--port", str(port)], env)
    assert down.returncode == 0, down.stderr
    # `down` stopped the data plane and, with it, every task it ran.
    assert not alive(plane)
    assert not alive(task)
    assert not local_aws.is_up(port)


def _state(tmp_path, port) -> dict:
    import json

    return json.loads((tmp_path / "state" / f"dev-{port}.json").read_text())
