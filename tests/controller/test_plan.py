"""``plan`` is pure: table tests over observed states, and hypothesis properties.

No AWS here: observed states are built by hand, and ``apply`` simulates actions.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from factories import FEATURES, project_config
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st
from reconcile_support import make_deployment

from controller.actions import (
    ANALYSIS_STAGE,
    TAG_DEPLOYMENT,
    CreateService,
    MovePointer,
    PublishCandidate,
    RegisterTaskDefinition,
    Rollback,
    UpdateService,
)
from controller.api import ModelDeployment, ModelDeploymentStatus, RolloutStatus
from controller.observe import (
    COMPLETED,
    FAILED,
    IN_PROGRESS,
    Observed,
    ProjectNotFound,
)
from controller.plan import Desired, NetworkConfig, Polling, apply, decide, plan, task_spec
from controller.shifts import Hook, ShiftState
from mlops_core.artifacts import DataInfo, FileEntry, Manifest
from mlops_core.claims import Claim
from mlops_core.naming import Platform
from mlops_core.publication import Pins

PLATFORM = Platform()
NETWORK = NetworkConfig(subnets=("subnet-1",), security_groups=("sg-1",))
NOW = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)
PROJECT = project_config("usedcar-price", min_r2=0.5, max_regression=0.05)


def manifest(minute: int, r2: float) -> Manifest:
    sha = hashlib.sha256(f"model-{minute}".encode()).hexdigest()
    return Manifest(
        project="usedcar-price",
        version=f"20261128T06{minute:02d}00Z-{sha[:7]}",
        created_at=datetime(2026, 11, 28, 6, minute, tzinfo=UTC),
        files={"model.onnx": FileEntry(sha256=sha, size=1)},
        target="price",
        features=FEATURES,
        data=DataInfo(source="s", fingerprint="0" * 64, rows=1, columns=[]),
        hyperparameters={},
        metrics={"model": {"r2": r2}, "baseline": {"r2": 0.0}},
        runtime={},
    )


GOOD = manifest(1, 0.80)
BETTER = manifest(2, 0.82)
WORSE = manifest(3, 0.60)  # fails max_regression against GOOD and BETTER
BAD = manifest(4, 0.40)  # fails min_r2
MANIFESTS = {m.version: m for m in (GOOD, BETTER, WORSE, BAD)}


def pins_of(m: Manifest) -> Pins:
    """Pins as a publication of ``m`` records them (S3 picks the object versions)."""
    return Pins(
        manifest_sha256=hashlib.sha256(m.to_json().encode()).hexdigest(),
        objects={n: f"v-{m.version}-{n}" for n in [*m.files, "manifest.json", "manifest.sig"]},
    )


PINS = {v: pins_of(m) for v, m in MANIFESTS.items()}


# The env's claim, held by the deployment under test unless a test says otherwise.
CLAIM = Claim(owner="ml/usedcar-prod", source="test", created_at=NOW)


def observed(**kw) -> Observed:
    base = Observed(
        key="ml/usedcar-prod",
        now=NOW,
        claim=CLAIM,
        project=PROJECT,
        manifests=MANIFESTS,
        pins=PINS,
        published=frozenset(MANIFESTS),
        desired_version=kw.pop("version", GOOD.version),
    )
    return replace(base, **kw)


def desired(dep=None, status=None, network=NETWORK) -> Desired:
    return Desired(dep or make_deployment(version=GOOD.version), status, PLATFORM, network)


def kinds(actions) -> list[str]:
    return [type(a).__name__ for a in actions]


def deploy(version=GOOD, generation=1, rollout=COMPLETED, **dep_kw):
    """Desired + observed after a converged deploy of ``version`` (rollout as given)."""
    dep = make_deployment(version=version.version, generation=generation, **dep_kw)
    obs = observed(version=version.version)
    d = decide(desired(dep), obs)
    obs = settle(apply(obs, d.actions), rollout)
    status = decide(desired(dep, d.status), obs).status
    return dep, status, obs


def settle(obs: Observed, state: str, **kw) -> Observed:
    """The service's rollout reaches ``state`` (what moto never does)."""
    svc = obs.service
    deployments = tuple(
        replace(
            d,
            rollout_state=state,
            running=d.desired if state == COMPLETED else 0,
            **kw,
        )
        if d.task_definition == svc.task_definition
        else d
        for d in svc.deployments
    )
    return replace(obs, service=replace(svc, deployments=deployments))


def cond(status, type_):
    c = status.condition(type_)
    return (c.status, c.reason)


# -- tables ---------------------------------------------------------------------------
def test_empty_env_deploys_register_create_then_pointer():
    d = decide(desired(), observed())
    assert kinds(d.actions) == ["RegisterTaskDefinition", "CreateService", "MovePointer"]
    reg, create, move = d.actions
    assert reg.task == task_spec(
        PLATFORM, make_deployment(version=GOOD.version), GOOD, PINS[GOOD.version]
    )
    assert reg.task.sha256 == GOOD.model_sha256
    # The revision and the pointer pin what publication recorded.
    assert reg.task.manifest_sha256 == PINS[GOOD.version].manifest_sha256
    assert reg.task.object_versions == PINS[GOOD.version].objects_json()
    assert (move.manifest_sha256, move.object_versions) == (
        reg.task.manifest_sha256,
        reg.task.object_versions,
    )
    assert reg.task.model_uri == PLATFORM.version_uri("usedcar-price", GOOD.version)
    assert create.service.replicas == 2 and create.task_definition is None
    assert move.version == GOOD.version and move.sha256 == GOOD.model_sha256
    assert cond(d.status, "Progressing") == ("True", "Updating")
    assert d.status.current_version == GOOD.version


def test_converged_state_plans_nothing_and_is_ready():
    dep, status, obs = deploy()
    d = decide(desired(dep, status), obs)
    assert d.actions == []
    assert cond(d.status, "Ready") == ("True", "RolloutComplete")
    assert d.requeue_after is None and not d.degraded


def test_rollout_in_progress_reports_counts_and_requeues():
    dep, status, obs = deploy(rollout=IN_PROGRESS)
    obs = replace(
        obs,
        service=replace(
            obs.service,
            deployments=tuple(replace(x, running=1) for x in obs.service.deployments),
        ),
    )
    d = decide(desired(dep, status), obs)
    assert d.actions == []
    assert cond(d.status, "Progressing") == ("True", "RolloutInProgress")
    assert "1/2" in d.status.condition("Progressing").message
    assert cond(d.status, "Ready") == ("False", "RolloutInProgress")
    assert d.requeue_after is not None


def test_ecs_not_yet_listing_the_new_deployment_is_in_progress():
    dep2, status2, obs2, _ = _rolled_to_better(IN_PROGRESS)
    svc = obs2.service
    # Right after an update ECS may still list only the previous deployment.
    old_only = tuple(d for d in svc.deployments if d.task_definition != svc.task_definition)
    obs2 = replace(obs2, service=replace(svc, deployments=old_only))
    d = decide(desired(dep2, status2), obs2)
    assert d.actions == []
    assert cond(d.status, "Progressing") == ("True", "RolloutInProgress")
    assert "waiting for ECS" in d.status.condition("Progressing").message
    # ... and the progress deadline counts from when the controller started it.
    late = replace(obs2, now=NOW + timedelta(seconds=901))
    assert kinds(plan(desired(dep2, status2), late)) == ["Rollback", "UpdateService", "MovePointer"]


def test_services_are_created_behind_their_load_balancer_when_configured():
    managed = replace(NETWORK, load_balancers="managed")
    d = decide(desired(network=managed), observed())
    (create,) = [a for a in d.actions if isinstance(a, CreateService)]
    assert create.service.load_balanced
    assert not next(
        a for a in decide(desired(), observed()).actions if isinstance(a, CreateService)
    ).service.load_balanced


def test_a_service_without_its_load_balancer_is_attached_once():
    dep, status, obs = deploy()  # created with MLOPS_LOAD_BALANCERS=none
    managed = replace(NETWORK, load_balancers="managed")
    d = decide(desired(dep, status, network=managed), obs)
    (update,) = d.actions
    assert isinstance(update, UpdateService) and update.attach_load_balancer
    obs = settle(apply(obs, d.actions), COMPLETED)
    assert obs.service.load_balancers
    assert decide(desired(dep, d.status, network=managed), obs).actions == []


def test_polling_intervals_come_from_the_desired_state():
    fast = replace(desired(), polling=Polling(rollout=1.0, after_action=0.5))
    d = decide(fast, observed())
    assert d.requeue_after == 0.5
    dep, status, obs = deploy(rollout=IN_PROGRESS)
    d = decide(replace(desired(dep, status), polling=Polling(rollout=1.0)), obs)
    assert d.actions == [] and d.requeue_after == 1.0


def test_pointer_drift_is_corrected_alone():
    dep, status, obs = deploy()
    obs = replace(obs, pointer=obs.pointer.model_copy(update={"version": BETTER.version}))
    assert kinds(plan(desired(dep, status), obs)) == ["MovePointer"]


def test_scale_is_a_service_update_only():
    dep, status, obs = deploy()
    dep2 = make_deployment(version=GOOD.version, replicas=4, generation=2)
    actions = plan(desired(dep2, status), obs)
    assert kinds(actions) == ["UpdateService"]
    assert actions[0].service.replicas == 4
    assert actions[0].task_definition == obs.service.task_definition


def test_new_version_registers_updates_then_moves_pointer():
    dep, status, obs = deploy()
    dep2 = make_deployment(version=BETTER.version, generation=2)
    d = decide(desired(dep2, status), observed(**_aws(obs), version=BETTER.version))
    assert kinds(d.actions) == ["RegisterTaskDefinition", "UpdateService", "MovePointer"]
    assert d.status.previous_version == GOOD.version
    assert d.status.previous_task_definition == status.task_definition


def _aws(obs: Observed) -> dict:
    return {
        "pointer": obs.pointer,
        "service": obs.service,
        "task_definitions": obs.task_definitions,
    }


def test_earlier_version_reuses_a_revision_from_the_service_history():
    dep, status, obs = deploy()
    dep2 = make_deployment(version=BETTER.version, generation=2)
    obs2 = observed(**_aws(obs), version=BETTER.version)
    d2 = decide(desired(dep2, status), obs2)
    obs2 = settle(apply(obs2, d2.actions), COMPLETED)
    status2 = decide(desired(dep2, d2.status), obs2).status
    dep3 = make_deployment(version=GOOD.version, generation=3)
    d3 = decide(desired(dep3, status2), replace(obs2, desired_version=GOOD.version))
    assert kinds(d3.actions) == ["UpdateService", "MovePointer"]
    assert d3.actions[0].task_definition == status.task_definition


def test_image_change_registers_a_new_revision():
    dep, status, obs = deploy()
    dep2 = make_deployment(
        version=GOOD.version, generation=2, image="registry.example.com/serving:0.2"
    )
    actions = plan(desired(dep2, status), obs)
    assert kinds(actions) == ["RegisterTaskDefinition", "UpdateService"]
    assert actions[0].task.image == "registry.example.com/serving:0.2"


def test_unpublished_candidate_is_published_first_and_alone():
    cand = manifest(9, 0.85)
    dep = make_deployment(candidate="s3://bucket/runs/1/")
    obs = observed(
        version=cand.version,
        manifests={**MANIFESTS, cand.version: cand},
    )
    d = decide(desired(dep), obs)
    # Nothing can pin the candidate before S3 has given its objects their versions.
    assert d.actions == [PublishCandidate("s3://bucket/runs/1/", "usedcar-price", cand.version)]
    assert cond(d.status, "Progressing") == ("True", "Updating")
    published = replace(
        obs, published=obs.published | {cand.version}, pins={**PINS, cand.version: pins_of(cand)}
    )
    assert kinds(plan(desired(dep), published)) == [
        "RegisterTaskDefinition",
        "CreateService",
        "MovePointer",
    ]


def test_a_pointer_pinned_otherwise_than_publication_is_an_integrity_failure():
    dep, status, obs = deploy()
    forged = PINS[BETTER.version]  # the live version's name, another version's pins
    pointer = obs.pointer.model_copy(update={"pins": forged})
    d = decide(desired(dep, status), replace(obs, pointer=pointer))
    assert d.actions == [] and d.degraded  # nothing re-pinned
    assert cond(d.status, "Degraded") == ("True", "IntegrityFailed")
    assert "publication recorded" in d.status.condition("Degraded").message
    # A pointer moved to another version is drift: it is moved back, with the pins.
    moved = obs.pointer.model_copy(update={"version": BETTER.version, "pins": forged})
    actions = plan(desired(dep, status), replace(obs, pointer=moved))
    assert kinds(actions) == ["MovePointer"]
    assert actions[0].manifest_sha256 == PINS[GOOD.version].manifest_sha256


def test_observation_errors_block_with_their_reason_and_no_actions():
    err = ProjectNotFound("unknown project 'nope'", hint="publish it first")
    d = decide(desired(), observed(error=err))
    assert d.actions == [] and d.degraded
    assert cond(d.status, "Degraded") == ("True", "ProjectNotFound")
    assert "unknown project" in d.status.condition("Degraded").message
    assert cond(d.status, "Ready") == ("False", "ProjectNotFound")


def test_an_env_claimed_by_another_deployment_is_a_conflict_whatever_the_tag_says():
    dep, status, obs = deploy()
    other = Claim(owner="ml/other", source="test", created_at=NOW)
    d = decide(desired(dep, status), replace(obs, claim=other))  # the tag still says ours
    assert d.actions == [] and cond(d.status, "Degraded") == ("True", "Conflict")
    message = d.status.condition("Degraded").message
    assert "ml/other" in message and "releases the env's claim" in message


def test_an_unclaimed_env_is_claimed_before_anything_else():
    d = decide(desired(), observed(claim=None))
    assert kinds(d.actions) == [
        "ClaimEnv",
        "RegisterTaskDefinition",
        "CreateService",
        "MovePointer",
    ]
    claim = d.actions[0]
    assert (claim.owner, claim.project, claim.env) == ("ml/usedcar-prod", "usedcar-price", "prod")
    assert d.actions[-1].owner == "ml/usedcar-prod"
    after = apply(observed(claim=None), d.actions)
    assert after.claim is not None and after.claim.owner == "ml/usedcar-prod"
    assert after.pointer.owner == "ml/usedcar-prod"
    assert plan(desired(dep=None, status=d.status), settle(after, COMPLETED)) == []


def test_a_converged_env_from_before_claims_is_claimed_with_one_write():
    dep, status, obs = deploy()
    d = decide(desired(dep, status), replace(obs, claim=None))
    assert kinds(d.actions) == ["ClaimEnv"]
    assert cond(d.status, "Ready") == ("True", "RolloutComplete")


def test_a_service_someone_else_made_is_labelled_first_then_converged():
    """A Terraform-made service (no owner tag), or one handed over by a Retain delete
    (the old owner's tag): labelled right after the claim, before it is changed."""
    dep, status, obs = deploy()
    for tags in ({}, {TAG_DEPLOYMENT: "ml/old-owner"}):
        svc = replace(obs.service, tags=tags)
        d = decide(desired(dep, status), replace(obs, claim=None, service=svc))
        assert kinds(d.actions)[:2] == ["ClaimEnv", "AdoptService"]
        assert d.actions[1].owner == "ml/usedcar-prod"
        after = apply(replace(obs, claim=None, service=svc), d.actions)
        assert after.service.tags[TAG_DEPLOYMENT] == "ml/usedcar-prod"
        assert plan(desired(dep, d.status), after) == []


def test_a_pointer_written_under_another_owner_is_rewritten_once():
    dep, status, obs = deploy()
    handed = replace(obs, pointer=obs.pointer.model_copy(update={"owner": "ml/old-owner"}))
    actions = plan(desired(dep, status), handed)
    assert kinds(actions) == ["MovePointer"] and actions[0].version == GOOD.version
    assert plan(desired(dep, status), apply(handed, actions)) == []


def test_missing_network_config_blocks_service_creation():
    d = decide(desired(network=NetworkConfig()), observed())
    assert d.actions == [] and cond(d.status, "Degraded") == ("True", "NetworkNotConfigured")


def test_gate_failure_of_a_new_version_changes_nothing():
    dep, status, obs = deploy()
    dep2 = make_deployment(version=WORSE.version, generation=2)
    d = decide(desired(dep2, status), replace(obs, desired_version=WORSE.version))
    assert d.actions == []
    assert cond(d.status, "Degraded") == ("True", "GateFailed")
    assert "max_regression" in d.status.condition("Degraded").message
    assert d.status.current_version == GOOD.version

    d = decide(desired(make_deployment(version=BAD.version)), observed(version=BAD.version))
    assert d.actions == [] and "min_r2" in d.status.condition("Degraded").message


def test_spec_gates_override_project_gates():
    dep = make_deployment(version=BAD.version, gates={"minR2": 0.3})
    assert kinds(plan(desired(dep), observed(version=BAD.version)))[-1] == "MovePointer"


def test_a_promotion_records_the_gates_that_judged_it_and_their_revision():
    dep = make_deployment(version=BAD.version, gates={"minR2": 0.3})
    obs = observed(version=BAD.version, policy_revision=4)
    move = plan(desired(dep), obs)[-1]
    assert isinstance(move, MovePointer) and move.policy_revision == 4
    assert move.gates is not None
    assert (move.gates["min_r2"], move.gates["max_regression"]) == (0.3, 0.05)
    assert apply(obs, [move]).pointer.gates == move.gates


def _rolled_to_better(state: str, **dep_kw):
    dep, status, obs = deploy(**dep_kw)
    dep2 = make_deployment(version=BETTER.version, generation=2, **dep_kw)
    obs2 = observed(**_aws(obs), version=BETTER.version)
    d2 = decide(desired(dep2, status), obs2)
    obs2 = apply(obs2, d2.actions)
    return dep2, d2.status, settle(obs2, state, rollout_reason="tasks failed to start"), status


def test_failed_rollout_rolls_back_to_the_last_good_revision():
    dep2, status2, obs2, good_status = _rolled_to_better(FAILED)
    d = decide(desired(dep2, status2), obs2)
    assert kinds(d.actions) == ["Rollback", "UpdateService", "MovePointer"]
    rb, update, move = d.actions
    assert isinstance(rb, Rollback)
    assert (rb.failed_version, rb.restored_version) == (BETTER.version, GOOD.version)
    assert update.task_definition == good_status.task_definition
    assert move.version == GOOD.version and move.action == "rollback"
    assert move.gates is None and move.policy_revision is None  # no gate judged it
    assert cond(d.status, "Degraded") == ("True", "RolloutFailed")
    assert "tasks failed to start" in d.status.condition("Degraded").message
    assert d.status.failed_version == BETTER.version and d.status.failed_generation == 2
    assert d.status.current_version == GOOD.version

    # After the restore: nothing more, still Degraded, not retried; the status is steady.
    after = settle(apply(obs2, d.actions), COMPLETED)
    d2 = decide(desired(dep2, d.status), after)
    assert d2.actions == [] and cond(d2.status, "Degraded") == ("True", "RolloutFailed")
    assert "Change the spec to try again" in d2.status.condition("Degraded").message
    assert cond(d2.status, "Ready") == ("True", "RolloutComplete")
    assert decide(desired(dep2, d2.status), after).status == d2.status


def test_failed_version_is_retried_once_the_spec_changes():
    dep2, status2, obs2, _ = _rolled_to_better(FAILED)
    d = decide(desired(dep2, status2), obs2)
    after = settle(apply(obs2, d.actions), COMPLETED)
    status = decide(desired(dep2, d.status), after).status
    dep3 = make_deployment(version=BETTER.version, generation=3)
    assert kinds(plan(desired(dep3, status), after)) == ["UpdateService", "MovePointer"]


def _ended_unseen(generation: int):
    """BETTER's progressive rollout, started at generation 2, was rolled back by ECS (a
    hook's timeout) while no controller looked; the deployment is now at ``generation``."""
    dep2, status2, obs2, _ = _rolled_to_better(IN_PROGRESS)
    rollout = RolloutStatus(
        service_deployment="arn:aws:ecs:us-east-1:1:service-deployment/c/s/sd1",
        strategy="CANARY",
        stable_version=GOOD.version,
        canary_version=BETTER.version,
    )
    status2 = status2.model_copy(update={"rollout": rollout})
    assert status2.observed_generation == 2
    _, _, back = deploy()  # ECS restored GOOD's revision
    back = replace(
        back,
        task_definitions={**obs2.task_definitions, **back.task_definitions},
        desired_version=BETTER.version,
        rollout_end=("ROLLBACK_SUCCESSFUL", "hook timed out"),
    )
    dep = make_deployment(version=BETTER.version, generation=generation)
    return decide(desired(dep, status2), back)


def test_a_rollout_ecs_rolled_back_unseen_fails_its_own_generation_only():
    same = _ended_unseen(2)
    assert same.degraded and cond(same.status, "Degraded") == ("True", "RolloutFailed")
    assert "rolled back by ECS: hook timed out" in same.status.condition("Degraded").message
    assert same.status.failed_generation == 2
    # The spec changed while nobody looked (e.g. a longer timeout): the new generation
    # is tried, not held as failed; the old rollout is recorded as rolled back.
    edited = _ended_unseen(3)
    assert not edited.degraded, edited.status.condition("Degraded")
    assert "UpdateService" in kinds(edited.actions)
    assert edited.status.failed_version is None
    assert edited.status.rollout.outcome == "RolledBack"


def test_a_version_declared_mid_shift_rolls_the_shift_back_first_and_never_runs_two():
    dep2, status2, obs2, _ = _rolled_to_better(IN_PROGRESS)
    hook = Hook("h1", ANALYSIS_STAGE, None)
    shift = ShiftState(service_deployment="sd-2", status="IN_PROGRESS", stage=ANALYSIS_STAGE,
                       hook=hook)  # fmt: skip
    dep3 = make_deployment(version=GOOD.version, generation=3)
    paused = replace(obs2, shift=shift, desired_version=GOOD.version)
    # A rollout of ECS's own (not the one the status names) is never stopped: waited for.
    d = decide(desired(dep3, status2), paused)
    assert d.actions == [] and "waiting for it to end" in d.status.condition("Progressing").message
    status2 = status2.model_copy(
        update={
            "rollout": RolloutStatus(
                service_deployment="sd-2", strategy="CANARY", canary_version=BETTER.version
            )
        }
    )
    d = decide(desired(dep3, status2), paused)
    assert kinds(d.actions) == ["ContinueDeployment"], d.actions
    (answer,) = d.actions
    assert (answer.hook_id, answer.action) == ("h1", "ROLLBACK")
    assert "superseded by " + GOOD.version in answer.reason
    assert cond(d.status, "Progressing") == ("True", "Superseding") and not d.degraded
    # Between pauses (or with none: no analysis, no approval): ECS's stop rolls it back
    # now, not after its whole shift; no second rollout is started either.
    moving = replace(paused, shift=replace(shift, hook=None, stage="BAKE_TIME"))
    d = decide(desired(dep3, status2), moving)
    assert kinds(d.actions) == ["StopDeployment"], d.actions
    (stop,) = d.actions
    assert stop.service_deployment == "sd-2" and "superseded by " + GOOD.version in stop.reason
    assert "stopped and rolled back" in d.status.condition("Progressing").message
    # Not started yet: nothing to stop; it waits.
    pending = replace(paused, shift=replace(shift, hook=None, status="PENDING", stage=None))
    d = decide(desired(dep3, status2), pending)
    assert (
        d.actions == []
        and "waiting for ECS to start it" in d.status.condition("Progressing").message
    )
    # Once stopped, ECS rolls it back: nothing is stopped again, nothing deployed yet.
    back = replace(paused, shift=replace(shift, hook=None, status="ROLLBACK_IN_PROGRESS"))
    d = decide(desired(dep3, status2), back)
    assert d.actions == [] and "ECS is rolling it back" in d.status.condition("Progressing").message
    # The same version with another spec (replicas) is not superseded by this rule.
    dep2b = make_deployment(version=BETTER.version, generation=3, replicas=3)
    d = decide(desired(dep2b, status2), replace(obs2, shift=shift))
    assert cond(d.status, "Progressing")[1] != "Superseding"


def test_back_to_rolling_after_a_shift_re_attaches_the_load_balancer_once():
    lbs = replace(NETWORK, load_balancers="managed")
    rolling = make_deployment(version=GOOD.version, generation=2)
    data = rolling.model_dump(by_alias=True)
    data["spec"]["strategy"] = {"type": "Canary"}
    data["metadata"]["generation"] = 1
    canary = ModelDeployment.model_validate(data)
    obs = observed(version=GOOD.version)
    d = decide(desired(canary, None, lbs), obs)
    obs = settle(apply(obs, d.actions), COMPLETED)
    status = decide(desired(canary, d.status, lbs), obs).status
    assert obs.service.alternate_target_group is not None
    d = decide(desired(rolling, status, lbs), obs)
    (update,) = [a for a in d.actions if isinstance(a, UpdateService)]
    # The executor then registers the service in the group production traffic goes to.
    assert update.attach_load_balancer and not update.service.rollout.shifts_traffic
    after = settle(apply(obs, d.actions), COMPLETED)
    assert after.service.alternate_target_group is None
    assert decide(desired(rolling, d.status, lbs), after).actions == []


def test_stuck_rollout_past_the_deadline_rolls_back():
    dep2, status2, obs2, _ = _rolled_to_better(IN_PROGRESS, deadline=300)
    assert plan(desired(dep2, status2), obs2) == []
    late = replace(obs2, now=NOW + timedelta(seconds=301))
    d = decide(desired(dep2, status2), late)
    assert kinds(d.actions) == ["Rollback", "UpdateService", "MovePointer"]
    assert "progressDeadlineSeconds=300" in d.status.condition("Degraded").message


def test_failure_without_rollback_policy_stays_put():
    dep2, status2, obs2, _ = _rolled_to_better(FAILED, on_failure=False)
    d = decide(desired(dep2, status2), obs2)
    assert d.actions == [] and cond(d.status, "Degraded") == ("True", "RolloutFailed")
    assert "onFailure is false" in d.status.condition("Degraded").message


def test_failure_of_the_first_version_has_nothing_to_restore():
    dep, status, obs = deploy(rollout=FAILED)
    # deploy() already fed one failed observation through; the hold keeps AWS alone
    d = decide(desired(dep, status), obs)
    assert d.actions == [] and cond(d.status, "Degraded") == ("True", "RolloutFailed")
    assert "no earlier good version" in d.status.condition("Degraded").message


def test_held_version_survives_a_lost_status_through_service_tags():
    dep2, status2, obs2, _ = _rolled_to_better(FAILED)
    d = decide(desired(dep2, status2), obs2)
    after = apply(obs2, d.actions)
    assert plan(desired(dep2, None), after) == []


def test_circuit_breaker_found_off_is_turned_back_on():
    dep, status, obs = deploy()
    obs = replace(obs, service=replace(obs.service, circuit_breaker=False))
    assert kinds(plan(desired(dep, status), obs)) == ["UpdateService"]


def test_unreported_deployment_configuration_is_left_alone():
    dep, status, obs = deploy()
    svc = replace(obs.service, circuit_breaker=None, min_healthy_percent=None, max_percent=None)
    assert plan(desired(dep, status), replace(obs, service=svc)) == []


def test_invalid_status_is_degraded_without_aws(monkeypatch):
    from controller.reconcile import invalid_status
    from mlops_core.errors import InvalidInput

    previous = ModelDeploymentStatus(current_version=GOOD.version)
    s = invalid_status(InvalidInput("spec.serving.cpu: 300 is not a Fargate size"), 4, previous)
    assert cond(s, "Degraded") == ("True", "InvalidSpec")
    assert cond(s, "Ready") == ("False", "InvalidSpec")
    assert "Fargate" in s.condition("Degraded").message
    assert s.observed_generation == 4 and s.current_version == GOOD.version


# -- properties -----------------------------------------------------------------------
VERSIONS = [GOOD, BETTER, WORSE, BAD]


@st.composite
def scenarios(draw):
    """A desired deployment and an arbitrary observed state of AWS around it."""
    version = draw(st.sampled_from([GOOD, BETTER, WORSE]))
    replicas = draw(st.integers(0, 4))
    image = draw(st.sampled_from(["repo/serving:1", "repo/serving:2"]))
    generation = draw(st.integers(1, 3))
    dep = make_deployment(
        version=version.version, replicas=replicas, image=image, generation=generation
    )
    obs = observed(version=version.version)
    # Build a history by deploying a few arbitrary earlier specs (simulated), each
    # rollout ending in an arbitrary state.
    status = None
    for step in range(draw(st.integers(0, 3))):
        v = draw(st.sampled_from([GOOD, BETTER]))
        old = make_deployment(
            version=v.version,
            replicas=draw(st.integers(0, 4)),
            image=draw(st.sampled_from(["repo/serving:1", "repo/serving:2"])),
            generation=step + 1,
        )
        d = decide(desired(old, status), replace(obs, desired_version=v.version))
        obs = apply(obs, d.actions)
        status = d.status
        if obs.service is not None:
            obs = settle(obs, draw(st.sampled_from([COMPLETED, IN_PROGRESS, FAILED])))
            d = decide(desired(old, status), replace(obs, desired_version=v.version))
            if draw(st.booleans()):  # the controller looked again (maybe rolled back)
                obs, status = apply(obs, d.actions), d.status
    if draw(st.booleans()) and obs.pointer is not None:  # drift the pointer
        moved_to = draw(st.sampled_from(VERSIONS)).version
        obs = replace(
            obs,
            pointer=obs.pointer.model_copy(update={"version": moved_to, "pins": PINS[moved_to]}),
        )
    if draw(st.booleans()):
        status = None  # the caller lost the status
    obs = replace(obs, desired_version=version.version)
    return dep, status, obs


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_plan_reaches_the_desired_state_and_then_plans_nothing(scenario):
    dep, status, obs = scenario
    d = decide(desired(dep, status), obs)
    assert plan(desired(dep, status), obs) == d.actions  # deterministic

    after = apply(obs, d.actions)
    again = decide(desired(dep, d.status), after)
    assert again.actions == [], (d.actions, d.status, again.actions, obs.service, obs.pointer)
    assert decide(desired(dep, d.status), after).actions == []

    if not d.degraded:
        # Converged: the service runs the revision pinning the desired version, the
        # pointer names it, and the replica count is the spec's.
        version = obs.desired_version
        spec = task_spec(PLATFORM, dep, MANIFESTS[version], PINS[version])
        td = after.task_definitions[after.service.task_definition]
        assert td.spec == spec
        assert after.pointer.version == version
        assert after.service.desired_count == dep.spec.serving.replicas
        assert d.status.current_version == version
        settled = settle(after, COMPLETED)
        done = decide(desired(dep, d.status), settled)
        assert done.actions == [] and cond(done.status, "Ready") == ("True", "RolloutComplete")
        # A steady state has a steady status (sources write it only when it changes).
        assert decide(desired(dep, done.status), settled).status == done.status


@settings(max_examples=200, deadline=None)
@given(scenarios(), st.sampled_from([FAILED, "stuck"]))
def test_a_failed_rollout_ends_on_the_restored_version_and_stays(scenario, outcome):
    dep, status, obs = scenario
    d = decide(desired(dep, status), obs)
    after = apply(obs, d.actions)
    if d.degraded or after.service is None:
        return
    # A deployment whose failure was already handled does not fail a second time.
    assume(after.service.rollout.id != d.status.failed_deployment)
    if outcome == FAILED:
        broken = settle(after, FAILED)
    else:
        broken = replace(
            settle(after, IN_PROGRESS),
            now=NOW + timedelta(seconds=dep.spec.strategy.progress_deadline_seconds + 1),
        )
    f = decide(desired(dep, d.status), broken)
    if f.actions == []:  # nothing changed in the ECS service: no rollout to fail
        return
    restored = apply(broken, f.actions)
    assert decide(desired(dep, f.status), restored).actions == []
    assert f.degraded and f.status.failed_version == obs.desired_version
    event(f"first action {type(f.actions[0]).__name__}")
    if isinstance(f.actions[0], Rollback):
        target = f.actions[0].restored_version
        assert restored.pointer.version == target
        td = restored.task_definitions[restored.service.task_definition]
        assert td.spec.version == target


def test_actions_are_values():
    """Actions compare by value, so plans can be compared and logged."""
    a = plan(desired(), observed())
    b = plan(desired(), observed())
    assert a == b
    assert isinstance(a[0], RegisterTaskDefinition) and isinstance(a[1], CreateService)
    assert isinstance(a[2], MovePointer) and not isinstance(a[2], UpdateService)


def test_a_deployment_can_set_classification_gates():
    """spec.gates takes the classifier gates too (minAccuracy, minF1, minAuc, maxLogLoss)."""
    sha = hashlib.sha256(b"classifier").hexdigest()
    clf = Manifest(
        project="usedcar-price",
        version=f"20261128T061000Z-{sha[:7]}",
        created_at=datetime(2026, 11, 28, 6, 10, tzinfo=UTC),
        files={"model.onnx": FileEntry(sha256=sha, size=1)},
        task="classification",
        labels=[0, 1],
        target="sold",
        features=FEATURES,
        data=DataInfo(source="s", fingerprint="0" * 64, rows=1, columns=[]),
        hyperparameters={},
        metrics={
            "model": {"accuracy": 0.8, "f1_macro": 0.7, "roc_auc": 0.85},
            "baseline": {"accuracy": 0.5, "f1_macro": 0.33, "roc_auc": 0.5},
        },
        runtime={},
    )
    obs = observed(
        version=clf.version,
        project=project_config("usedcar-price", task="classification"),
        manifests={clf.version: clf},
        pins={clf.version: pins_of(clf)},
        published=frozenset({clf.version}),
    )
    strict = make_deployment(version=clf.version, gates={"minF1": 0.9, "minAuc": 0.8})
    d = decide(desired(strict), obs)
    assert d.actions == [] and cond(d.status, "Degraded") == ("True", "GateFailed")
    message = d.status.condition("Degraded").message
    assert "min_f1" in message and "min_auc" not in message
    lenient = make_deployment(version=clf.version, gates={"minF1": 0.6, "minAccuracy": 0.75})
    assert kinds(plan(desired(lenient), obs))[-1] == "MovePointer"


def test_a_rollback_with_no_verdict_says_the_step_was_still_waiting():
    from controller.api import AnalysisStep, RevisionValues
    from controller.plan import _judged

    waiting = AnalysisStep(
        hook="h1",
        traffic_percent=30.0,
        canary=RevisionValues(requests=0),
        stable=RevisionValues(requests=0),
        verdict="Inconclusive",
        message="waiting for traffic: the new revision served 0 of the 40 requests",
        at=NOW,
    )
    rollout = RolloutStatus(
        service_deployment="sd1", strategy="CANARY", canary_version=BETTER.version,
        measuring=waiting,
    )  # fmt: skip
    status = ModelDeploymentStatus(rollout=rollout)
    said = _judged(status, BETTER.version)
    assert "30% had no verdict yet: waiting for traffic: the new revision served 0" in said
    assert _judged(status, GOOD.version) == ""


def test_gates_older_than_the_ones_that_judged_the_live_value_judge_nothing():
    """A bucket writer who deletes the newest registration revisions hands the gates back
    to older, looser ones; the live value records the revision that judged it, so the
    controller sees the deletion and changes nothing (as `promote` refuses)."""
    dep, status, obs = deploy(GOOD)
    judged = replace(
        obs, policy_revision=3, pointer=obs.pointer.model_copy(update={"policy_revision": 3})
    )
    assert not decide(desired(dep, status), judged).degraded
    newer = make_deployment(version=BETTER.version, generation=2)
    ok = decide(desired(newer, status), replace(judged, desired_version=BETTER.version))
    assert "MovePointer" in kinds(ok.actions) or "UpdateService" in kinds(ok.actions)
    # Revision 3 deleted: 2 is the newest left.
    deleted = replace(judged, policy_revision=2, desired_version=BETTER.version)
    d = decide(desired(newer, status), deleted)
    assert d.actions == [] and d.degraded
    c = d.status.condition("Degraded")
    assert (c.status, c.reason) == ("True", "IntegrityFailed")
    assert "judged by registration revision 3, but the newest revision" in c.message
    assert "is 2: revisions were deleted; nothing changed" in c.message
    # A rollback pointer records no revision (no gate judges one): nothing to compare.
    rolled = replace(deleted, pointer=obs.pointer.model_copy(update={"policy_revision": None}))
    assert not decide(desired(newer, status), rolled).degraded


def _shifting(version: Manifest, generation: int, **spec) -> ModelDeployment:
    data = make_deployment(version=version.version, generation=generation).model_dump(by_alias=True)
    data["spec"].update({"strategy": {"type": "Canary"}, **spec})
    return ModelDeployment.model_validate(data)


def test_a_prediction_shift_the_live_revision_cannot_be_compared_on_is_refused_first():
    """maxPredictionShift compares captured predictions of both revisions: added together
    with capture, the live revision has none, so every step would wait for ECS's timeout
    and the new version be failed. Refused with nothing written; capture first, then the
    analysis, goes out."""
    lbs = replace(NETWORK, load_balancers="managed")
    capture = {"monitoring": {"capturePercent": 100}}
    judged = {**capture, "analysis": {"maxPredictionShift": 0.3}}
    dep1 = _shifting(GOOD, 1)
    obs = observed(version=GOOD.version)
    d = decide(desired(dep1, None, lbs), obs)
    obs = settle(apply(obs, d.actions), COMPLETED)
    status = decide(desired(dep1, d.status, lbs), obs).status

    dep2 = _shifting(BETTER, 2, **judged)
    d = decide(desired(dep2, status, lbs), replace(obs, desired_version=BETTER.version))
    assert d.actions == []
    assert cond(d.status, "Degraded") == ("True", "InvalidSpec")
    message = d.status.condition("Degraded").message
    assert f"live revision ({GOOD.version}), which captures none" in message

    # Capture first (the same version, no shift to measure), then the analysis.
    dep3 = _shifting(GOOD, 3, **capture)
    d = decide(desired(dep3, status, lbs), obs)
    assert "UpdateService" in kinds(d.actions)
    obs = settle(apply(obs, d.actions), COMPLETED)
    status = decide(desired(dep3, d.status, lbs), obs).status
    dep4 = _shifting(BETTER, 4, **judged)
    d = decide(desired(dep4, status, lbs), replace(obs, desired_version=BETTER.version))
    assert "UpdateService" in kinds(d.actions), d.status.conditions


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ({"strategy": {"type": "Rolling"}}, "its strategy is Rolling"),
        (
            {"strategy": {"type": "Canary"}, "approval": {"required": False}},
            "spec.approval.required is false",
        ),
    ],
)
def test_a_manifest_cannot_opt_out_of_the_projects_approval_policy(spec, why):
    """The project's approval_required (a versioned policy) binds every new version of
    the env: a Rolling strategy or approval.required: false is refused with nothing
    written, naming the policy and what to use. A version already live, and a rollback,
    are not held."""
    governed = PROJECT.model_copy(update={"approval_required": ["prod"]})
    lbs = replace(NETWORK, load_balancers="managed")
    dep1, status, obs = deploy(GOOD)
    obs = replace(obs, project=governed)
    data = make_deployment(version=BETTER.version, generation=2).model_dump(by_alias=True)
    data["spec"].update(spec)
    dep2 = ModelDeployment.model_validate(data)
    d = decide(desired(dep2, status, lbs), replace(obs, desired_version=BETTER.version))
    assert d.actions == []
    assert cond(d.status, "Degraded") == ("True", "InvalidSpec")
    message = d.status.condition("Degraded").message
    assert "requires approval" in message and "approval_required" in message and why in message
    assert f"({GOOD.version} is still served)" in message

    # Nothing to approve: the same spec on the version already live converges.
    live = make_deployment(version=GOOD.version, generation=2).model_dump(by_alias=True)
    live["spec"].update(spec)
    same = ModelDeployment.model_validate(live)
    assert not decide(desired(same, status, lbs), obs).degraded
    # Without the policy, the same change rolls out.
    d = decide(
        desired(dep2, status, lbs), replace(obs, desired_version=BETTER.version, project=PROJECT)
    )
    assert "UpdateService" in kinds(d.actions)


def test_a_rollback_is_not_held_by_the_approval_policy():
    """Returning to the version that ran before needs no approval, whatever the
    strategy: the policy governs new versions."""
    governed = PROJECT.model_copy(update={"approval_required": ["prod"]})
    _, status, obs = deploy(GOOD)
    dep2 = make_deployment(version=BETTER.version, generation=2)
    d = decide(desired(dep2, status), replace(obs, desired_version=BETTER.version))
    obs = settle(apply(obs, d.actions), COMPLETED)
    status = decide(desired(dep2, d.status), obs).status
    back = make_deployment(version=GOOD.version, generation=3)
    # GOOD was live before: its entry in the env's promotion log makes this a rollback.
    obs = replace(obs, desired_version=GOOD.version, project=governed, live_at=1)
    d = decide(desired(back, status), obs)
    assert not d.degraded, d.status.conditions
    assert "UpdateService" in kinds(d.actions)
