"""`mlopsctl train --remote`: training as an ECS task of the training image, on the local
data plane, with its logs followed and its exit code returned."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mlops_core import aws
from mlops_core.naming import training_task_family
from mlops_core.registry import read_candidate_manifest
from mlopsctl import local_aws

MLOPSCTL = [sys.executable, "-m", "mlopsctl.cli"]


def _cli(args, cwd, env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*MLOPSCTL, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


# Two trainings, each in a task of its own: minutes on a loaded 2-core machine.
@pytest.mark.timeout(900)
def test_remote_training_writes_a_candidate_and_fails_with_the_tasks_exit_code(env, tmp_path):
    role = local_aws.ensure_execution_role(env.platform)
    child = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_")}
    child.update(
        MLOPS_SUBNETS=",".join(env.subnets),
        MLOPS_SECURITY_GROUPS=env.security_group,
        MLOPS_EXECUTION_ROLE_ARN=role,
        MLOPS_LOG_FORMAT="console",
    )
    assert (
        _cli(
            ["init", "fleet", "--dir", str(tmp_path / "fleet"), "--rows", "400"], tmp_path, child
        ).returncode
        == 0
    )
    project = tmp_path / "fleet"
    bucket = env.platform.artifact_bucket
    aws.client("s3").upload_file(
        str(project / "data" / "usedcars.csv"), bucket, "fleet/data/fleet.csv"
    )

    # Data on a laptop path is refused before anything runs.
    local = _cli(["train", "--remote"], project, child)
    assert local.returncode == 2 and "remote training reads its data from S3" in local.stderr

    ok = _cli(
        ["train", "--remote", "--data", f"s3://{bucket}/fleet/data/fleet.csv"], project, child
    )
    assert ok.returncode == 0, ok.stdout[-3000:] + ok.stderr[-3000:]
    assert "model trained" in ok.stdout  # the task's own log line, from CloudWatch
    candidate = next(
        line.split("candidate: ", 1)[1].strip()
        for line in ok.stdout.splitlines()
        if line.startswith("candidate: ")
    )
    assert candidate.startswith(f"s3://{bucket}/fleet/candidates/") and candidate.endswith(
        "/artifacts/"
    )
    manifest = read_candidate_manifest(candidate)
    assert manifest.project == "fleet" and manifest.data.rows == 400
    td = env.ecs().describe_task_definition(taskDefinition=training_task_family("fleet"))[
        "taskDefinition"
    ]
    assert td["containerDefinitions"][0]["image"].endswith("/mlops/training:0.1.0")

    missing = _cli(
        ["train", "--remote", "--data", f"s3://{bucket}/fleet/data/nope.csv"], project, child
    )
    assert missing.returncode == 3, missing.stdout[-2000:] + missing.stderr[-2000:]  # NotFound
    assert "the training task exited with code 3" in missing.stderr
    assert "nope.csv" in missing.stdout  # the task's error, followed from its logs
