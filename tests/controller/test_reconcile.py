"""The reconcile path end to end against moto's server: what AWS holds afterwards."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import structlog
from reconcile_support import (
    PROJECT,
    cond,
    ecs_service,
    make_deployment,
    pointer_version,
    revisions,
    task_definition,
)

from controller.actions import (
    ENV_MODEL_SHA256,
    ENV_MODEL_URI,
    ENV_MODEL_VERSION,
    ClaimEnv,
    CreateService,
    MovePointer,
    PublishCandidate,
    RegisterTaskDefinition,
    UpdateService,
)
from controller.observe import COMPLETED, FAILED
from mlops_core import aws
from mlops_core.naming import MANAGED_BY_TAG
from mlops_core.pointer import PointerStore
from mlops_core.publication import SIGNATURE
from mlops_core.registry import Registry, sign_candidate


def test_first_deploy_creates_pinned_revision_service_and_pointer(
    make_reconciler, versions, platform, registry, mutations
):
    rec = make_reconciler()
    dep = make_deployment(version=versions.good)
    result = rec.reconcile(dep, None)

    kinds = [type(a) for a in result.actions]
    assert kinds == [ClaimEnv, RegisterTaskDefinition, CreateService, MovePointer]
    svc = ecs_service(platform)
    assert svc["status"] == "ACTIVE" and svc["desiredCount"] == 2
    assert svc["launchType"] == "FARGATE"
    # moto does not echo deploymentConfiguration back; check what was asked of ECS.
    create = next(p for op, p in mutations.params if op == "CreateService")
    breaker = create["deploymentConfiguration"]["deploymentCircuitBreaker"]
    assert breaker == {"enable": True, "rollback": True}
    assert svc["networkConfiguration"]["awsvpcConfiguration"]["subnets"]
    tags = {t["key"]: t["value"] for t in svc["tags"]}
    assert tags[MANAGED_BY_TAG[0]] == MANAGED_BY_TAG[1]

    td = task_definition(svc["taskDefinition"])
    env = {
        e["name"]: e["value"]
        for e in td["taskDefinition"]["containerDefinitions"][0]["environment"]
    }
    manifest = registry.get_manifest(PROJECT, versions.good)
    assert env[ENV_MODEL_VERSION] == versions.good
    assert env[ENV_MODEL_SHA256] == manifest.model_sha256
    assert env[ENV_MODEL_URI] == platform.version_uri(PROJECT, versions.good)
    assert td["taskDefinition"]["cpu"] == "256" and td["taskDefinition"]["memory"] == "512"
    td_tags = {t["key"]: t["value"] for t in td["tags"]}
    assert td_tags[MANAGED_BY_TAG[0]] == MANAGED_BY_TAG[1]
    assert versions.good in td_tags.values()

    assert pointer_version(platform) == versions.good
    st = result.status
    assert st.current_version == versions.good
    assert st.task_definition == svc["taskDefinition"]
    assert st.observed_generation == 1
    assert cond(st, "Progressing") == ("True", "Updating")
    assert result.requeue_after is not None and not result.degraded


def test_moto_rollout_in_progress_is_reported_with_counts(make_reconciler, versions):
    rec = make_reconciler()
    dep = make_deployment(version=versions.good)
    st = rec.reconcile(dep, None).status
    result = rec.reconcile(dep, st)
    assert result.actions == []
    assert cond(result.status, "Ready") == ("False", "RolloutInProgress")
    assert cond(result.status, "Progressing") == ("True", "RolloutInProgress")
    assert "0/2" in result.status.condition("Progressing").message
    assert result.requeue_after is not None


def test_ready_only_when_the_rollout_completes(make_reconciler, versions):
    rec = make_reconciler()
    dep = make_deployment(version=versions.good)
    st = rec.reconcile(dep, None).status
    rec.observer.rollout = COMPLETED
    result = rec.reconcile(dep, st)
    assert result.actions == []
    assert cond(result.status, "Ready") == ("True", "RolloutComplete")
    assert cond(result.status, "Progressing") == ("False", "RolloutComplete")
    assert cond(result.status, "Degraded") == ("False", "AsExpected")
    assert result.requeue_after is None
    assert "2/2" in result.status.condition("Ready").message


def test_steady_state_makes_zero_mutating_calls(make_reconciler, versions, mutations):
    rec = make_reconciler()
    dep = make_deployment(version=versions.good)
    st = rec.reconcile(dep, None).status
    rec.observer.rollout = COMPLETED
    st = rec.reconcile(dep, st).status
    assert mutations  # the deploy itself wrote
    mutations.clear()
    for _ in range(3):
        result = rec.reconcile(dep, st)
        assert result.actions == []
        st = result.status
    assert mutations == {}


def test_new_version_moves_service_and_pointer_together(make_reconciler, versions, platform):
    rec = make_reconciler()
    rec.observer.rollout = COMPLETED
    st = rec.reconcile(make_deployment(version=versions.good), None).status
    st = rec.reconcile(make_deployment(version=versions.good), st).status
    assert cond(st, "Ready") == ("True", "RolloutComplete")

    dep2 = make_deployment(version=versions.better, generation=2)
    result = rec.reconcile(dep2, st)
    assert [type(a) for a in result.actions] == [
        RegisterTaskDefinition,
        UpdateService,
        MovePointer,
    ]
    assert pointer_version(platform) == versions.better
    svc = ecs_service(platform)
    assert svc["taskDefinition"] == result.status.task_definition
    assert result.status.current_version == versions.better
    assert result.status.previous_version == versions.good
    assert result.status.previous_task_definition == st.task_definition
    assert result.status.observed_generation == 2


def test_scaling_only_updates_the_service(make_reconciler, versions, platform, mutations):
    rec = make_reconciler()
    rec.observer.rollout = COMPLETED
    st = rec.reconcile(make_deployment(version=versions.good), None).status
    mutations.clear()
    result = rec.reconcile(make_deployment(version=versions.good, replicas=5, generation=2), st)
    assert [type(a) for a in result.actions] == [UpdateService]
    assert ecs_service(platform)["desiredCount"] == 5
    assert mutations == {"UpdateService": 1, "TagResource": 1}  # the count, recorded
    assert len(revisions(platform)) == 1


def test_an_autoscaler_owns_the_count_between_spec_changes(make_reconciler, versions, platform):
    rec = make_reconciler()
    rec.observer.rollout = COMPLETED
    dep = make_deployment(version=versions.good)
    st = rec.reconcile(dep, None).status
    # Application Auto Scaling moves the desired count.
    aws.client("ecs").update_service(
        cluster=platform.ecs_cluster, service=platform.service_name(PROJECT, "prod"), desiredCount=7
    )
    assert rec.reconcile(dep, st).actions == []
    assert ecs_service(platform)["desiredCount"] == 7
    # A new version keeps the autoscaled count ...
    result = rec.reconcile(make_deployment(version=versions.better, generation=2), st)
    assert not result.actions[1].scale
    assert ecs_service(platform)["desiredCount"] == 7
    # ... and a change of spec.serving.replicas applies.
    result = rec.reconcile(make_deployment(version=versions.better, replicas=3, generation=3), st)
    assert [type(a) for a in result.actions] == [UpdateService]
    assert ecs_service(platform)["desiredCount"] == 3


def test_spec_naming_an_earlier_version_reuses_its_revision(make_reconciler, versions, platform):
    rec = make_reconciler()
    rec.observer.rollout = COMPLETED
    st = rec.reconcile(make_deployment(version=versions.good), None).status
    first_td = st.task_definition
    st = rec.reconcile(make_deployment(version=versions.good), st).status
    st = rec.reconcile(make_deployment(version=versions.better, generation=2), st).status
    st = rec.reconcile(make_deployment(version=versions.better, generation=2), st).status
    assert cond(st, "Ready") == ("True", "RolloutComplete")

    result = rec.reconcile(make_deployment(version=versions.good, generation=3), st)
    assert [type(a) for a in result.actions] == [UpdateService, MovePointer]
    assert ecs_service(platform)["taskDefinition"] == first_td
    assert pointer_version(platform) == versions.good
    assert len(revisions(platform)) == 2


def test_candidate_is_published_after_its_gates_then_deployed(
    make_reconciler, versions, platform, registry, candidate_folder
):
    rec = make_reconciler()
    rec.observer.rollout = COMPLETED
    dep = make_deployment(candidate=str(candidate_folder))
    (candidate_folder / SIGNATURE).unlink()
    unsigned = rec.reconcile(dep, None)
    assert unsigned.actions == [] and cond(unsigned.status, "Degraded")[1] == "CandidateInvalid"
    assert "not signed" in unsigned.status.condition("Degraded").message
    sign_candidate(str(candidate_folder), platform.model_signing_key)
    published = rec.reconcile(dep, None)
    # Published first, alone: what serves it pins the object versions S3 assigns then.
    assert [type(a) for a in published.actions] == [ClaimEnv, PublishCandidate]
    result = rec.reconcile(dep, published.status)
    assert [type(a) for a in result.actions] == [
        RegisterTaskDefinition,
        CreateService,
        MovePointer,
    ]
    version = result.status.current_version
    assert registry.exists(PROJECT, version)
    assert pointer_version(platform) == version
    pins = registry.get_published(PROJECT, version).pins
    assert PointerStore(platform).get(PROJECT, "prod").pins == pins
    again = rec.reconcile(dep, result.status)
    assert again.actions == []
    assert cond(again.status, "Ready") == ("True", "RolloutComplete")


def test_gate_failure_changes_nothing_and_names_the_gate(
    make_reconciler, versions, platform, mutations
):
    rec = make_reconciler()
    rec.observer.rollout = COMPLETED
    st = rec.reconcile(make_deployment(version=versions.good), None).status
    st = rec.reconcile(make_deployment(version=versions.good), st).status
    mutations.clear()
    result = rec.reconcile(make_deployment(version=versions.worse, generation=2), st)
    assert result.actions == [] and mutations == {}
    assert cond(result.status, "Degraded") == ("True", "GateFailed")
    assert "max_regression" in result.status.condition("Degraded").message
    assert pointer_version(platform) == versions.good
    assert result.status.current_version == versions.good
    assert result.degraded

    # min_r2 below the project's threshold, from the first deploy of another env
    other = make_deployment("usedcar-dev", version=versions.bad, env="dev")
    result = rec.reconcile(other, None)
    assert cond(result.status, "Degraded") == ("True", "GateFailed")
    assert "min_r2" in result.status.condition("Degraded").message
    assert ecs_service(platform, "dev") is None and pointer_version(platform, "dev") is None


def test_spec_gates_override_the_projects(make_reconciler, versions, platform):
    rec = make_reconciler()
    dep = make_deployment("usedcar-dev", version=versions.bad, env="dev", gates={"minR2": 0.3})
    result = rec.reconcile(dep, None)
    assert not result.degraded
    assert pointer_version(platform, "dev") == versions.bad
    # The pointer records what judged it: the overridden gates and their revision.
    pointer = PointerStore(platform).get(PROJECT, "dev")
    assert pointer.gates is not None and pointer.policy_revision == 1
    assert (pointer.gates["min_r2"], pointer.gates["max_regression"]) == (0.3, 0.05)


def test_tightened_gates_roll_a_live_version_back(make_reconciler, versions, platform):
    rec = make_reconciler()
    rec.observer.rollout = COMPLETED
    st = rec.reconcile(make_deployment(version=versions.good), None).status
    st = rec.reconcile(make_deployment(version=versions.good), st).status
    st = rec.reconcile(make_deployment(version=versions.better, generation=2), st).status
    st = rec.reconcile(make_deployment(version=versions.better, generation=2), st).status
    assert cond(st, "Ready") == ("True", "RolloutComplete")

    # The deployment now demands R² >= 0.9: the live version (0.82) fails its gates.
    tight = make_deployment(version=versions.better, generation=3, gates={"minR2": 0.9})
    result = rec.reconcile(tight, st)
    assert cond(result.status, "Degraded") == ("True", "GateFailed")
    assert versions.good in result.status.condition("Degraded").message
    assert pointer_version(platform) == versions.good
    assert ecs_service(platform)["taskDefinition"] == st.previous_task_definition
    assert result.status.failed_version == versions.better


def test_failed_rollout_restores_the_last_good_version_and_is_not_retried(
    make_reconciler, versions, platform, mutations
):
    rec = make_reconciler()
    rec.observer.rollout = COMPLETED
    st = rec.reconcile(make_deployment(version=versions.good), None).status
    st = rec.reconcile(make_deployment(version=versions.good), st).status
    good_td = st.task_definition

    dep2 = make_deployment(version=versions.better, generation=2)
    rec.observer.rollout = None
    st = rec.reconcile(dep2, st).status
    assert pointer_version(platform) == versions.better

    rec.observer.rollout = FAILED
    rec.observer.reason = "tasks failed to start"
    result = rec.reconcile(dep2, st)
    degraded = result.status.condition("Degraded")
    assert (degraded.status, degraded.reason) == ("True", "RolloutFailed")
    assert "tasks failed to start" in degraded.message and versions.good in degraded.message
    assert ecs_service(platform)["taskDefinition"] == good_td
    assert pointer_version(platform) == versions.good
    pointer = PointerStore(platform).get(PROJECT, "prod")
    assert pointer.action == "rollback"
    # A rollback restores the earlier value as the promotion log holds it: pins, and the
    # gates that judged that version when it was promoted.
    assert pointer.pins == Registry(platform).get_published(PROJECT, versions.good).pins
    st = result.status
    assert st.failed_version == versions.better and st.current_version == versions.good

    # Not retried: the same generation leaves AWS alone, and stays Degraded.
    rec.observer.rollout = COMPLETED
    mutations.clear()
    again = rec.reconcile(dep2, st)
    assert again.actions == [] and mutations == {}
    assert cond(again.status, "Degraded") == ("True", "RolloutFailed")
    assert cond(again.status, "Ready") == ("True", "RolloutComplete")

    # A fresh controller that lost the status still does not retry (service tags).
    fresh = make_reconciler()
    fresh.observer.rollout = COMPLETED
    lost = fresh.reconcile(dep2, None)
    assert lost.actions == []
    assert pointer_version(platform) == versions.good

    # A spec change (new generation) retries it.
    dep3 = make_deployment(version=versions.better, generation=3, replicas=3)
    rec.observer.rollout = None
    retry = rec.reconcile(dep3, again.status)
    assert any(isinstance(a, UpdateService) for a in retry.actions)
    assert pointer_version(platform) == versions.better


def test_stuck_rollout_past_deadline_is_rolled_back(make_reconciler, versions, platform, clock):
    rec = make_reconciler()
    rec.observer.rollout = COMPLETED
    dep = make_deployment(version=versions.good, deadline=120)
    st = rec.reconcile(dep, None).status
    st = rec.reconcile(dep, st).status
    rec.observer.rollout = None  # moto: IN_PROGRESS forever
    dep2 = make_deployment(version=versions.better, generation=2, deadline=120)
    st = rec.reconcile(dep2, st).status
    assert cond(rec.reconcile(dep2, st).status, "Progressing") == ("True", "RolloutInProgress")

    clock.now += timedelta(seconds=121)
    result = rec.reconcile(dep2, st)
    assert cond(result.status, "Degraded") == ("True", "RolloutFailed")
    assert "progressDeadlineSeconds=120" in result.status.condition("Degraded").message
    assert pointer_version(platform) == versions.good


def test_failure_without_rollback_policy_leaves_it_degraded(make_reconciler, versions, platform):
    rec = make_reconciler()
    rec.observer.rollout = COMPLETED
    st = rec.reconcile(make_deployment(version=versions.good), None).status
    st = rec.reconcile(make_deployment(version=versions.good), st).status
    dep2 = make_deployment(version=versions.better, generation=2, on_failure=False)
    rec.observer.rollout = None
    st = rec.reconcile(dep2, st).status
    rec.observer.rollout = FAILED
    result = rec.reconcile(dep2, st)
    assert cond(result.status, "Degraded") == ("True", "RolloutFailed")
    assert "onFailure is false" in result.status.condition("Degraded").message
    assert result.actions == []
    assert pointer_version(platform) == versions.better


def test_structlog_lines_carry_key_generation_and_action(make_reconciler, versions):
    rec = make_reconciler()
    with structlog.testing.capture_logs() as logs:
        rec.reconcile(make_deployment(version=versions.good, generation=7), None)
    assert logs
    for line in logs:
        assert line["key"] == "ml/usedcar-prod"
        assert line["generation"] == 7
        assert line["action"]
    assert {"RegisterTaskDefinition", "CreateService", "MovePointer"} <= {
        line["action"] for line in logs
    }


def test_pointer_holds_valid_json_for_serving(make_reconciler, versions, platform):
    make_reconciler().reconcile(make_deployment(version=versions.good), None)
    raw = aws.client("ssm").get_parameter(Name=platform.pointer_param(PROJECT, "prod"))
    value = json.loads(raw["Parameter"]["Value"])
    assert value["version"] == versions.good and value["promoted_by"] == "mlops-controller"


@pytest.mark.parametrize("n", [12])
def test_reconcile_many_batches_reads(make_reconciler, versions, n):
    rec = make_reconciler()
    rec.observer.rollout = COMPLETED
    deps = [
        make_deployment(f"d{i}", project=PROJECT, env=f"e{i}", version=versions.good)
        for i in range(n)
    ]
    # every env must be one of the project's; register a project allowing them
    from factories import project_config

    cfg = project_config(PROJECT, min_r2=0.5, max_regression=0.05).model_copy(
        update={"envs": [f"e{i}" for i in range(n)]}
    )
    rec.registry.policy.set(cfg, reason="one env per deployment")
    results = rec.reconcile_many([(d, None) for d in deps])
    assert all(not r.degraded for r in results), [r.status for r in results if r.degraded]
    rec.observer.reads.clear()
    for _ in range(2):
        results = rec.reconcile_many([(d, r.status) for d, r in zip(deps, results, strict=True)])
        assert all(r.actions == [] for r in results)
        assert all(cond(r.status, "Ready") == ("True", "RolloutComplete") for r in results)
    # 12 deployments, per pass: 2 get_parameters + 2 describe_services + each env's claim
    # (never cached: it changes hands); the revisions the first pass registered and the
    # manifests are cached.
    assert dict(rec.observer.reads) == {
        "ssm:GetParameters": 4,
        "ecs:DescribeServices": 4,
        "s3:GetObject(claim)": 2 * n,
    }
