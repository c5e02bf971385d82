"""Names of every AWS resource the platform uses: the one table.

``mlopsctl dev up``, the CLI, the controller and the serving service all call these
functions; the Terraform module in ``infra/terraform`` builds the same names from the same
inputs (``platform`` and ``project``/``env``), and ``tests/infra`` asserts the two agree.

Project and env names are restricted to what is valid in every place they appear: S3 keys,
SSM paths, ECS service names, task definition families and target group names.
"""

from __future__ import annotations

import getpass
import hashlib
import re
from dataclasses import dataclass, field

from mlops_core.errors import InvalidInput

DEFAULT_PLATFORM = "mlops"
DEFAULT_REGION = "us-east-1"
DEFAULT_ENVS = ("dev", "staging", "prod")

PLATFORM_RE = re.compile(r"^[a-z][a-z0-9-]{1,20}[a-z0-9]$")
PROJECT_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$")
ENV_RE = re.compile(r"^[a-z][a-z0-9]{0,9}$")
#: The id of an ECS service deployment (the last part of its ARN).
ROLLOUT_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")

MANAGED_BY_TAG = ("managed-by", "mlops-controller")

# Written by the local data plane on each load balancer listener it serves: the listener's
# loopback URL (on AWS the load balancer's DNS name says where it answers).
LOCAL_ENDPOINT_TAG = "mlops.platform.io/local-endpoint"
# Cost allocation tags: on every resource the platform creates (Terraform's default_tags
# and per-env tags, the controller's services and task definitions, artifact objects), so
# that Cost Explorer can group the bill by them once they are activated in the Billing
# console. ``deployment`` is the (project, env) unit that one ModelDeployment owns.
COST_TAG_PLATFORM = "mlops:platform"
COST_TAG_PROJECT = "mlops:project"
COST_TAG_ENV = "mlops:env"
COST_TAG_DEPLOYMENT = "mlops:deployment"
COST_TAG_KEYS = {
    "platform": COST_TAG_PLATFORM,
    "project": COST_TAG_PROJECT,
    "env": COST_TAG_ENV,
    "deployment": COST_TAG_DEPLOYMENT,
}

# Published objects stay under governance-mode Object Lock this long: long enough to
# investigate an incident and roll back to anything recent; governance (not compliance)
# so an administrator with s3:BypassGovernanceRetention can still retire a leaked model.
DEFAULT_OBJECT_LOCK_DAYS = 30
# The largest registration revision its six-digit key can hold.
REGISTRATION_MAX = 999_999

# Load balancer and target group names are limited to 32 characters.
ELB_NAME_MAX = 32
TARGET_GROUP_COLORS = ("blue", "green")


def os_user() -> str:
    """The OS user this process runs as ("unknown" where the container has no passwd entry)."""
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


def check_project(name: str) -> str:
    if not PROJECT_RE.fullmatch(name):
        raise InvalidInput(
            f"invalid project name {name!r}",
            hint="use 2-32 lowercase letters, digits and '-', starting with a letter",
        )
    return name


def check_env(name: str) -> str:
    if not ENV_RE.fullmatch(name):
        raise InvalidInput(
            f"invalid env name {name!r}",
            hint="use 1-10 lowercase letters and digits, starting with a letter (e.g. prod)",
        )
    return name


@dataclass(frozen=True)
class Platform:
    """Platform-wide names. ``platform`` is Terraform's ``var.platform``."""

    platform: str = DEFAULT_PLATFORM
    artifact_bucket: str = f"{DEFAULT_PLATFORM}-artifacts"
    region: str = DEFAULT_REGION
    #: The model-signing KMS key (ARN, id or alias); empty: the platform's alias.
    signing_key: str = ""
    #: The promotion-signing KMS key that seals promotion-log entries; empty: its alias.
    promotion_log_key: str = ""
    #: Governance-mode Object Lock retention of published objects, in days (0: none).
    object_lock_days: int = DEFAULT_OBJECT_LOCK_DAYS
    #: Who this process acts as in the records it writes (``MLOPS_ACTOR``: CI or the
    #: controller set it; else the OS user). Self-declared: see the README's trust model.
    actor: str = field(default_factory=lambda: os_user())

    # -- platform-wide resources -------------------------------------------------------
    @property
    def ecs_cluster(self) -> str:
        return ecs_cluster_name(self.platform)

    @property
    def ecr_serving_repository(self) -> str:
        return f"{self.platform}/serving"

    @property
    def ecr_training_repository(self) -> str:
        return f"{self.platform}/training"

    @property
    def model_signing_key_alias(self) -> str:
        """The KMS key that signs published versions (Terraform and ``dev up`` make it)."""
        return f"alias/{self.platform}-model-signing"

    @property
    def model_signing_key(self) -> str:
        return self.signing_key or self.model_signing_key_alias

    @property
    def promotion_signing_key_alias(self) -> str:
        """The KMS key that seals promotion-log entries: its signers are the controller and
        the people who promote, not the publisher (Terraform and ``dev up`` make it)."""
        return f"alias/{self.platform}-promotion-signing"

    @property
    def promotion_signing_key(self) -> str:
        return self.promotion_log_key or self.promotion_signing_key_alias

    @property
    def ssm_prefix(self) -> str:
        return f"/{self.platform}"

    @property
    def desired_state_prefix(self) -> str:
        """Key prefix in the artifact bucket where the S3 source keeps ModelDeployments."""
        return "deployments/"

    # -- per project -------------------------------------------------------------------
    def models_prefix(self, project: str) -> str:
        return f"{check_project(project)}/models/"

    def version_prefix(self, project: str, version: str) -> str:
        return f"{self.models_prefix(project)}{version}/"

    def version_uri(self, project: str, version: str) -> str:
        return f"s3://{self.artifact_bucket}/{self.version_prefix(project, version)}"

    def registration_prefix(self, project: str) -> str:
        """Key prefix of the project's registration revisions (``mlops_core.policy``)."""
        return f"{check_project(project)}/registration/"

    def registration_key(self, project: str, revision: int) -> str:
        """One revision of the registration: ``{project}/registration/000001.json``. Six
        digits keep the keys in revision order when S3 lists them."""
        if not 1 <= revision <= REGISTRATION_MAX:
            raise InvalidInput(f"registration revision {revision} is out of range")
        return f"{self.registration_prefix(project)}{revision:06d}.json"

    def legacy_registration_key(self, project: str) -> str:
        """The unversioned registration written before revisions existed; read (as
        revision 0) only while a project has no revision."""
        return f"{check_project(project)}/project.json"

    def drift_prefix(self, project: str) -> str:
        """Key prefix in the artifact bucket where the drift job writes its reports."""
        return f"{check_project(project)}/drift/"

    def capture_root(self, project: str) -> str:
        """Key prefix of every env's captured inferences (serving writes, the job reads)."""
        return f"{check_project(project)}/capture/"

    def capture_env_prefix(self, project: str, env: str) -> str:
        """Captured inferences of every version in one env."""
        return f"{self.capture_root(project)}{check_env(env)}/"

    def capture_prefix(self, project: str, env: str, version: str) -> str:
        """Captured inferences of one version in one env (``mlops_core.capture``)."""
        return f"{self.capture_root(project)}{check_env(env)}/{version}/"

    def drift_results_prefix(self, project: str, env: str, version: str) -> str:
        """Drift results of one version in one env (``mlops_core.drift_result``)."""
        return f"{self.drift_prefix(project)}{check_env(env)}/{version}/"

    @property
    def drift_metrics_namespace(self) -> str:
        """CloudWatch namespace of the drift job's metrics."""
        return f"{self.platform}/drift"

    def training_data_prefix(self, project: str) -> str:
        """Key prefix in the artifact bucket the training task may read data from."""
        return f"{check_project(project)}/data/"

    def candidates_prefix(self, project: str) -> str:
        """Key prefix where remote training writes candidate artifacts folders, which a
        ModelDeployment's ``model.candidate`` names and the controller publishes."""
        return f"{check_project(project)}/candidates/"

    # -- per project and env -----------------------------------------------------------
    def pointer_param(self, project: str, env: str) -> str:
        return model_pointer_param(self.platform, project, env)

    def promotions_root(self, project: str) -> str:
        """Key prefix of every env's promotion log (the controller's IAM grant)."""
        return f"{check_project(project)}/promotions/"

    def promotions_prefix(self, project: str, env: str) -> str:
        """Key prefix of the env's promotion log (``mlops_core.promotion_log``): every
        value the pointer has held, one object per change, never overwritten."""
        return f"{self.promotions_root(project)}{check_env(env)}/"

    def promotion_key(self, project: str, env: str, seq: int) -> str:
        """Entry ``seq`` (1, 2, ...) of the promotion log; zero-padded so that keys sort
        in the order they were written."""
        if seq < 1:
            raise InvalidInput(f"promotion log entries start at 1, not {seq}")
        return f"{self.promotions_prefix(project, env)}{seq:012d}.json"

    def approvals_root(self, project: str) -> str:
        """Key prefix of every env's rollout approvals (``mlops_core.approvals``)."""
        return f"{check_project(project)}/approvals/"

    def approval_key(self, project: str, env: str, rollout_id: str) -> str:
        """The approval (or rejection) of one ECS service deployment: written once."""
        if not ROLLOUT_ID_RE.fullmatch(rollout_id):
            raise InvalidInput(
                f"not an ECS service deployment id: {rollout_id[:80]!r}",
                hint="the last part of a service deployment ARN (letters, digits, - and _)",
            )
        return f"{self.approvals_root(project)}{check_env(env)}/{rollout_id}.json"

    def claims_root(self, project: str) -> str:
        """Key prefix of every env's ownership claim (``mlops_core.claims``)."""
        return f"{check_project(project)}/claims/"

    def claim_key(self, project: str, env: str) -> str:
        """The env's claim: which ModelDeployment owns it, created once, conditionally."""
        return f"{self.claims_root(project)}{check_env(env)}.json"

    def service_name(self, project: str, env: str) -> str:
        return service_name(project, env)

    def canary_alarm(self, project: str, env: str) -> str:
        """The CloudWatch alarm on the 5xx share of the env's new revision during a
        progressive rollout, which ECS rolls back on (Terraform grants it by name)."""
        return f"{service_name(project, env)}-canary-errors"

    def task_family(self, project: str, env: str) -> str:
        return service_name(project, env)

    def log_group(self, project: str, env: str) -> str:
        return log_group_name(self.platform, project, env)

    def deployment_name(self, project: str, env: str) -> str:
        return deployment_name(project, env)

    def cost_tags(self, project: str | None = None, env: str | None = None) -> dict[str, str]:
        return cost_tags(self.platform, project, env)

    # -- created by Terraform, referred to by the controller -----------------------------
    @property
    def task_execution_role(self) -> str:
        return task_execution_role_name(self.platform)

    @property
    def ecs_infrastructure_role(self) -> str:
        return ecs_infrastructure_role_name(self.platform)

    @property
    def controller_role(self) -> str:
        return controller_role_name(self.platform)

    def serving_task_role(self, project: str) -> str:
        return serving_task_role_name(self.platform, project)

    def drift_task_role(self, project: str) -> str:
        return drift_task_role_name(self.platform, project)

    def drift_task_family(self, project: str) -> str:
        return drift_task_family(project)

    def drift_log_group(self, project: str) -> str:
        return drift_log_group_name(self.platform, project)

    def training_task_role(self, project: str) -> str:
        return training_task_role_name(self.platform, project)

    def training_task_family(self, project: str) -> str:
        return training_task_family(project)

    def training_log_group(self, project: str) -> str:
        return training_log_group_name(self.platform, project)

    def drift_dead_letter_queue(self, project: str) -> str:
        return drift_dlq_name(self.platform, project)

    def load_balancer(self, project: str, env: str) -> str:
        return alb_name(self.platform, project, env)

    def target_group(self, project: str, env: str, color: str) -> str:
        return target_group_name(self.platform, project, env, color)


# Plain functions of the same names, for callers (and the Terraform tests) that have the
# inputs but no Platform object.
def artifact_bucket_name(platform: str) -> str:
    return f"{platform}-artifacts"


def ecs_cluster_name(platform: str) -> str:
    return platform


def model_pointer_param(platform: str, project: str, env: str) -> str:
    return f"/{platform}/{check_project(project)}/{check_env(env)}/model"


def service_name(project: str, env: str) -> str:
    return f"{check_project(project)}-{check_env(env)}"


def log_group_name(platform: str, project: str, env: str) -> str:
    return f"/ecs/{platform}/{service_name(project, env)}"


def deployment_name(project: str, env: str) -> str:
    """The value of the ``mlops:deployment`` cost tag, and the default ModelDeployment
    name (``mlopsctl deploy``): one per (project, env)."""
    return service_name(project, env)


def cost_tags(platform: str, project: str | None = None, env: str | None = None) -> dict[str, str]:
    """The cost allocation tags of a resource: platform-wide, per project, or per env."""
    tags = {COST_TAG_PLATFORM: platform}
    if project is not None:
        tags[COST_TAG_PROJECT] = check_project(project)
    if env is not None:
        if project is None:
            raise InvalidInput("an env's cost tags need its project")
        tags[COST_TAG_ENV] = check_env(env)
        tags[COST_TAG_DEPLOYMENT] = deployment_name(project, env)
    return tags


def fit_name(name: str, limit: int) -> str:
    """``name`` if it fits in ``limit`` characters, else a prefix plus 8 hex digits of its
    sha1, so long names stay unique. The Terraform module shortens names the same way."""
    if len(name) <= limit:
        return name
    return f"{name[: limit - 9]}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def ecs_infrastructure_role_name(platform: str) -> str:
    """The role ECS moves the production listener rule's weights with (Canary, Linear,
    BlueGreen deployments: ``loadBalancers[].advancedConfiguration.roleArn``)."""
    return f"{platform}-ecs-infrastructure"


def task_execution_role_name(platform: str) -> str:
    """The role ECS uses to pull images and write logs for every platform task."""
    return f"{platform}-task-execution"


def controller_role_name(platform: str) -> str:
    return f"{platform}-controller"


def serving_task_role_name(platform: str, project: str) -> str:
    return f"{platform}-{check_project(project)}-serving"


def drift_task_role_name(platform: str, project: str) -> str:
    return f"{platform}-{check_project(project)}-drift"


# Project names may contain '-' but never '_': a suffix after '_' cannot be part of any
# project name, so these names can never equal another project's service or task family
# (``{project}-{env}``: project ``fleet-price-drift`` with env ``job`` is
# ``fleet-price-drift-job``, which a ``-drift-job`` suffix would have collided with).
JOB_SEPARATOR = "_"


def drift_task_family(project: str) -> str:
    """Task definition family of the scheduled drift job: ``{project}_drift``."""
    return f"{check_project(project)}{JOB_SEPARATOR}drift"


def drift_log_group_name(platform: str, project: str) -> str:
    return f"/ecs/{platform}/{drift_task_family(project)}"


def training_task_role_name(platform: str, project: str) -> str:
    """The role remote training runs as: reads the data, writes candidates."""
    return f"{platform}-{check_project(project)}-training"


def training_task_family(project: str) -> str:
    """Task definition family of remote training (``mlopsctl train --remote``):
    ``{project}_training``, a job name like the drift job's."""
    return f"{check_project(project)}{JOB_SEPARATOR}training"


def training_log_group_name(platform: str, project: str) -> str:
    return f"/ecs/{platform}/{training_task_family(project)}"


def drift_dlq_name(platform: str, project: str) -> str:
    """SQS queue where the scheduler leaves drift runs it could not start."""
    return f"{platform}-{check_project(project)}-drift-dlq"


def alb_name(platform: str, project: str, env: str) -> str:
    return fit_name(f"{platform}-{service_name(project, env)}", ELB_NAME_MAX)


def target_group_name(platform: str, project: str, env: str, color: str) -> str:
    """One of the two target groups (``blue`` serves, ``green`` is for blue/green)."""
    if color not in TARGET_GROUP_COLORS:
        raise InvalidInput(
            f"invalid target group color {color!r}", hint=f"use one of {TARGET_GROUP_COLORS}"
        )
    return fit_name(f"{platform}-{service_name(project, env)}-{color}", ELB_NAME_MAX)
