"""The embedded local AWS: moto's server on loopback, plus the base resources.

``start_dataplane`` runs what ``mlopsctl dev up`` runs: moto's server with the local data
plane (:mod:`mlopsctl.dataplane`: tasks, load balancers, logs, schedules); ``start_server``
runs moto's server alone (AWS that stores everything and runs nothing, as the tests that
need no task use it).

``bootstrap`` creates what Terraform creates in a real account, under the same names
(:mod:`mlops_core.naming`): the artifact bucket (versioned), the ECS cluster, the ECR
repositories, the log group, the network and the task execution role; the SSM namespace
needs no creation. It is idempotent.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from botocore.exceptions import ClientError

from mlops_core import aws, signing
from mlops_core.errors import MlopsError
from mlops_core.naming import DEFAULT_REGION, Platform, task_execution_role_name

DEFAULT_PORT = 4566
DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def local_env(port: int, region: str = DEFAULT_REGION) -> dict[str, str]:
    """The environment that points boto3 (and so the whole platform) at the local server."""
    return {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        **DUMMY_CREDENTIALS,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _check_moto() -> None:
    try:
        import moto.server  # noqa: F401
    except ImportError:
        raise MlopsError(
            "the local AWS endpoint needs moto's server, which is not installed",
            hint="pip install 'mlops-platform[local]'  (or: pip install 'moto[server]')",
        ) from None


def _moto_server_cmd(port: int) -> list[str]:
    """moto's server application, with S3's conditional writes made atomic (moto alone
    lets two concurrent ``IfNoneMatch="*"`` creates of one key both succeed)."""
    _check_moto()
    return [sys.executable, "-m", "mlopsctl.motoserver", "-H", "127.0.0.1", "-p", str(port)]


def is_up(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/moto-api/", timeout=1).status_code < 500
    except httpx.HTTPError:
        return False


def start_server(port: int, log_path: Path | None = None, timeout: float = 30) -> subprocess.Popen:
    """Start moto's server alone as a child process and wait until it answers."""
    return _start(
        _moto_server_cmd(port), port, os.environ.copy(), log_path, timeout, "moto's server"
    )


def start_dataplane(
    port: int,
    state_dir: Path,
    log_path: Path | None = None,
    *,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.Popen:
    """Start the local AWS endpoint with its data plane (``python -m mlopsctl.dataplane``)
    as a child process in its own session, and wait until it answers. ``env`` adds
    ``MLOPS_DATAPLANE_*`` settings (time scale, intervals)."""
    _check_moto()
    child = {**os.environ, **(env or {}), "MLOPS_DATAPLANE_STATE_DIR": str(state_dir)}
    cmd = [sys.executable, "-m", "mlopsctl.dataplane", "--port", str(port)]
    return _start(cmd, port, child, log_path, timeout, "the local data plane")


def _start(
    cmd: list[str], port: int, env: dict[str, str], log_path: Path | None, timeout: float, what: str
) -> subprocess.Popen:
    out = log_path.open("ab") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(
        cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise MlopsError(
                f"{what} exited with code {proc.returncode} while starting",
                hint=f"is port {port} in use? see {log_path}" if log_path else None,
            )
        if is_up(port):
            return proc
        time.sleep(0.1)
    proc.kill()
    raise MlopsError(f"{what} did not answer on port {port} within {timeout}s")


def reset(port: int) -> None:
    """Drop every resource on the local server (tests use it between cases)."""
    # A reset walks every service moto has loaded; a loaded machine has taken over 10 s.
    httpx.post(f"http://127.0.0.1:{port}/moto-api/reset", timeout=120).raise_for_status()


def bootstrap(platform: Platform) -> dict[str, str]:
    """Create the base resources, idempotently. Returns what was ensured, by name."""
    p = platform
    s3 = aws.client("s3")
    try:
        # Object Lock (which implies versioning): published objects get governance-mode
        # retention at publish (mlops_core.registry); the bucket sets no default, so
        # captures and desired state stay deletable.
        kwargs: dict[str, Any] = {"Bucket": p.artifact_bucket, "ObjectLockEnabledForBucket": True}
        if p.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": p.region}
        s3.create_bucket(**kwargs)
    except (s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists):
        pass
    s3.put_bucket_versioning(
        Bucket=p.artifact_bucket, VersioningConfiguration={"Status": "Enabled"}
    )
    # A bucket made before Object Lock was the default: S3 enables it on a versioned one.
    with contextlib.suppress(ClientError):
        s3.put_object_lock_configuration(
            Bucket=p.artifact_bucket, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"}
        )
    signing_key = ensure_signing_key(
        p.model_signing_key_alias, f"Signs the published model versions of platform {p.platform}", p
    )
    promotion_key = ensure_signing_key(
        p.promotion_signing_key_alias,
        f"Seals the promotion log entries of platform {p.platform}",
        p,
    )
    aws.client("ecs").create_cluster(
        clusterName=p.ecs_cluster,
        settings=[{"name": "containerInsights", "value": "enabled"}],
    )  # create_cluster is idempotent on ECS
    ecr = aws.client("ecr")
    for repo in (p.ecr_serving_repository, p.ecr_training_repository):
        with contextlib.suppress(ecr.exceptions.RepositoryAlreadyExistsException):
            ecr.create_repository(
                repositoryName=repo,
                imageTagMutability="IMMUTABLE",
                imageScanningConfiguration={"scanOnPush": True},
            )
    logs = aws.client("logs")
    group = f"/ecs/{p.platform}"
    with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
        logs.create_log_group(logGroupName=group)
    subnets, security_group = ensure_network(p)
    execution_role = ensure_execution_role(p)
    return {
        "artifact_bucket": p.artifact_bucket,
        "ecs_cluster": p.ecs_cluster,
        "ecr_serving_repository": p.ecr_serving_repository,
        "ecr_training_repository": p.ecr_training_repository,
        "log_group_prefix": group,
        "ssm_prefix": p.ssm_prefix,
        "subnets": ",".join(subnets),
        "security_groups": security_group,
        "execution_role_arn": execution_role,
        "model_signing_key": signing_key,
        "promotion_signing_key": promotion_key,
    }


def ensure_signing_key(alias: str, description: str, p: Platform) -> str:
    """A signing KMS key (ECC_NIST_P256, sign and verify) under ``alias``; its ARN.
    Locally the one identity may sign; on AWS, Terraform's key policies decide who signs
    (the publisher the model-signing key, the controller and promoters the promotion key)."""
    kms = aws.client("kms")
    try:
        return str(kms.describe_key(KeyId=alias)["KeyMetadata"]["Arn"])
    except kms.exceptions.NotFoundException:
        pass
    key = kms.create_key(
        KeySpec=signing.KEY_SPEC,
        KeyUsage="SIGN_VERIFY",
        Description=description,
        Tags=[{"TagKey": k, "TagValue": v} for k, v in p.cost_tags().items()],
    )["KeyMetadata"]
    with contextlib.suppress(kms.exceptions.AlreadyExistsException):
        kms.create_alias(AliasName=alias, TargetKeyId=key["KeyId"])
    return str(kms.describe_key(KeyId=alias)["KeyMetadata"]["Arn"])


ECS_TASKS_TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "ecs-tasks.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}


EXECUTION_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": [
                "ecr:GetAuthorizationToken",
                "ecr:BatchGetImage",
                "ecr:GetDownloadUrlForLayer",
                "logs:CreateLogGroup",
                "logs:CreateLogStream",
                "logs:PutLogEvents",
            ],
            "Resource": "*",
        }
    ],
}


def ensure_execution_role(p: Platform) -> str:
    """The task execution role Terraform creates (ECS pulls images and writes the
    ``awslogs`` output with it); its ARN is what the controller's task definitions name,
    so that they carry a log configuration, locally as on AWS."""
    iam = aws.client("iam")
    name = task_execution_role_name(p.platform)
    try:
        return iam.get_role(RoleName=name)["Role"]["Arn"]
    except iam.exceptions.NoSuchEntityException:
        pass
    role = iam.create_role(
        RoleName=name,
        AssumeRolePolicyDocument=json.dumps(ECS_TASKS_TRUST),
        Description="ECS task execution: pull platform images, write task logs",
    )["Role"]
    iam.put_role_policy(
        RoleName=name, PolicyName="task-execution", PolicyDocument=json.dumps(EXECUTION_POLICY)
    )
    return role["Arn"]


def drift_task_policy(p: Platform, project: str) -> dict:
    """What the drift job may do (Terraform's ``drift_task`` policy document): read the
    models, the capture and the pointers, write its reports, put its metrics."""
    bucket = f"arn:aws:s3:::{p.artifact_bucket}"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "ReadModels", "Effect": "Allow",
             "Action": ["s3:GetObject", "s3:GetObjectVersion"],
             "Resource": f"{bucket}/{project}/models/*"},
            {"Sid": "ReadCapture", "Effect": "Allow", "Action": ["s3:GetObject"],
             "Resource": f"{bucket}/{project}/capture/*"},
            {"Sid": "ReadWriteDriftReports", "Effect": "Allow",
             "Action": ["s3:GetObject", "s3:PutObject"],
             "Resource": f"{bucket}/{p.drift_prefix(project)}*"},
            {"Sid": "ListModelsCaptureAndReports", "Effect": "Allow",
             "Action": ["s3:ListBucket", "s3:ListBucketVersions"], "Resource": bucket},
            {"Sid": "PutDriftMetrics", "Effect": "Allow", "Action": ["cloudwatch:PutMetricData"],
             "Resource": "*"},
            {"Sid": "ReadPointers", "Effect": "Allow",
             "Action": ["ssm:GetParameter", "ssm:GetParameterHistory"], "Resource": "*"},
            {"Sid": "ReadServing", "Effect": "Allow",
             "Action": ["ecs:DescribeServices", "ecs:DescribeTaskDefinition"], "Resource": "*"},
        ],
    }  # fmt: skip


def ensure_drift_task_role(p: Platform, project: str) -> str:
    """The drift job's own task role (Terraform's ``aws_iam_role.drift_task``): the job's
    AWS calls use it, never the execution role."""
    iam = aws.client("iam")
    name = p.drift_task_role(project)
    try:
        arn = iam.get_role(RoleName=name)["Role"]["Arn"]
    except iam.exceptions.NoSuchEntityException:
        arn = iam.create_role(
            RoleName=name,
            AssumeRolePolicyDocument=json.dumps(ECS_TASKS_TRUST),
            Description=f"The drift job of {project}: read capture, write reports and metrics",
        )["Role"]["Arn"]
    iam.put_role_policy(
        RoleName=name,
        PolicyName="drift-task",
        PolicyDocument=json.dumps(drift_task_policy(p, project)),
    )
    return arn


def ensure_drift_dead_letter_queue(p: Platform, project: str) -> str:
    """The queue a schedule sends a failed RunTask to (Terraform's ``drift_dlq``), kept
    14 days: time to notice and re-run. Returns its ARN."""
    sqs = aws.client("sqs")
    url = sqs.create_queue(
        QueueName=p.drift_dead_letter_queue(project),
        Attributes={"MessageRetentionPeriod": "1209600", "SqsManagedSseEnabled": "true"},
    )["QueueUrl"]
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]


def ensure_network(p: Platform) -> tuple[list[str], str]:
    """A VPC with two subnets and the service security group, found by tag or created:
    what Terraform's network outputs give the controller on AWS (MLOPS_SUBNETS,
    MLOPS_SECURITY_GROUPS)."""
    ec2 = aws.client("ec2")
    tag = {"Name": "tag:mlops.platform.io/network", "Values": [p.platform]}
    vpcs = ec2.describe_vpcs(Filters=[tag])["Vpcs"]
    if vpcs:
        vpc_id = vpcs[0]["VpcId"]
        subnets = sorted(s["SubnetId"] for s in ec2.describe_subnets(Filters=[tag])["Subnets"])
        groups = ec2.describe_security_groups(Filters=[tag])["SecurityGroups"]
        if len(subnets) >= 2 and groups:
            return subnets, groups[0]["GroupId"]
    else:
        vpc_id = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    tags = [{"Key": "mlops.platform.io/network", "Value": p.platform}]
    ec2.create_tags(Resources=[vpc_id], Tags=tags)
    subnets = []
    for i, zone in enumerate(("a", "b")):
        subnet = ec2.create_subnet(
            VpcId=vpc_id, CidrBlock=f"10.42.{i}.0/24", AvailabilityZone=f"{p.region}{zone}"
        )["Subnet"]["SubnetId"]
        ec2.create_tags(Resources=[subnet], Tags=tags)
        subnets.append(subnet)
    group = ec2.create_security_group(
        GroupName=f"{p.platform}-serving", Description="serving tasks", VpcId=vpc_id
    )["GroupId"]
    ec2.create_tags(Resources=[group], Tags=tags)
    return sorted(subnets), group


def which_moto() -> str | None:
    return shutil.which("moto_server")


def ensure_drift_job(
    p: Platform,
    project: str,
    envs: list[str],
    *,
    image: str,
    expression: str = "rate(1 day)",
    window: str = "24h",
) -> list[str]:
    """What Terraform's ``drift.tf`` makes, for the local endpoint: the drift job's task
    definition (the serving image, ``python -m monitoring``, its own task role) and one
    EventBridge Scheduler schedule per env running it through ECS RunTask with
    ``MLOPS_ENV`` set, retried, and sent to the dead-letter queue when RunTask keeps
    failing; the data plane fires them. Idempotent; returns the schedules' names.

    ``expression`` is a deployment's ``spec.monitoring.drift.schedule`` or Terraform's
    ``drift_schedule_expression``."""
    ecs = aws.client("ecs")
    execution_role = ensure_execution_role(p)
    container = {
        "name": "drift",
        "image": image,
        "command": ["python", "-m", "monitoring"],
        "essential": True,
        "environment": [
            {"name": "MLOPS_PLATFORM", "value": p.platform},
            {"name": "MLOPS_PROJECT", "value": project},
            {"name": "MLOPS_ARTIFACT_BUCKET", "value": p.artifact_bucket},
            {"name": "AWS_REGION", "value": p.region},
            {"name": "AWS_DEFAULT_REGION", "value": p.region},
            {"name": "MLOPS_DRIFT_WINDOW", "value": window},
        ],
    }
    family = p.drift_task_family(project)
    td = ecs.register_task_definition(
        family=family,
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="1024",
        memory="2048",
        executionRoleArn=execution_role,
        taskRoleArn=ensure_drift_task_role(p, project),
        containerDefinitions=[container],
    )["taskDefinition"]
    dead_letters = ensure_drift_dead_letter_queue(p, project)
    cluster = ecs.describe_clusters(clusters=[p.ecs_cluster])["clusters"][0]["clusterArn"]
    subnets, group = ensure_network(p)
    scheduler = aws.client("scheduler")
    names = []
    for env in envs:
        name = f"{p.service_name(project, env)}-drift"
        schedule = {
            "Name": name,
            "ScheduleExpression": expression,
            "ScheduleExpressionTimezone": "UTC",
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "State": "ENABLED",
            "Target": {
                "Arn": cluster,
                "RoleArn": execution_role,
                "Input": json.dumps(
                    {
                        "containerOverrides": [
                            {
                                "name": "drift",
                                "environment": [{"name": "MLOPS_ENV", "value": env}],
                            }
                        ]
                    }
                ),
                "RetryPolicy": {"MaximumRetryAttempts": 3, "MaximumEventAgeInSeconds": 3600},
                "DeadLetterConfig": {"Arn": dead_letters},
                "EcsParameters": {
                    "TaskDefinitionArn": td["taskDefinitionArn"],
                    "TaskCount": 1,
                    "LaunchType": "FARGATE",
                    "NetworkConfiguration": {
                        "awsvpcConfiguration": {"Subnets": subnets, "SecurityGroups": [group]}
                    },
                },
            },
        }
        try:
            scheduler.create_schedule(**schedule)
        except scheduler.exceptions.ConflictException:
            scheduler.update_schedule(**schedule)
        names.append(name)
    return names
