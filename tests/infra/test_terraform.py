"""The Terraform module in infra/terraform: names, IAM, lifecycle rules, fmt and checkov.

Providers cannot be downloaded here, so there is no ``terraform init``/``plan``. Instead
the HCL is parsed with python-hcl2, and ``naming.tf`` (variables and locals only, no
provider) is evaluated by the real ``terraform console`` for sample inputs and compared
with :mod:`mlops_core.naming`, the names ``mlopsctl dev up`` and the controller use.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import hcl2
import pytest
from configured import env_platform
from hcl2 import SerializationOptions

from controller.api import Serving
from controller.plan import NetworkConfig
from mlops_core import naming
from mlops_core.config import PlatformSettings
from mlops_core.errors import InvalidInput

REPO = Path(__file__).resolve().parents[2]
MODULE = REPO / "infra" / "terraform"
EXAMPLES = MODULE / "examples"
README = MODULE / "README.md"

REQUIRED_OUTPUTS = {
    "artifact_bucket",
    "model_pointer_ssm_param",
    "ecr_repository_url",
    "ecs_cluster_name",
    "ecs_service_name",
    "alb_dns_name",
    "controller_role_arn",
    "log_group_name",
}

# IAM has no resource-level permissions for these actions, so they alone may name "*".
UNSCOPABLE_ACTIONS = {
    "cloudwatch:PutMetricData",
    "ecr:GetAuthorizationToken",
    "ecs:DeregisterTaskDefinition",
    "ecs:DescribeTaskDefinition",
    "ecs:ListTaskDefinitions",
    "ecs:RegisterTaskDefinition",
    "pricing:GetProducts",
    # Reads of load balancers and metrics a progressive rollout is judged on.
    "cloudwatch:GetMetricData",
    "elasticloadbalancing:DescribeListeners",
    "elasticloadbalancing:DescribeLoadBalancers",
    "elasticloadbalancing:DescribeRules",
    "elasticloadbalancing:DescribeTargetGroups",
}

CONTROLLER_ACTIONS = {
    "ecs:RegisterTaskDefinition",
    "ecs:DeregisterTaskDefinition",
    "ecs:DescribeTaskDefinition",
    "ecs:DescribeServices",
    "ecs:UpdateService",
    "ecs:CreateService",
    "ecs:ListTaskDefinitions",
    "ecs:TagResource",
    "iam:PassRole",
    "ssm:GetParameter",
    "ssm:PutParameter",
    "ssm:GetParameterHistory",
    "ssm:LabelParameterVersion",
    "s3:GetObject",
    "s3:PutObject",
    "s3:ListBucket",
    "s3:DeleteObject",
    "s3:PutObjectTagging",
    "s3:GetObjectVersion",
    "s3:ListBucketVersions",
    "s3:PutObjectRetention",
    "s3:GetBucketObjectLockConfiguration",
    "kms:GetPublicKey",
    "kms:DescribeKey",
    "pricing:GetProducts",
    # Progressive rollouts: ECS's service deployments and hooks, traffic and metrics.
    "ecs:ListServiceDeployments",
    "ecs:DescribeServiceDeployments",
    "ecs:DescribeServiceRevisions",
    "ecs:ContinueServiceDeployment",
    "ecs:StopServiceDeployment",
    "elasticloadbalancing:DescribeListeners",
    "elasticloadbalancing:DescribeLoadBalancers",
    "elasticloadbalancing:DescribeRules",
    "elasticloadbalancing:DescribeTargetGroups",
    "cloudwatch:GetMetricData",
    "cloudwatch:DescribeAlarms",
    "cloudwatch:PutMetricAlarm",
}

_OPTS = SerializationOptions(strip_string_quotes=True, with_comments=False, explicit_blocks=False)


# -- parsing --------------------------------------------------------------------------


def parse(path: Path) -> dict[str, Any]:
    return hcl2.loads(path.read_text(), serialization_options=_OPTS)


class Module:
    """The module's top-level blocks, merged over its .tf files."""

    def __init__(self, folder: Path):
        self.files = sorted(folder.glob("*.tf"))
        self.variables: dict[str, dict] = {}
        self.outputs: dict[str, dict] = {}
        self.locals: dict[str, Any] = {}
        self.resources: dict[tuple[str, str], dict] = {}
        self.data: dict[tuple[str, str], dict] = {}
        self.terraform: list[dict] = []
        for path in self.files:
            doc = parse(path)
            for block in doc.get("variable", []):
                self.variables.update(block)
            for block in doc.get("output", []):
                self.outputs.update(block)
            for block in doc.get("locals", []):
                self.locals.update(block)
            for kind, target in (("resource", self.resources), ("data", self.data)):
                for block in doc.get(kind, []):
                    for rtype, named in block.items():
                        for name, body in named.items():
                            target[(rtype, name)] = body
            self.terraform.extend(doc.get("terraform", []))

    def resource(self, rtype: str, name: str) -> dict:
        return self.resources[(rtype, name)]


@pytest.fixture(scope="module")
def tf() -> Module:
    return Module(MODULE)


def blocks(value: Any) -> list[dict]:
    """A nested block is a list of dicts (one per occurrence) in python-hcl2's output."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def statements(doc: dict) -> list[dict]:
    """The statements of an aws_iam_policy_document, static and dynamic ones alike."""
    out = list(blocks(doc.get("statement")))
    for dyn in blocks(doc.get("dynamic")):
        for label, body in dyn.items():
            if label == "statement":
                out.extend(blocks(body.get("content")))
    return out


def as_list(value: Any) -> list[str]:
    if isinstance(value, list):
        return value
    return [value]


# -- files and versions --------------------------------------------------------------


def test_module_has_the_expected_files():
    for name in ("versions.tf", "variables.tf", "outputs.tf", "naming.tf", "README.md"):
        assert (MODULE / name).is_file(), f"infra/terraform/{name} is missing"
    roots = [p.parent for p in EXAMPLES.glob("*/main.tf")]
    assert roots, "infra/terraform/examples/ has no root module"
    for root in roots:
        modules = parse(root / "main.tf").get("module", [])
        sources = [body["source"] for block in modules for body in block.values()]
        assert "../.." in sources, f"{root} does not use the module"


def test_versions_pin_terraform_and_the_aws_provider_major(tf):
    (block,) = tf.terraform
    assert block["required_version"] == ">= 1.5"
    (providers,) = blocks(block["required_providers"])
    aws = providers["aws"]
    assert aws["source"] == "hashicorp/aws"
    assert re.fullmatch(r"~> \d+\.0", aws["version"]), aws["version"]


def test_every_variable_has_description_and_type(tf):
    for name, body in tf.variables.items():
        assert body.get("description"), f"variable {name} has no description"
        assert body.get("type"), f"variable {name} has no type"


def test_name_inputs_are_validated_with_the_python_patterns(tf):
    """The validation regexes are naming.py's, character for character."""
    for var, pattern in (
        ("platform", naming.PLATFORM_RE.pattern),
        ("project", naming.PROJECT_RE.pattern),
        ("envs", naming.ENV_RE.pattern),
    ):
        conditions = [v["condition"] for v in blocks(tf.variables[var].get("validation"))]
        assert any(f'regex("{pattern}"' in c for c in conditions), (var, conditions)
    assert tf.variables["platform"]["default"] == naming.DEFAULT_PLATFORM


def test_required_outputs_exist_with_descriptions(tf):
    missing = REQUIRED_OUTPUTS - tf.outputs.keys()
    assert not missing, f"outputs missing: {sorted(missing)}"
    for name, body in tf.outputs.items():
        assert body.get("description"), f"output {name} has no description"


def test_example_outputs_pass_through_existing_module_outputs(tf):
    for main in EXAMPLES.glob("*/main.tf"):
        for block in parse(main).get("output", []):
            for name, body in block.items():
                ref = re.fullmatch(r"\$\{module\.mlops\.(\w+)\}", body["value"])
                assert ref, f"{main}: output {name} is not a module output"
                assert ref.group(1) in tf.outputs, f"{main}: module has no output {ref.group(1)}"


# -- names: HCL against mlops_core.naming ----------------------------------------------

TERRAFORM = shutil.which("terraform")
needs_terraform = pytest.mark.skipif(
    TERRAFORM is None, reason="terraform is not on PATH: naming.tf cannot be evaluated"
)

# Locals of naming.tf with no Python counterpart: helpers, and a role only EventBridge uses.
TERRAFORM_ONLY_LOCALS = {"elb_name_max", "elb_long_names", "events_role_name"}


@pytest.fixture(scope="module")
def console_dir(tmp_path_factory) -> Path:
    """variables.tf and naming.tf alone: no provider, so no ``terraform init`` is needed."""
    folder = tmp_path_factory.mktemp("naming")
    for name in ("variables.tf", "naming.tf"):
        shutil.copy(MODULE / name, folder / name)
    (folder / "empty.tfrc").write_text("")
    return folder


def console(folder: Path, expression: str, variables: dict[str, Any]) -> tuple[str, str]:
    """Evaluate ``expression`` with ``terraform console``; returns (stdout, stderr)."""
    (folder / "test.tfvars.json").write_text(json.dumps(variables))
    env = {
        **os.environ,
        "TF_CLI_CONFIG_FILE": str(folder / "empty.tfrc"),
        "TF_IN_AUTOMATION": "1",
        "CHECKPOINT_DISABLE": "1",
    }
    proc = subprocess.run(
        [TERRAFORM, "-chdir=" + str(folder), "console", "-no-color", "-var-file=test.tfvars.json"],
        input=expression + "\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    return proc.stdout, proc.stderr


def evaluate(folder: Path, expression: str, variables: dict[str, Any]) -> Any:
    out, err = console(folder, f"jsonencode({expression})", variables)
    assert "Error" not in err, err
    # The console prints the JSON as an HCL string literal.
    return json.loads(json.loads(out.strip().splitlines()[-1]))


SAMPLES = [
    # (MLOPS_PLATFORM, MLOPS_ARTIFACT_BUCKET, project, envs)
    (None, None, "usedcar-price", ["staging", "prod"]),
    ("acme-ml", "acme-models.example", "p2", ["dev"]),
    # 28-character load balancer name, 34-character green target group: only it is cut.
    ("mlops", None, "usedcar-prices", ["staging"]),
    # Longest inputs: every load balancer name needs the hash suffix.
    ("a" * 21 + "z", None, "b" * 31 + "c", ["production", "p"]),
]


@needs_terraform
@pytest.mark.parametrize(("platform", "bucket", "project", "envs"), SAMPLES)
def test_naming_tf_builds_the_python_names(
    console_dir, monkeypatch, platform, bucket, project, envs
):
    # The Python side reads the same inputs from the environment, as the CLI does.
    for key, value in (("MLOPS_PLATFORM", platform), ("MLOPS_ARTIFACT_BUCKET", bucket)):
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value)
    p = env_platform()

    variables: dict[str, Any] = {"project": project, "envs": envs}
    if platform is not None:
        variables["platform"] = platform
    if bucket is not None:
        variables["artifact_bucket_name"] = bucket

    expected = {
        "artifact_bucket": p.artifact_bucket,
        "ecs_cluster_name": p.ecs_cluster,
        "ecr_serving_repository": p.ecr_serving_repository,
        "ecr_training_repository": p.ecr_training_repository,
        "ssm_prefix": p.ssm_prefix,
        "desired_state_prefix": p.desired_state_prefix,
        "models_prefix": p.models_prefix(project),
        "drift_prefix": p.drift_prefix(project),
        "capture_root": p.capture_root(project),
        "drift_metrics_namespace": p.drift_metrics_namespace,
        "model_signing_key_alias": p.model_signing_key_alias,
        "promotion_signing_key_alias": p.promotion_signing_key_alias,
        "task_execution_role_name": p.task_execution_role,
        "ecs_infrastructure_role_name": p.ecs_infrastructure_role,
        "controller_role_name": p.controller_role,
        "serving_task_role_name": p.serving_task_role(project),
        "drift_task_role_name": p.drift_task_role(project),
        "drift_task_family": p.drift_task_family(project),
        "drift_log_group_name": p.drift_log_group(project),
        "registration_prefix": p.registration_prefix(project),
        "legacy_registration_key": p.legacy_registration_key(project),
        "training_task_role_name": p.training_task_role(project),
        "training_task_family": p.training_task_family(project),
        "training_log_group_name": p.training_log_group(project),
        "training_data_prefix": p.training_data_prefix(project),
        "candidates_prefix": p.candidates_prefix(project),
        "promotions_root": p.promotions_root(project),
        "cost_tag_keys": naming.COST_TAG_KEYS,
        # var.tags is empty here; test_cost_tags_win_over_user_tags adds some.
        "tags": p.cost_tags(project),
        "env_tags": {env: p.cost_tags(project, env) for env in envs},
        "drift_dlq_name": p.drift_dead_letter_queue(project),
    }
    # Every name naming.tf defines is compared: a new local needs a Python counterpart.
    naming_locals = {k for block in parse(MODULE / "naming.tf")["locals"] for k in block}
    assert naming_locals - TERRAFORM_ONLY_LOCALS == set(expected) | {"env_names"}

    got = evaluate(
        console_dir, "{" + ", ".join(f"{k} = local.{k}" for k in expected) + "}", variables
    )
    assert got == expected

    env_names = evaluate(console_dir, "local.env_names", variables)
    assert env_names == {
        env: {
            "pointer_param": p.pointer_param(project, env),
            "service": p.service_name(project, env),
            "task_family": p.task_family(project, env),
            "log_group": p.log_group(project, env),
            "deployment": p.deployment_name(project, env),
            "alb": p.load_balancer(project, env),
            "tg_blue": p.target_group(project, env, "blue"),
            "tg_green": p.target_group(project, env, "green"),
        }
        for env in envs
    }
    for names in env_names.values():
        for key in ("alb", "tg_blue", "tg_green"):
            assert len(names[key]) <= naming.ELB_NAME_MAX


def render(template: str, values: dict[str, str]) -> str:
    """Fill a plain template (literal text and ``${var.x}`` / ``${env}``) with values."""
    out = re.sub(r"\$\{(?:var\.)?(\w+)\}", lambda m: values[m.group(1)], template)
    assert "${" not in out, template
    return out


def test_plain_name_templates_match_python_without_terraform():
    """The same comparison for the plain templates, from the parsed HCL alone (no binary)."""
    (block,) = parse(MODULE / "naming.tf")["locals"]
    platform, project, env = "acme-ml", "usedcar-price", "prod"
    p = naming.Platform(platform=platform, artifact_bucket=naming.artifact_bucket_name(platform))
    expected = {
        "ecs_cluster_name": p.ecs_cluster,
        "ecr_serving_repository": p.ecr_serving_repository,
        "ecr_training_repository": p.ecr_training_repository,
        "ssm_prefix": p.ssm_prefix,
        "models_prefix": p.models_prefix(project),
        "drift_prefix": p.drift_prefix(project),
        "capture_root": p.capture_root(project),
        "drift_metrics_namespace": p.drift_metrics_namespace,
        "model_signing_key_alias": p.model_signing_key_alias,
        "promotion_signing_key_alias": p.promotion_signing_key_alias,
        "task_execution_role_name": p.task_execution_role,
        "ecs_infrastructure_role_name": p.ecs_infrastructure_role,
        "controller_role_name": p.controller_role,
        "serving_task_role_name": p.serving_task_role(project),
        "drift_task_role_name": p.drift_task_role(project),
        "drift_task_family": p.drift_task_family(project),
        "drift_log_group_name": p.drift_log_group(project),
        "registration_prefix": p.registration_prefix(project),
        "legacy_registration_key": p.legacy_registration_key(project),
        "training_task_role_name": p.training_task_role(project),
        "training_task_family": p.training_task_family(project),
        "training_log_group_name": p.training_log_group(project),
        "training_data_prefix": p.training_data_prefix(project),
        "candidates_prefix": p.candidates_prefix(project),
        "promotions_root": p.promotions_root(project),
        "drift_dlq_name": p.drift_dead_letter_queue(project),
    }
    values = {"platform": platform, "project": project, "env": env}
    for key, want in expected.items():
        assert render(block[key], values) == want, key
    # coalesce(override, default): the default is the Python default.
    (default,) = re.findall(r'"(\$\{var\.platform\}[^"]*)"', block["artifact_bucket"])
    assert render(default, values) == p.artifact_bucket
    per_env = {
        "pointer_param": p.pointer_param(project, env),
        "service": p.service_name(project, env),
        "task_family": p.task_family(project, env),
        "log_group": p.log_group(project, env),
        "deployment": p.deployment_name(project, env),
    }
    for key, want in per_env.items():
        (template,) = re.findall(rf'\b{key} = "([^"]+)"', block["env_names"])
        assert render(template, values) == want, key


BAD_INPUTS = [
    ("project", "Usedcar", lambda v: naming.check_project(v)),
    ("project", "1abc", lambda v: naming.check_project(v)),
    ("project", "abc-", lambda v: naming.check_project(v)),
    ("project", "x" * 33, lambda v: naming.check_project(v)),
    ("envs", ["pro-d"], lambda v: naming.check_env(v[0])),
    ("envs", ["abcdefghijk"], lambda v: naming.check_env(v[0])),
    ("platform", "Mlops", None),
    ("platform", "a" * 23, None),
]


@needs_terraform
@pytest.mark.parametrize(("var", "value", "python_check"), BAD_INPUTS)
def test_terraform_rejects_the_names_python_rejects(
    console_dir, monkeypatch, tf, var, value, python_check
):
    if python_check is None:
        monkeypatch.setenv("MLOPS_PLATFORM", value)
        with pytest.raises(InvalidInput):
            env_platform()
    else:
        with pytest.raises(InvalidInput):
            python_check(value)
    variables = {"project": "usedcar-price", var: value}
    _, err = console(console_dir, '"evaluated"', variables)
    assert "Invalid value for variable" in err, err
    # The message is the variable's own (Terraform wraps long lines).
    messages = [v["error_message"] for v in blocks(tf.variables[var]["validation"])]
    flat = " ".join(err.split())
    assert any(" ".join(m.split())[:40] in flat for m in messages), err


@needs_terraform
def test_cost_tags_win_over_user_tags(console_dir):
    """var.tags may add tags but never replace a cost allocation tag."""
    p = naming.Platform()
    user = {"owner": "ml-platform", naming.COST_TAG_PROJECT: "someone-else"}
    variables = {"project": "usedcar-price", "envs": ["prod"], "tags": user}
    got = evaluate(console_dir, "local.env_tags", variables)
    assert got == {"prod": {"owner": "ml-platform", **p.cost_tags("usedcar-price", "prod")}}


def test_cost_tag_keys_are_valid_aws_tag_keys():
    for key in naming.COST_TAG_KEYS.values():
        # Tag keys: 1-128 characters of letters, digits, spaces and _.:/=+-@, no aws: prefix.
        assert re.fullmatch(r"[\w.:/=+\-@ ]{1,128}", key) and not key.startswith("aws:"), key
    tags = naming.cost_tags("mlops", "usedcar-price", "prod")
    assert tags == {
        "mlops:platform": "mlops",
        "mlops:project": "usedcar-price",
        "mlops:env": "prod",
        "mlops:deployment": "usedcar-price-prod",
    }
    with pytest.raises(InvalidInput):
        naming.cost_tags("mlops", env="prod")


# Resource types the AWS provider gives no tags argument.
UNTAGGABLE = {
    "aws_appautoscaling_policy",
    "aws_iam_role_policy_attachment",
    "aws_cloudwatch_event_target",
    "aws_ecr_lifecycle_policy",
    "aws_iam_role_policy",
    "aws_kms_alias",
    "aws_route_table_association",
    "aws_s3_bucket_lifecycle_configuration",
    "aws_s3_bucket_logging",
    "aws_s3_bucket_ownership_controls",
    "aws_s3_bucket_policy",
    "aws_s3_bucket_public_access_block",
    "aws_s3_bucket_server_side_encryption_configuration",
    "aws_scheduler_schedule",
    "aws_sqs_queue_policy",
    "aws_s3_bucket_versioning",
}
PER_ENV_FOR_EACH = re.compile(r"local\.(envs|serving_envs|drift_envs)\b")


def test_every_taggable_resource_carries_the_cost_tags(tf):
    """Platform-wide resources take local.tags, per-env ones local.env_tags (both built
    in naming.tf, evaluated against naming.cost_tags above)."""
    for (rtype, name), body in tf.resources.items():
        tags = body.get("tags")
        if rtype in UNTAGGABLE:
            assert tags is None, f"{rtype}.{name}: tags on an untaggable type?"
            continue
        assert tags is not None, f"{rtype}.{name} has no tags"
        per_env = bool(PER_ENV_FOR_EACH.search(str(body.get("for_each", ""))))
        if per_env:
            assert tags == "${local.env_tags[each.key]}", (rtype, name, tags)
        elif (rtype, name) == ("aws_lb_target_group", "this"):
            assert tags.startswith("${merge(local.env_tags[each.value.env],"), tags
        else:
            assert re.fullmatch(r"\$\{(local\.tags|merge\(local\.tags, .*\))\}", tags), (
                rtype,
                name,
                tags,
            )


def test_example_sets_the_platform_cost_tags_as_default_tags():
    (provider,) = [
        body for block in parse(EXAMPLES / "basic" / "main.tf")["provider"] for body in [block]
    ]
    (default_tags,) = blocks(provider["aws"]["default_tags"])
    assert default_tags["tags"] == {
        naming.COST_TAG_PLATFORM: naming.DEFAULT_PLATFORM,
        naming.COST_TAG_PROJECT: "${var.project}",
    }


# -- resources use the naming locals ----------------------------------------------------


def test_resources_take_their_names_from_naming_tf(tf):
    r = tf.resource
    assert r("aws_s3_bucket", "artifacts")["bucket"] == "${local.artifact_bucket}"
    assert r("aws_ecs_cluster", "this")["name"] == "${local.ecs_cluster_name}"
    ecr_for_each = r("aws_ecr_repository", "this")["for_each"]
    assert ecr_for_each == {
        "serving": "${local.ecr_serving_repository}",
        "training": "${local.ecr_training_repository}",
    }
    per_env = {
        ("aws_ssm_parameter", "model_pointer", "name"): "pointer_param",
        ("aws_ecs_service", "serving", "name"): "service",
        ("aws_ecs_task_definition", "serving", "family"): "task_family",
        ("aws_cloudwatch_log_group", "serving", "name"): "log_group",
        ("aws_lb", "this", "name"): "alb",
    }
    for (rtype, rname, attr), key in per_env.items():
        assert r(rtype, rname)[attr] == f"${{local.env_names[each.key].{key}}}", (rtype, rname)
    assert r("aws_lb_target_group", "this")["name"] == "${each.value.name}"
    assert 'local.env_names[pair[0]]["tg_${pair[1]}"]' in tf.locals["target_groups"]
    roles = {
        "task_execution": "task_execution_role_name",
        "ecs_infrastructure": "ecs_infrastructure_role_name",
        "serving_task": "serving_task_role_name",
        "drift_task": "drift_task_role_name",
        "controller": "controller_role_name",
        "events": "events_role_name",
    }
    for rname, local in roles.items():
        assert r("aws_iam_role", rname)["name"] == f"${{local.{local}}}"
    assert r("aws_cloudwatch_log_group", "drift")["name"] == "${local.drift_log_group_name}"
    assert r("aws_ecs_task_definition", "drift")["family"] == "${local.drift_task_family}"
    assert r("aws_iam_role", "training_task")["name"] == "${local.training_task_role_name}"
    assert r("aws_ecs_task_definition", "training")["family"] == "${local.training_task_family}"
    assert r("aws_cloudwatch_log_group", "training")["name"] == "${local.training_log_group_name}"


# -- lifecycle: what the controller owns ----------------------------------------------


def lifecycle_ignores(body: dict) -> list[str]:
    return [
        item
        for lc in blocks(body.get("lifecycle"))
        for item in as_list(lc.get("ignore_changes", []))
    ]


def test_the_production_rule_weights_belong_to_ecs(tf):
    """ECS moves the rule's weights during Canary, Linear and BlueGreen deployments; a
    Terraform that reset them on the next apply would fight it (the issue users of ECS
    blue/green report with IaC tools)."""
    rule = tf.resource("aws_lb_listener_rule", "production")
    assert "action" in lifecycle_ignores(rule)
    assert rule["priority"] == 1
    (action,) = blocks(rule["action"])
    (forward,) = blocks(action["forward"])
    weights = [g["weight"] for g in blocks(forward["target_group"])]
    assert weights == [100, 0], "created all to blue; ECS shifts from there"
    assert "https" in rule["listener_arn"] and "http_forward" in rule["listener_arn"]


def test_service_leaves_task_definition_to_the_controller(tf):
    service = tf.resource("aws_ecs_service", "serving")
    assert "task_definition" in lifecycle_ignores(service)
    (breaker,) = blocks(service["deployment_circuit_breaker"])
    assert breaker == {"enable": True, "rollback": True}
    assert service["launch_type"] == "FARGATE"
    (network,) = blocks(service["network_configuration"])
    assert network["assign_public_ip"] is False
    assert network["subnets"] == "${local.private_subnet_ids}"
    assert service["health_check_grace_period_seconds"] == (
        "${var.health_check_grace_period_seconds}"
    )
    task = tf.resource("aws_ecs_task_definition", "serving")
    assert task["network_mode"] == "awsvpc"
    assert task["requires_compatibilities"] == ["FARGATE"]


def test_pointer_parameter_leaves_its_value_to_the_controller(tf):
    param = tf.resource("aws_ssm_parameter", "model_pointer")
    assert lifecycle_ignores(param) == ["value"]
    assert param["for_each"] == "${local.envs}"


def test_serving_container_matches_the_service_contract(tf):
    """Port and env vars the serving image reads (serving/settings.py, controller API)."""
    assert tf.locals["serving_port"] == Serving.model_fields["port"].default == 8080
    container = tf.resource("aws_ecs_task_definition", "serving")["container_definitions"]
    for var in ("MLOPS_PROJECT", "MLOPS_ENV", "MLOPS_PLATFORM", "AWS_REGION"):
        assert f'name = "{var}"' in container, var
    assert "readonlyRootFilesystem = true" in container
    tg = tf.resource("aws_lb_target_group", "this")
    (health,) = blocks(tg["health_check"])
    assert health["path"] == "${var.health_check_path}"
    assert tg["port"] == "${local.serving_port}"
    assert tg["target_type"] == "ip"


def test_load_balancers_the_controller_creates_are_the_modules(tf):
    """Where the platform owns the load balancers (the local data plane), the controller
    creates them with the settings alb.tf and ecs.tf give them (controller.loadbalancing)."""
    from controller import loadbalancing

    tg = tf.resource("aws_lb_target_group", "this")
    (health,) = blocks(tg["health_check"])
    check = loadbalancing.HEALTH_CHECK
    assert tf.variables["health_check_path"]["default"] == check["HealthCheckPath"] == "/ready"
    assert health["matcher"] == check["Matcher"]["HttpCode"]
    assert health["interval"] == check["HealthCheckIntervalSeconds"]
    assert health["timeout"] == check["HealthCheckTimeoutSeconds"]
    assert health["healthy_threshold"] == check["HealthyThresholdCount"]
    assert health["unhealthy_threshold"] == check["UnhealthyThresholdCount"]
    assert tg["deregistration_delay"] == loadbalancing.DEREGISTRATION_DELAY_SECONDS
    grace = tf.variables["health_check_grace_period_seconds"]["default"]
    assert grace == loadbalancing.HEALTH_CHECK_GRACE_SECONDS
    listener = tf.resource("aws_lb_listener", "http_forward")
    assert listener["port"] == loadbalancing.LISTENER_PORT


# -- IAM ------------------------------------------------------------------------------


def policy_documents(tf) -> dict[str, dict]:
    return {
        name: body for (rtype, name), body in tf.data.items() if rtype == "aws_iam_policy_document"
    }


def effective_statements(tf, name: str) -> list[dict]:
    """A document's statements with those of its source_policy_documents, as the
    aws_iam_policy_document data source merges them."""
    docs = policy_documents(tf)
    doc = docs[name]
    out = statements(doc)
    for ref in as_list(doc.get("source_policy_documents", [])):
        m = re.fullmatch(r"\$\{data\.aws_iam_policy_document\.(\w+)\.json\}", ref)
        assert m, f"{name}: source document {ref} is not a policy document of the module"
        out.extend(effective_statements(tf, m.group(1)))
    return out


# In a key policy, Resource "*" is the key itself; the key policy tests check them.
KEY_POLICIES = {"model_signing_key", "promotion_signing_key", "signing_key_administration"}


def test_iam_allow_statements_have_no_wildcard_actions_and_scoped_resources(tf):
    docs = policy_documents(tf)
    assert {"task_execution", "serving_task", "drift_task", "events", "controller"} <= set(docs)
    checked = 0
    for name, doc in docs.items():
        if name in KEY_POLICIES:
            continue
        for st in statements(doc):
            actions = as_list(st.get("actions", []))
            assert actions, f"{name}: a statement without actions"
            assert not any("*" in a for a in actions if st.get("effect", "Allow") == "Allow"), (
                f"{name}: wildcard action in {actions}"
            )
            resources = as_list(st.get("resources", []))
            if st.get("effect", "Allow") == "Allow" and "*" in resources:
                assert set(actions) <= UNSCOPABLE_ACTIONS, (
                    f'{name}: Resource "*" for actions IAM can scope: '
                    f"{set(actions) - UNSCOPABLE_ACTIONS}"
                )
            checked += 1
    assert checked >= 15


def deny_statements(tf) -> dict[tuple[str, str], dict]:
    return {
        (name, st["sid"]): st
        for name, doc in policy_documents(tf).items()
        for st in statements(doc)
        if st.get("effect") == "Deny"
    }


def test_the_denies_are_tls_published_versions_and_signing(tf):
    """Exactly these: no TLS, then under */models/* every way of changing a published
    object (an unconditional write, a version delete, a retention bypass or a mode
    change), and kms:Sign for everyone but the signers of each key."""
    denies = deny_statements(tf)
    models = "${local.published_model_objects}"
    expected = {
        ("artifacts_bucket", "DenyInsecureTransport"): (["s3:*"], None),
        ("artifacts_bucket", "DenyModelOverwrites"): (
            ["s3:PutObject"],
            {"test": "Null", "variable": "s3:if-none-match", "values": ["true"]},
        ),
        ("artifacts_bucket", "DenyRecordOverwrites"): (
            ["s3:PutObject"],
            {"test": "Null", "variable": "s3:if-none-match", "values": ["true"]},
        ),
        ("artifacts_bucket", "DenyModelVersionDeletes"): (["s3:DeleteObjectVersion"], None),
        ("artifacts_bucket", "DenyModelRetentionBypass"): (
            ["s3:BypassGovernanceRetention"],
            None,
        ),
        ("artifacts_bucket", "DenyModelRetentionModeChange"): (
            ["s3:PutObjectRetention"],
            {
                "test": "StringNotEquals",
                "variable": "s3:object-lock-mode",
                "values": ["GOVERNANCE"],
            },
        ),
        ("model_signing_key", "DenySigningToAllButPublishers"): (["kms:Sign"], None),
        ("promotion_signing_key", "DenySigningToAllButPromoters"): (["kms:Sign"], None),
    }
    assert set(denies) == set(expected)
    for key, (actions, condition) in expected.items():
        st = denies[key]
        assert as_list(st["actions"]) == actions, key
        (principal,) = blocks(st["principals"])
        assert principal == {"type": "*", "identifiers": ["*"]}, key
        if condition is not None:
            assert blocks(st.get("condition")) == [condition], key
        if key[1] == "DenyRecordOverwrites":
            assert st["resources"] == "${local.append_only_records}"
            assert object_patterns(tf.locals["append_only_records"]) == [
                "*/registration/*",
                "*/promotions/*",
                "*/claims/*",
                "*/approvals/*",
            ]
        elif key[0] == "artifacts_bucket" and key[1] != "DenyInsecureTransport":
            assert as_list(st["resources"]) == [models], key
            if condition is None:
                assert "condition" not in st, key
    (tls,) = blocks(denies[("artifacts_bucket", "DenyInsecureTransport")]["condition"])
    assert (tls["variable"], tls["values"]) == ("aws:SecureTransport", ["false"])
    assert tf.locals["published_model_objects"] == "${aws_s3_bucket.artifacts.arn}/*/models/*"


def object_patterns(resources: list[str]) -> list[str]:
    """Object ARN patterns of the artifact bucket as key patterns (what follows 'arn/')."""
    out = []
    for arn in resources:
        m = re.fullmatch(r"\$\{aws_s3_bucket\.artifacts\.arn\}/(.+)", arn)
        assert m, arn
        out.append(m.group(1))
    return out


def key_matches(patterns: list[str], key: str, local: dict[str, str]) -> bool:
    """Whether an S3 key falls under one of the key patterns, with ``${local.x}`` filled
    from ``local`` ('*' spans '/', as in IAM)."""
    return any(
        fnmatch.fnmatchcase(key, re.sub(r"\$\{local\.(\w+)\}", lambda m: local[m.group(1)], pat))
        for pat in patterns
    )


def test_published_version_denies_cover_every_version_and_nothing_else():
    """The */models/* pattern matches every object of a published version (naming's
    version_prefix) for any project, and none of the keys that must stay writable."""
    p = naming.Platform()
    for project in ("usedcar-price", "p2"):
        prefix = p.version_prefix(project, "20261128T064500Z-3f9a2c1")
        for name in ("model.onnx", "manifest.json", "manifest.sig", "publication.json"):
            assert fnmatch.fnmatchcase(prefix + name, "*/models/*"), prefix + name
        for key in (
            p.capture_root(project) + "prod/v1/part-0.jsonl",
            p.drift_prefix(project) + "prod/drift.json",
            p.candidates_prefix(project) + "run-1/model.onnx",
            p.registration_key(project, 1),
            p.desired_state_prefix + f"{project}-prod.yaml",
        ):
            assert not fnmatch.fnmatchcase(key, "*/models/*"), key


def test_controller_writes_only_publications_desired_state_and_the_promotion_log(tf):
    sts = effective_statements(tf, "controller")
    writes = [st for st in sts if "s3:PutObject" in as_list(st["actions"])]
    (write,) = writes
    assert sorted(as_list(write["actions"])) == ["s3:PutObject", "s3:PutObjectTagging"]
    assert write["resources"] == "${local.controller_written_objects}"
    patterns = object_patterns(tf.locals["controller_written_objects"])
    p = naming.Platform()
    project = "usedcar-price"
    local = {"desired_state_prefix": p.desired_state_prefix}
    may = [
        p.version_prefix(project, "v1") + "publication.json",
        p.desired_state_prefix + f"{project}-prod.status.json",
        p.desired_state_prefix + ".leases/controller.json",
        f"{project}/promotions/prod/00000001.json",
        p.claim_key(project, "prod"),
    ]
    must_not = [
        p.candidates_prefix(project) + "run-1/manifest.sig",  # only publishers sign
        p.registration_key(project, 1),  # the gates: changed only by registration
        p.capture_root(project) + "prod/x.jsonl",
        p.drift_prefix(project) + "prod/drift.json",
        p.training_data_prefix(project) + "train.csv",
    ]
    for key in may:
        assert key_matches(patterns, key, local), key
    for key in must_not:
        assert not key_matches(patterns, key, local), key
    (retention,) = [st for st in sts if "s3:PutObjectRetention" in as_list(st["actions"])]
    assert object_patterns(as_list(retention["resources"])) == ["*/models/*"]


def test_no_role_may_sign_and_readers_verify(tf):
    docs = policy_documents(tf)
    for name in docs:
        if name in KEY_POLICIES:
            continue
        for st in effective_statements(tf, name):
            assert not any(a.startswith("kms:Sign") for a in as_list(st["actions"])), name
    key_arn = "${aws_kms_key.model_signing.arn}"
    for role in ("controller", "serving_task", "drift_task"):
        sts = effective_statements(tf, role)
        (verify,) = [st for st in sts if "kms:GetPublicKey" in as_list(st["actions"])]
        assert sorted(as_list(verify["actions"])) == ["kms:DescribeKey", "kms:GetPublicKey"]
        assert as_list(verify["resources"]) == [key_arn], role
        versions = [st for st in sts if "s3:GetObjectVersion" in as_list(st["actions"])]
        assert [object_patterns(as_list(st["resources"])) for st in versions] == [
            ["${local.models_prefix}*"]
        ], role
        (listing,) = [st for st in sts if "s3:ListBucketVersions" in as_list(st["actions"])]
        (cond,) = blocks(listing["condition"])
        assert (cond["test"], cond["variable"]) == ("StringLike", "s3:prefix"), role
        assert {"${local.models_prefix}", "${local.models_prefix}*"} <= set(cond["values"]), role
        if role != "controller":
            # Versions are listed under the same prefixes as the objects.
            assert "s3:ListBucket" in as_list(listing["actions"]), role
    # The trainer reads data and writes candidates; it neither signs nor verifies.
    assert "kms:" not in json.dumps(effective_statements(tf, "training_task"))


def test_model_signing_key_is_an_asymmetric_signing_key_under_the_python_alias(tf):
    key = tf.resource("aws_kms_key", "model_signing")
    assert key["customer_master_key_spec"] == "ECC_NIST_P256"
    assert key["key_usage"] == "SIGN_VERIFY"
    assert key["enable_key_rotation"] is False  # asymmetric keys cannot rotate
    assert key["policy"] == "${data.aws_iam_policy_document.model_signing_key.json}"
    alias = tf.resource("aws_kms_alias", "model_signing")
    assert alias["name"] == "${local.model_signing_key_alias}"
    assert alias["target_key_id"] == "${aws_kms_key.model_signing.key_id}"
    # What serving and the CLI use when MLOPS_SIGNING_KEY is unset.
    assert naming.Platform(platform="acme-ml").model_signing_key == "alias/acme-ml-model-signing"
    assert tf.outputs["model_signing_key_arn"]["value"] == "${aws_kms_key.model_signing.arn}"
    for rtype, name in (
        ("aws_ecs_task_definition", "serving"),
        ("aws_ecs_task_definition", "drift"),
    ):
        container = tf.resource(rtype, name)["container_definitions"]
        assert 'name = "MLOPS_SIGNING_KEY", value = aws_kms_key.model_signing.arn' in container


def test_model_signing_key_policy(tf):
    """The account administers but does not sign; only the publishers sign; an explicit
    Deny covers every other principal; verifiers read the public key."""
    doc = policy_documents(tf)["model_signing_key"]
    static = {st["sid"]: st for st in effective_statements(tf, "model_signing_key")}
    admin = static["AdministerKey"]
    (principal,) = blocks(admin["principals"])
    assert principal == {"type": "AWS", "identifiers": ["${local.account_root_arn}"]}
    assert tf.locals["account_root_arn"] == "arn:${local.partition}:iam::${local.account_id}:root"
    admin_actions = as_list(admin["actions"])
    assert "kms:PutKeyPolicy" in admin_actions  # else KMS refuses the policy (lockout)
    assert not any("*" in a for a in admin_actions)
    for forbidden in ("kms:Sign", "kms:CreateGrant", "kms:Decrypt"):
        assert forbidden not in admin_actions, forbidden

    (dyn,) = [body["statement"] for body in blocks(doc["dynamic"]) if "statement" in body]
    assert dyn["for_each"] == (
        "${length(var.publisher_principal_arns) > 0 ? [var.publisher_principal_arns] : []}"
    )
    (sign,) = blocks(dyn["content"])
    assert as_list(sign["actions"]) == ["kms:Sign"]
    assert "effect" not in sign  # Allow
    (principal,) = blocks(sign["principals"])
    assert principal == {"type": "AWS", "identifiers": "${statement.value}"}

    deny = static["DenySigningToAllButPublishers"]
    assert deny["effect"] == "Deny" and as_list(deny["actions"]) == ["kms:Sign"]
    (cond,) = [body["condition"] for body in blocks(deny["dynamic"])]
    assert cond["for_each"] == dyn["for_each"]  # no publishers: denied to all, no condition
    assert blocks(cond["content"]) == [
        {"test": "ArnNotEquals", "variable": "aws:PrincipalArn", "values": "${condition.value}"}
    ]

    verify = static["VerifiersReadThePublicKey"]
    assert sorted(as_list(verify["actions"])) == [
        "kms:DescribeKey",
        "kms:GetPublicKey",
        "kms:Verify",
    ]
    (principal,) = blocks(verify["principals"])
    assert principal["identifiers"] == "${local.signature_verifier_arns}"
    verifiers = tf.locals["signature_verifier_arns"]
    for role in ("controller", "serving_task", "drift_task"):
        assert f"aws_iam_role.{role}.arn" in verifiers, role
    assert "var.publisher_principal_arns" in verifiers
    assert set(static) == {
        "AdministerKey",
        "PublishersSign",
        "VerifiersReadThePublicKey",
        "DenySigningToAllButPublishers",
    }


def test_promotion_signing_key_is_signed_by_the_controller_and_promoters_only(tf):
    """A second key, so that the publishers (who sign versions) cannot seal promotion-log
    entries and the controller (which seals them) cannot sign versions."""
    key = tf.resource("aws_kms_key", "promotion_signing")
    assert (key["customer_master_key_spec"], key["key_usage"]) == ("ECC_NIST_P256", "SIGN_VERIFY")
    assert key["policy"] == "${data.aws_iam_policy_document.promotion_signing_key.json}"
    alias = tf.resource("aws_kms_alias", "promotion_signing")
    assert alias["name"] == "${local.promotion_signing_key_alias}"
    assert tf.locals["promotion_signing_key_alias"] == "alias/${var.platform}-promotion-signing"
    assert naming.Platform(platform="acme-ml").promotion_signing_key == (
        "alias/acme-ml-promotion-signing"
    )
    assert tf.outputs["promotion_signing_key_arn"]["value"] == (
        "${aws_kms_key.promotion_signing.arn}"
    )
    static = {st["sid"]: st for st in effective_statements(tf, "promotion_signing_key")}
    assert set(static) == {
        "AdministerKey",
        "PromotersSign",
        "PromotionLogReadersReadThePublicKey",
        "DenySigningToAllButPromoters",
    }
    assert "kms:Sign" not in as_list(static["AdministerKey"]["actions"])
    signers = "${local.promotion_signer_arns}"
    assert tf.locals["promotion_signer_arns"] == (
        "${concat([aws_iam_role.controller.arn], var.promoter_principal_arns)}"
    )
    (principal,) = blocks(static["PromotersSign"]["principals"])
    assert principal == {"type": "AWS", "identifiers": signers}
    assert as_list(static["PromotersSign"]["actions"]) == ["kms:Sign"]
    deny = static["DenySigningToAllButPromoters"]
    assert deny["effect"] == "Deny" and as_list(deny["actions"]) == ["kms:Sign"]
    assert blocks(deny["condition"]) == [
        {"test": "ArnNotEquals", "variable": "aws:PrincipalArn", "values": signers}
    ]
    # The publishers are not signers of this key (they are of the model-signing key).
    assert "publisher" not in tf.locals["promotion_signer_arns"]


def test_controller_role_grants_what_the_controller_needs(tf):
    sts = effective_statements(tf, "controller")
    granted = {a for st in sts for a in as_list(st["actions"])}
    assert granted >= CONTROLLER_ACTIONS, CONTROLLER_ACTIONS - granted
    passes = [st for st in sts if "iam:PassRole" in as_list(st["actions"])]
    to_tasks = {"${aws_iam_role.task_execution.arn}", "${aws_iam_role.serving_task.arn}"}
    (pass_role,) = [st for st in passes if set(as_list(st["resources"])) == to_tasks]
    # The traffic-shifting role, and only to ECS itself (not to a task).
    (pass_shift,) = [st for st in passes if st is not pass_role]
    assert as_list(pass_shift["resources"]) == ["${aws_iam_role.ecs_infrastructure.arn}"]
    assert pass_shift["condition"][0]["values"] == ["ecs.amazonaws.com"]
    ssm = [st for st in sts if any(a.startswith("ssm:") for a in as_list(st["actions"]))]
    assert all(st["resources"] == "${local.pointer_param_arns}" for st in ssm)
    s3_resources = {
        r
        for st in sts
        if any(a.startswith("s3:") for a in as_list(st["actions"]))
        for r in as_list(st["resources"])
    }
    assert s3_resources == {
        "${aws_s3_bucket.artifacts.arn}",
        "${aws_s3_bucket.artifacts.arn}/*",
        "${aws_s3_bucket.artifacts.arn}/${local.models_prefix}*",
        "${aws_s3_bucket.artifacts.arn}/*/models/*",
        "${aws_s3_bucket.artifacts.arn}/${local.desired_state_prefix}*",
        "${aws_s3_bucket.artifacts.arn}/*/claims/*",
        "${local.controller_written_objects}",
    }
    # Reading stays bucket-wide; writing does not.
    (read,) = [st for st in sts if "s3:GetObject" in as_list(st["actions"])]
    assert as_list(read["actions"]) == ["s3:GetObject"]
    assert as_list(read["resources"]) == ["${aws_s3_bucket.artifacts.arn}/*"]


def test_controller_may_read_append_and_list_the_promotion_log(tf):
    """Every pointer move reads and conditionally creates log entries; finding the head
    without the pointer's help lists the log's prefix."""
    sts = {st.get("sid"): st for st in statements(policy_documents(tf)["controller"])}
    # Appending is one of the controller's writes (controller_written_objects, tested
    # with the others); reading is bucket-wide.
    listing = sts["ListPromotionLog"]
    assert as_list(listing["actions"]) == ["s3:ListBucket"]
    (cond,) = blocks(listing["condition"])
    assert (cond["test"], cond["variable"]) == ("StringLike", "s3:prefix")
    assert cond["values"] == ["${local.promotions_root}*"]


def test_controller_deletes_only_desired_state_and_claims(tf):
    """Status objects of removed manifests, and the claim a deleted deployment releases."""
    sts = statements(policy_documents(tf)["controller"])
    deletes = [st for st in sts if "s3:DeleteObject" in as_list(st["actions"])]
    assert all(as_list(st["actions"]) == ["s3:DeleteObject"] for st in deletes)
    assert sorted(r for st in deletes for r in as_list(st["resources"])) == [
        "${aws_s3_bucket.artifacts.arn}/${local.desired_state_prefix}*",
        "${aws_s3_bucket.artifacts.arn}/*/claims/*",
    ]
    p = naming.Platform()
    (claims,) = [st for st in deletes if "claims" in str(st["resources"])]
    assert key_matches(
        object_patterns(claims["resources"]), p.claim_key("usedcar-price", "prod"), {}
    )
    assert not key_matches(
        object_patterns(claims["resources"]), p.promotion_key("usedcar-price", "prod", 1), {}
    )


def test_controller_environment_output_names_what_the_controller_reads(tf, monkeypatch):
    """Each key is an environment variable the controller's config reads, together they
    fill every field of it, and each names the right resource."""
    value = tf.outputs["controller_environment"]["value"]
    for key in value:
        monkeypatch.setenv(key, "subnet-1,subnet-2" if key == "MLOPS_SUBNETS" else "x")
    monkeypatch.setenv("MLOPS_OBJECT_LOCK_DAYS", "7")
    monkeypatch.setenv("MLOPS_ASSIGN_PUBLIC_IP", "true")
    monkeypatch.setenv("MLOPS_LOAD_BALANCERS", value["MLOPS_LOAD_BALANCERS"])
    monkeypatch.setenv("MLOPS_PLATFORM", "acme-ml")
    net = NetworkConfig.from_settings(PlatformSettings.load())
    assert net.subnets == ("subnet-1", "subnet-2")
    assert net.security_groups == ("x",)
    assert net.assign_public_ip is True
    assert (net.execution_role_arn, net.task_role_arn) == ("x", "x")
    assert net.load_balancers == "terraform"
    p = env_platform()
    assert (p.platform, p.artifact_bucket, p.region) == ("acme-ml", "x", "x")
    assert (p.signing_key, p.model_signing_key, p.object_lock_days) == ("x", "x", 7)
    assert (p.promotion_log_key, p.promotion_signing_key) == ("x", "x")
    assert value == {
        "MLOPS_PLATFORM": "${var.platform}",
        "MLOPS_ARTIFACT_BUCKET": "${aws_s3_bucket.artifacts.bucket}",
        "AWS_REGION": "${local.region}",
        "MLOPS_SUBNETS": '${join(",", local.private_subnet_ids)}',
        "MLOPS_SECURITY_GROUPS": "${aws_security_group.serving.id}",
        "MLOPS_ASSIGN_PUBLIC_IP": "false",
        "MLOPS_EXECUTION_ROLE_ARN": "${aws_iam_role.task_execution.arn}",
        "MLOPS_TASK_ROLE_ARN": "${aws_iam_role.serving_task.arn}",
        "MLOPS_ECS_INFRASTRUCTURE_ROLE_ARN": "${aws_iam_role.ecs_infrastructure.arn}",
        "MLOPS_SIGNING_KEY": "${aws_kms_key.model_signing.arn}",
        "MLOPS_PROMOTION_KEY": "${aws_kms_key.promotion_signing.arn}",
        "MLOPS_OBJECT_LOCK_DAYS": LOCK_DAYS_EXPRESSION,
        "MLOPS_LOAD_BALANCERS": "terraform",
    }


LOCK_DAYS_EXPRESSION = '${var.object_lock.enabled ? tostring(var.object_lock.days) : "0"}'


@needs_terraform
@pytest.mark.parametrize(
    ("object_lock", "days"),
    [
        (None, naming.DEFAULT_OBJECT_LOCK_DAYS),
        ({"enabled": True, "days": 7}, 7),
        ({"enabled": False}, 0),
    ],
)
def test_controller_object_lock_days_is_what_python_reads(
    console_dir, monkeypatch, object_lock, days
):
    """The output's MLOPS_OBJECT_LOCK_DAYS, evaluated by terraform, parses on the Python
    side to the retention publishing applies (0: none, as without Object Lock)."""
    variables: dict[str, Any] = {"project": "usedcar-price"}
    if object_lock is not None:
        variables["object_lock"] = object_lock
    got = evaluate(
        console_dir, LOCK_DAYS_EXPRESSION.removeprefix("${").removesuffix("}"), variables
    )
    assert isinstance(got, str)
    monkeypatch.setenv("MLOPS_OBJECT_LOCK_DAYS", got)
    assert env_platform().object_lock_days == days


def test_controller_trusts_irsa_or_ecs_tasks(tf):
    doc = policy_documents(tf)["controller_trust"]
    dynamic = {label: body for dyn in blocks(doc["dynamic"]) for label, body in dyn.items()}
    assert not doc.get("statement")
    trusted = json.dumps(doc)
    assert "sts:AssumeRoleWithWebIdentity" in trusted
    assert "system:serviceaccount:" in trusted
    assert "ecs-tasks.amazonaws.com" in trusted
    assert "var.controller_oidc_provider_arn == null" in json.dumps(dynamic)


def test_training_role_reads_data_and_writes_only_candidates(tf):
    sts = statements(policy_documents(tf)["training_task"])
    writes = [st for st in sts if "s3:PutObject" in as_list(st["actions"])]
    assert [as_list(st["resources"]) for st in writes] == [
        ["${aws_s3_bucket.artifacts.arn}/${local.candidates_prefix}*"]
    ]
    actions = {a for st in sts for a in as_list(st["actions"])}
    assert actions == {"s3:GetObject", "s3:PutObject", "s3:ListBucket"}
    reads = {r for st in sts if "s3:GetObject" in st["actions"] for r in as_list(st["resources"])}
    assert "${aws_s3_bucket.artifacts.arn}/${local.training_data_prefix}*" in json.dumps(
        sorted(reads)
    )
    # The registration: every revision, and the legacy key read while none exists.
    assert "${aws_s3_bucket.artifacts.arn}/${local.registration_prefix}*" in reads
    assert "${aws_s3_bucket.artifacts.arn}/${local.legacy_registration_key}" in reads
    (listing,) = [st for st in sts if "s3:ListBucket" in as_list(st["actions"])]
    listed = json.dumps(listing["condition"])
    assert "${local.registration_prefix}*" in listed
    assert "models" not in json.dumps(sts)  # publishing is not the training task's


def test_training_task_definition_runs_the_training_image_with_its_log_group(tf):
    task = tf.resource("aws_ecs_task_definition", "training")
    assert task["count"] == "${local.training_enabled ? 1 : 0}"
    assert task["task_role_arn"] == "${aws_iam_role.training_task.arn}"
    assert task["execution_role_arn"] == "${aws_iam_role.task_execution.arn}"
    container = task["container_definitions"]
    assert "awslogs-group = aws_cloudwatch_log_group.training.name" in container
    assert "readonlyRootFilesystem = true" in container
    assert "aws_cloudwatch_log_group.training.arn" in tf.locals["log_group_arns"]
    assert "training" in tf.resource("aws_ecr_repository", "this")["for_each"]


def test_training_launcher_may_run_only_the_training_task(tf):
    sts = statements(policy_documents(tf)["training_launcher"])
    (run,) = [st for st in sts if "ecs:RunTask" in as_list(st["actions"])]
    assert run["resources"] == "${local.training_task_definition_arns}"
    assert "local.training_task_family" in tf.locals["training_task_definition_arns"][0]
    (pass_role,) = [st for st in sts if "iam:PassRole" in as_list(st["actions"])]
    assert sorted(as_list(pass_role["resources"])) == sorted(
        ["${aws_iam_role.task_execution.arn}", "${aws_iam_role.training_task.arn}"]
    )


def test_serving_task_role_only_reads_and_writes_capture(tf):
    sts = effective_statements(tf, "serving_task")
    actions = {a for st in sts for a in as_list(st["actions"])}
    assert actions == {
        "s3:GetObject",
        "s3:GetObjectVersion",
        "s3:ListBucket",
        "s3:ListBucketVersions",
        "ssm:GetParameter",
        "s3:PutObject",
        "kms:GetPublicKey",
        "kms:DescribeKey",
    }
    (put,) = [st for st in sts if "s3:PutObject" in as_list(st["actions"])]
    assert as_list(put["resources"]) == ["${aws_s3_bucket.artifacts.arn}/${local.capture_root}*"]


def test_drift_runs_on_the_scheduler_with_retries_and_a_dead_letter_queue(tf):
    schedule = tf.resource("aws_scheduler_schedule", "drift")
    assert schedule["for_each"] == "${local.drift_envs}"
    (target,) = blocks(schedule["target"])
    assert target["arn"] == "${aws_ecs_cluster.this.arn}"
    (retry,) = blocks(target["retry_policy"])
    assert retry["maximum_retry_attempts"] == "${var.drift_retry_attempts}"
    (dlq,) = blocks(target["dead_letter_config"])
    assert dlq["arn"] == "${aws_sqs_queue.drift_dlq[0].arn}"
    (ecs,) = blocks(target["ecs_parameters"])
    assert ecs["task_definition_arn"] == "${aws_ecs_task_definition.drift[0].arn_without_revision}"
    assert "MLOPS_ENV" in target["input"] and "each.key" in target["input"]
    assert tf.resource("aws_sqs_queue", "drift_dlq")["name"] == "${local.drift_dlq_name}"
    assert not any(t == "aws_cloudwatch_event_rule" for t, _ in tf.resources)
    # The job is `python -m monitoring` on the serving image unless told otherwise.
    assert tf.variables["drift_command"]["default"] == ["python", "-m", "monitoring"]
    assert "local.serving_image" in tf.locals["drift_image"]
    container = tf.resource("aws_ecs_task_definition", "drift")["container_definitions"]
    assert "local.drift_image" in container and "MLOPS_DRIFT_WINDOW" in container
    events = policy_documents(tf)["events_trust"]
    principals = [p for st in statements(events) for p in blocks(st["principals"])]
    assert principals[0]["identifiers"] == ["scheduler.amazonaws.com"]


# -- bucket, registry ----------------------------------------------------------------


def test_artifact_bucket_is_hardened(tf):
    r = tf.resource
    (versioning,) = blocks(r("aws_s3_bucket_versioning", "artifacts")["versioning_configuration"])
    assert versioning["status"] == "Enabled"
    pab = r("aws_s3_bucket_public_access_block", "artifacts")
    for key in ("block_public_acls", "block_public_policy", "ignore_public_acls"):
        assert pab[key] is True
    assert pab["restrict_public_buckets"] is True
    (rule,) = blocks(r("aws_s3_bucket_lifecycle_configuration", "artifacts")["rule"])
    (noncurrent,) = blocks(rule["noncurrent_version_expiration"])
    assert noncurrent["noncurrent_days"] == "${var.noncurrent_version_expiration_days}"
    assert "aws_s3_bucket_server_side_encryption_configuration" in {t for t, _ in tf.resources}


def test_object_lock_is_on_by_default_with_no_bucket_default_retention(tf):
    """The bucket is created with Object Lock; no default retention rule, which would lock
    captures and desired state too. Published objects get retention at publish, for the
    same number of days as the Python default."""
    assert tf.resource("aws_s3_bucket", "artifacts")["object_lock_enabled"] == (
        "${var.object_lock.enabled}"
    )
    lock = tf.variables["object_lock"]
    assert lock["default"] == {"enabled": True}
    assert "GOVERNANCE" in lock["description"]
    assert "mode" not in lock["type"]  # governance is what the platform sets
    assert re.search(r"days\s*=\s*optional\(number,\s*(\d+)\)", lock["type"]).group(1) == str(
        naming.DEFAULT_OBJECT_LOCK_DAYS
    )
    assert not any(t == "aws_s3_bucket_object_lock_configuration" for t, _ in tf.resources)


def test_ecr_repositories_are_immutable_and_scanned(tf):
    repo = tf.resource("aws_ecr_repository", "this")
    assert repo["image_tag_mutability"] == "IMMUTABLE"
    (scan,) = blocks(repo["image_scanning_configuration"])
    assert scan["scan_on_push"] is True
    assert tf.resource("aws_ecr_lifecycle_policy", "this")["for_each"] == (
        "${aws_ecr_repository.this}"
    )


# -- tools: terraform fmt, checkov ----------------------------------------------------


def test_terraform_fmt_is_clean():
    if TERRAFORM is None:
        pytest.skip("terraform is not on PATH: `terraform fmt -check` cannot run")
    proc = subprocess.run(
        [TERRAFORM, "fmt", "-check", "-recursive", "-diff", str(MODULE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, f"terraform fmt would change:\n{proc.stdout}{proc.stderr}"


def find_checkov() -> str | None:
    local = REPO / ".venv-tools" / "bin" / "checkov"
    if local.exists():
        return str(local)
    return shutil.which("checkov")


@pytest.fixture(scope="module")
def checkov_report() -> dict:
    """One checkov run over the module and its example, offline (--skip-download)."""
    binary = find_checkov()
    if binary is None:
        pytest.fail(
            "checkov not found at .venv-tools/bin/checkov or on PATH; install it with: "
            "python3 -m venv .venv-tools && .venv-tools/bin/pip install checkov"
        )
    proc = subprocess.run(
        [
            binary,
            "--directory",
            str(MODULE),
            "--framework",
            "terraform",
            "--skip-download",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert proc.stdout.strip(), f"checkov printed nothing (exit {proc.returncode}):\n{proc.stderr}"
    report = json.loads(proc.stdout)
    reports = report if isinstance(report, list) else [report]
    (tf_report,) = [r for r in reports if r.get("check_type") == "terraform"]
    summary = tf_report["summary"]
    print(
        f"checkov {summary['checkov_version']}: passed {summary['passed']}, "
        f"failed {summary['failed']}, skipped {summary['skipped']}, "
        f"parsing errors {summary['parsing_errors']}",
        file=sys.stderr,
    )
    return tf_report


def test_checkov_reports_no_failed_check(checkov_report):
    summary = checkov_report["summary"]
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']}:{c['file_line_range']}): "
        f"{c['check_name']}"
        for c in checkov_report["results"]["failed_checks"]
    ]
    assert summary["failed"] == 0, "checkov failed:\n" + "\n".join(failed)
    assert summary["parsing_errors"] == 0
    # Resources were really scanned (through the example's module call).
    assert summary["passed"] >= 100
    assert summary["resource_count"] >= 40


def test_checkov_skips_are_inline_with_a_reason(checkov_report):
    for check in checkov_report["results"]["skipped_checks"]:
        reason = (check["check_result"].get("suppress_comment") or "").strip()
        assert len(reason) >= 15, f"{check['check_id']} on {check['resource']}: no reason"
    skip_re = re.compile(r"#\s*checkov:skip=(\S+?):\s*(.*)$")
    for path in MODULE.rglob("*.tf"):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if "checkov:skip" in line:
                m = skip_re.search(line)
                assert m and len(m.group(2).strip()) >= 15, f"{path}:{n}: skip without a reason"


# -- README -----------------------------------------------------------------------------


def readme_table_names(heading: str) -> set[str]:
    text = README.read_text()
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([a-z0-9_]+)` \|", section, flags=re.M))


def test_readme_tables_list_every_input_and_output(tf):
    assert readme_table_names("Inputs") == set(tf.variables)
    assert readme_table_names("Outputs") == set(tf.outputs)


def test_readme_walks_from_apply_to_health_using_outputs_by_name():
    text = README.read_text()
    walk = text.split("## AWS", 1)[1].split("\n## ", 1)[0]
    assert "terraform apply" in walk
    assert re.search(r"curl .*alb_dns_name.*/health", walk)
    example_outputs = {
        name
        for main in EXAMPLES.glob("*/main.tf")
        for block in parse(main).get("output", [])
        for name in block
    }
    used = set(re.findall(r"terraform output (?:-raw |-json )?([a-z0-9_]+)", walk))
    assert used >= {"artifact_bucket", "ecr_repository_url", "alb_dns_name", "ecs_cluster_name"}
    assert used <= example_outputs, (
        f"README uses outputs the example lacks: {used - example_outputs}"
    )
    for script in re.findall(r"scripts/([a-z_]+\.sh)", walk):
        assert (REPO / "infra" / "scripts" / script).is_file(), script
