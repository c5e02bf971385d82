"""Schedules that target ECS RunTask fire on the local data plane as on AWS."""

from __future__ import annotations

import json

import pytest
from conftest import IMAGE, wait_for

from mlops_core import aws
from mlopsctl.dataplane.schedules import aws_cron_to_croniter


def _job(env) -> str:
    return env.ecs().register_task_definition(
        family="demo-drift-job",
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="256",
        memory="512",
        containerDefinitions=[
            {"name": "job", "image": IMAGE, "command": ["python", "-c", "print('default')"]}
        ],
    )["taskDefinition"]["taskDefinitionArn"]


def _cluster(env) -> str:
    return env.ecs().describe_clusters(clusters=[env.platform.ecs_cluster])["clusters"][0][
        "clusterArn"
    ]


def _exits(env, started_by: str) -> list[dict]:
    return [
        t
        for t in env.tasks(status="STOPPED")
        if t["startedBy"] == started_by and t["lastStatus"] == "STOPPED"
    ]


def test_a_scheduler_schedule_runs_its_task_with_the_target_input(env):
    role = aws.client("iam").get_role(RoleName="mlops-task-execution")["Role"]["Arn"]
    overrides = {
        "containerOverrides": [
            {"name": "job", "command": ["python", "-c", "import sys; sys.exit(4)"]}
        ]
    }
    aws.client("scheduler").create_schedule(
        Name="drift-prod",
        ScheduleExpression="rate(1 minute)",  # every 3 s at time scale 0.05
        FlexibleTimeWindow={"Mode": "OFF"},
        Target={
            "Arn": _cluster(env),
            "RoleArn": role,
            "Input": json.dumps(overrides),
            "EcsParameters": {
                "TaskDefinitionArn": _job(env),
                "LaunchType": "FARGATE",
                "NetworkConfiguration": {
                    "awsvpcConfiguration": {
                        "Subnets": env.subnets,
                        "SecurityGroups": [env.security_group],
                    }
                },
            },
        },
    )
    runs = wait_for(
        lambda: len(done := _exits(env, "scheduler/default/drift-prod")) >= 2 and done,
        timeout=60,
        what="two runs of the schedule",
    )
    assert all(t["containers"][0]["exitCode"] == 4 for t in runs)


def test_an_eventbridge_rule_with_a_schedule_runs_its_ecs_target(env):
    events = aws.client("events")
    events.put_rule(Name="nightly", ScheduleExpression="rate(1 minute)", State="ENABLED")
    events.put_targets(
        Rule="nightly",
        Targets=[
            {
                "Id": "job",
                "Arn": _cluster(env),
                "RoleArn": "arn:aws:iam::123456789012:role/events",
                "EcsParameters": {
                    "TaskDefinitionArn": _job(env),
                    "TaskCount": 1,
                    "LaunchType": "FARGATE",
                    "NetworkConfiguration": {
                        "awsvpcConfiguration": {
                            "Subnets": env.subnets,
                            "SecurityGroups": [env.security_group],
                        }
                    },
                },
            }
        ],
    )
    (run, *_) = wait_for(
        lambda: _exits(env, "events-rule/nightly"), timeout=60, what="the rule to fire"
    )
    assert run["containers"][0]["exitCode"] == 0


@pytest.mark.parametrize(
    ("aws_cron", "five_fields"),
    [
        ("0 2 * * ? *", "0 2 * * *"),
        ("15 10 ? * 2-6 *", "15 10 * * MON-FRI"),
        ("0/5 * * * ? *", "0/5 * * * *"),
    ],
)
def test_aws_cron_expressions_are_read_as_aws_means_them(aws_cron, five_fields):
    assert aws_cron_to_croniter(aws_cron) == five_fields
    with pytest.raises(ValueError, match="year"):
        aws_cron_to_croniter("0 2 * * ? 2027")


@pytest.mark.parametrize("dow", ["0", "8", "9", "1-9"])
def test_a_cron_day_of_week_out_of_range_is_refused_not_an_index_error(dow):
    # An IndexError escaped the data plane's per-schedule guard and stopped every
    # schedule listed after this one from firing.
    with pytest.raises(ValueError, match="day of week"):
        aws_cron_to_croniter(f"0 0 ? * {dow} *")
