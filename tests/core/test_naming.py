"""The naming rules of mlops_core.naming, enumerated: within one platform, no two
resources of one kind ever get the same name, whatever the project and env names."""

from __future__ import annotations

import itertools

import pytest

from mlops_core import naming

# Names chosen to provoke collisions: projects that are prefixes of each other, end in
# what another rule appends ("-drift", "-job", "-serving"), or look like envs.
PROJECTS = ["fleet-price", "fleet-price-drift", "fleet", "price-job", "aa-prod", "aa", "ab",
            "drift-job", "xx-serving", "xx", "fleet-price-training", "training"]  # fmt: skip
ENVS = ["prod", "job", "drift", "dev", "staging", "serving", "blue", "green", "p1", "training"]
PLATFORM = naming.Platform()

# Every per-project/env name, by the AWS namespace it lives in (a task definition family
# and a service share nothing, but two families, or two log groups, must differ).
NAMESPACES = {
    "ecs task family": [
        *((("service", p, e), PLATFORM.task_family(p, e)) for p in PROJECTS for e in ENVS),
        *((("drift", p), PLATFORM.drift_task_family(p)) for p in PROJECTS),
        *((("training", p), PLATFORM.training_task_family(p)) for p in PROJECTS),
    ],
    "ecs service": [
        (("service", p, e), PLATFORM.service_name(p, e)) for p in PROJECTS for e in ENVS
    ],
    "log group": [
        *((("service", p, e), PLATFORM.log_group(p, e)) for p in PROJECTS for e in ENVS),
        *((("drift", p), PLATFORM.drift_log_group(p)) for p in PROJECTS),
        *((("training", p), PLATFORM.training_log_group(p)) for p in PROJECTS),
    ],
    "ssm parameter": [
        (("pointer", p, e), PLATFORM.pointer_param(p, e)) for p in PROJECTS for e in ENVS
    ],
    "iam role": [
        (("execution",), PLATFORM.task_execution_role),
        (("controller",), PLATFORM.controller_role),
        *((("serving", p), PLATFORM.serving_task_role(p)) for p in PROJECTS),
        *((("drift", p), PLATFORM.drift_task_role(p)) for p in PROJECTS),
        *((("training", p), PLATFORM.training_task_role(p)) for p in PROJECTS),
    ],
    "sqs queue": [(("drift dlq", p), PLATFORM.drift_dead_letter_queue(p)) for p in PROJECTS],
    "load balancer": [
        (("alb", p, e), PLATFORM.load_balancer(p, e)) for p in PROJECTS for e in ENVS
    ],
    "target group": [
        (("tg", p, e, c), PLATFORM.target_group(p, e, c))
        for p in PROJECTS
        for e in ENVS
        for c in naming.TARGET_GROUP_COLORS
    ],
}


@pytest.mark.parametrize("namespace", sorted(NAMESPACES))
def test_no_two_resources_of_one_kind_share_a_name(namespace):
    owners: dict[str, tuple] = {}
    for owner, name in NAMESPACES[namespace]:
        assert owners.setdefault(name, owner) == owner, (
            f"{namespace} {name!r} is both {owners[name]} and {owner}"
        )


def test_the_reported_collision_is_gone():
    """Project fleet-price-drift, env job, used to get fleet-price's drift job family."""
    assert PLATFORM.task_family("fleet-price-drift", "job") != PLATFORM.drift_task_family(
        "fleet-price"
    )


def test_job_names_carry_a_character_no_project_or_env_name_can():
    for value in itertools.chain(PROJECTS, ENVS):
        assert naming.JOB_SEPARATOR not in value
    with pytest.raises(naming.InvalidInput):
        naming.check_project(f"fleet{naming.JOB_SEPARATOR}price")
    with pytest.raises(naming.InvalidInput):
        naming.check_env(f"p{naming.JOB_SEPARATOR}1")
    assert naming.JOB_SEPARATOR in PLATFORM.drift_task_family("fleet-price")
