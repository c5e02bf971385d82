"""The production loop on the local data plane: shifted capture, the drift job fired by
its schedule as an ECS task, its result, and the controller's Drifted condition."""

from __future__ import annotations

import random

from configured import env_platform
from conftest import IMAGE, wait_for
from drift_data import PROJECT, capture_schema, columns, publish_version, records, schema_features
from factories import project_config
from prometheus_client import CollectorRegistry

from controller.api import ModelDeployment
from controller.drifted import DRIFTED
from controller.observe import Observer
from controller.plan import NetworkConfig
from controller.reconcile import Reconciler
from mlops_core import drift_result
from mlops_core.registry import Registry
from mlopsctl.local_aws import ensure_drift_job
from serving.capture import CaptureSettings, CaptureWriter

FEATURES = schema_features(numeric=3)
# Three of five features: over the default drift share (0.5), so dataset drift.
SHIFT = {"x0": 1.0, "x1": 1.0, "x2": 1.0}


def _capture(platform, schema, n: int, shift: dict[str, float]) -> None:
    """``n`` rows through serving's writer, in requests of 50, as serving sends them."""
    w = CaptureWriter(
        CaptureSettings(percent=100, buffer_records=100_000),
        platform=platform,
        env="prod",
        registry=CollectorRegistry(),
        rng=random.Random(0),
    )
    w.start()
    rows = records(columns(list(schema.features), n, seed=1, shift=shift))
    for i in range(0, n, 50):
        batch = rows[i : i + 50]
        w.submit(schema, batch, [10.0 + 2.0 * (r["x0"] or 0) + r["items"] for r in batch])
    w.close()


def _deployment(version: str) -> ModelDeployment:
    return ModelDeployment.model_validate(
        {
            "metadata": {"name": f"{PROJECT}-prod", "namespace": "ml", "generation": 1},
            "spec": {
                "project": PROJECT,
                "env": "prod",
                "model": {"version": version},
                "serving": {"image": IMAGE, "cpu": 256, "memory": 512, "replicas": 0},
                "monitoring": {"capturePercent": 100, "drift": {"schedule": "rate(1 minute)"}},
            },
        }
    )


def test_the_scheduled_job_finds_the_shift_and_the_controller_reports_drifted(env, tmp_path):
    platform = env.platform
    manifest = publish_version(tmp_path, FEATURES)
    _capture(platform, capture_schema(manifest), 3000, shift=SHIFT)
    Registry(env_platform()).register_project(project_config(PROJECT))
    dep = _deployment(manifest.version)
    network = NetworkConfig(subnets=tuple(env.subnets), security_groups=(env.security_group,))
    rec = Reconciler(platform, network=network, observer=Observer(platform, drift_ttl=0))
    status = rec.reconcile(dep, None).status
    assert status.condition(DRIFTED).reason == "NoResult"

    # As Terraform's drift.tf does on AWS; rate(1 minute) fires every 3 s at time scale 0.05.
    (name,) = ensure_drift_job(
        platform,
        PROJECT,
        ["prod"],
        image=IMAGE,
        expression=dep.spec.monitoring.drift.schedule or "",
        window="1h",
    )
    (run, *_) = wait_for(
        lambda: [
            t
            for t in env.tasks(status="STOPPED")
            if t["startedBy"] == f"scheduler/default/{name}" and t["lastStatus"] == "STOPPED"
        ],
        timeout=120,
        what="a run of the drift job's schedule",
    )
    assert run["containers"][0]["exitCode"] == 1, run  # 1: drift
    result = drift_result.latest(PROJECT, "prod", manifest.version, platform)
    assert result is not None and sorted(result.drifted_features) == sorted(SHIFT)

    status = rec.reconcile(dep, status).status
    drifted = status.condition(DRIFTED)
    assert drifted is not None and (drifted.status, drifted.reason) == ("True", "Drifted")
    assert "3 of 5 features drifted" in drifted.message and manifest.version in drifted.message


def test_the_drift_job_runs_as_its_own_role_and_failed_runs_reach_the_dead_letter_queue(env):
    import json

    from mlops_core import aws

    platform = env.platform
    (name,) = ensure_drift_job(
        platform, PROJECT, ["prod"], image=IMAGE, expression="rate(1 minute)"
    )
    family = platform.drift_task_family(PROJECT)
    td = aws.client("ecs").describe_task_definition(taskDefinition=family)["taskDefinition"]
    role = aws.client("iam").get_role(RoleName=platform.drift_task_role(PROJECT))["Role"]
    assert td["taskRoleArn"] == role["Arn"] != td["executionRoleArn"]
    scheduler = aws.client("scheduler")
    schedule = scheduler.get_schedule(Name=name)
    dlq = schedule["Target"]["DeadLetterConfig"]["Arn"]
    assert dlq.endswith(":" + platform.drift_dead_letter_queue(PROJECT))
    # Running it twice changes nothing (no second queue, the same role).
    assert ensure_drift_job(platform, PROJECT, ["prod"], image=IMAGE) == [name]

    # A run that ECS refuses (its cluster is gone) is sent to the queue, with the error.
    target = {**schedule["Target"], "Arn": schedule["Target"]["Arn"] + "-gone"}
    scheduler.update_schedule(
        Name=name,
        ScheduleExpression="rate(1 minute)",
        FlexibleTimeWindow={"Mode": "OFF"},
        State="ENABLED",
        Target=target,
    )
    sqs = aws.client("sqs")
    url = sqs.get_queue_url(QueueName=platform.drift_dead_letter_queue(PROJECT))["QueueUrl"]
    (message, *_) = wait_for(
        lambda: sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages"),
        timeout=60,
        what="a failed run in the dead-letter queue",
        show=lambda: env.plane.log.read_text()[-3000:],
    )
    body = json.loads(message["Body"])
    assert body["source"] == schedule["Arn"] and body["target"].endswith("-gone")
    assert body["error"]
