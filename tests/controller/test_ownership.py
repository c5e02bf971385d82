"""Single ownership, enforced where the state lives (the env's claim in S3), over real HTTP.

Each test is one of the ways two writers of one project/env used to fight: two
ModelDeployments on a service Terraform made, two created together for a fresh env, a
Retain delete whose ownership outlived the object, a restart that forgot who owns what.
"""

from __future__ import annotations

import threading

import pytest
import structlog
import yaml
from reconcile_support import (
    PROJECT,
    cond,
    ecs_service,
    make_deployment,
    pointer_version,
    revisions,
)

from controller.actions import TAG_DEPLOYMENT, AdoptService, ClaimEnv
from controller.observe import COMPLETED
from controller.plan import Desired, decide
from controller.reconcile import DONE
from controller.runtime import Controller
from controller.sources import DirectorySource
from mlops_core import aws
from mlops_core.claims import Claims
from mlops_core.errors import Conflict
from mlops_core.promotion_log import PromotionLog

ENV = "prod"


def terraform_service(platform, network) -> str:
    """The service as infra/terraform/ecs.tf makes it: its own first revision, the cost
    tags, and no owner tag (the controller adopts it)."""
    ecs = aws.client("ecs")
    family = platform.task_family(PROJECT, ENV)
    td = ecs.register_task_definition(
        family=family,
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="256",
        memory="512",
        containerDefinitions=[{"name": "serving", "image": "mlops/serving:bootstrap"}],
    )["taskDefinition"]["taskDefinitionArn"]
    ecs.create_service(
        cluster=platform.ecs_cluster,
        serviceName=platform.service_name(PROJECT, ENV),
        taskDefinition=td,
        desiredCount=1,
        launchType="FARGATE",
        networkConfiguration={
            "awsvpcConfiguration": {
                "subnets": list(network.subnets),
                "securityGroups": list(network.security_groups),
            }
        },
        tags=[{"key": k, "value": v} for k, v in platform.cost_tags(PROJECT, ENV).items()],
    )
    return td


def tags(platform) -> dict[str, str]:
    return {t["key"]: t["value"] for t in ecs_service(platform).get("tags", [])}


def log_entries(platform) -> list:
    return PromotionLog(platform).history(PROJECT, ENV)


def test_two_deployments_on_a_terraform_service_one_converges_the_pointer_moves_once(
    make_reconciler, platform, network, versions
):
    terraform_service(platform, network)
    assert TAG_DEPLOYMENT not in tags(platform)
    a = make_deployment("a", version=versions.good)
    b = make_deployment("b", version=versions.better)
    # Two controllers (no shared cache), taking turns, as the 30 s fight did.
    ra, rb = make_reconciler(), make_reconciler()
    ra.observer.rollout = rb.observer.rollout = COMPLETED
    sa = sb = None
    first = ra.reconcile(a, sa)
    kinds = [type(x) for x in first.actions]
    # The claim first, then the service labelled as a's before anything changes it.
    assert kinds[:2] == [ClaimEnv, AdoptService]
    sa = first.status
    for _ in range(4):
        rb_result = rb.reconcile(b, sb)
        sb = rb_result.status
        assert rb_result.actions == [] and rb_result.requeue == DONE
        sa = ra.reconcile(a, sa).status
    assert cond(sa, "Ready") == ("True", "RolloutComplete")
    assert cond(sb, "Degraded") == ("True", "Conflict")
    message = sb.condition("Degraded").message
    assert "belongs to ModelDeployment ml/a" in message and "delete ml/b" in message
    assert tags(platform)[TAG_DEPLOYMENT] == "ml/a"
    entries = log_entries(platform)
    assert [(e.version, e.owner) for e in entries] == [(versions.good, "ml/a")]
    assert pointer_version(platform) == versions.good


def test_the_creation_race_leaves_zero_writes_from_the_loser(
    make_reconciler, platform, network, versions, mutations
):
    """Both observe the fresh env unclaimed and plan; a executes first, then b."""
    ra, rb = make_reconciler(), make_reconciler()
    a = make_deployment("a", version=versions.good)
    b = make_deployment("b", version=versions.better)
    seen_a, seen_b = ra.observer.observe(a, None), rb.observer.observe(b, None)
    assert seen_a.claim is None and seen_b.claim is None
    plan_a = decide(Desired(a, None, platform, network), seen_a)
    plan_b = decide(Desired(b, None, platform, network), seen_b)
    assert type(plan_a.actions[0]) is ClaimEnv and type(plan_b.actions[0]) is ClaimEnv
    log = structlog.get_logger("test")
    ra.executor.execute(plan_a.actions, log)
    mutations.clear()
    with pytest.raises(Conflict, match="belongs to ModelDeployment ml/a"):
        rb.executor.execute(plan_b.actions, log)
    assert mutations == {}, mutations  # the claim was looked at, and nothing written
    assert len(revisions(platform)) == 1 and tags(platform)[TAG_DEPLOYMENT] == "ml/a"
    assert [e.version for e in log_entries(platform)] == [versions.good]
    # Its next pass sees the claim and is blocked before planning anything.
    again = rb.reconcile(b, None)
    assert again.actions == [] and cond(again.status, "Degraded") == ("True", "Conflict")
    assert mutations == {}, mutations


def test_concurrent_claims_have_exactly_one_winner(platform):
    """Both looked and found no claim: the conditional create decides (moto enforces
    If-None-Match; the local endpoint serialises conditional writes)."""
    claims = Claims(platform)
    n = 8
    barrier = threading.Barrier(n)
    got: dict[str, str] = {}

    def claim(i: int) -> None:
        barrier.wait()
        try:
            got[f"ml/d{i}"] = claims.create(PROJECT, ENV, f"ml/d{i}").owner
        except Conflict:  # S3's 409: another create of the key is in flight
            got[f"ml/d{i}"] = "conflict"

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winner = claims.get(PROJECT, ENV).owner
    assert set(got.values()) <= {winner, "conflict"} and got[winner] == winner


def _write(folder, deployment) -> None:
    doc = deployment.model_dump(by_alias=True, exclude_none=True, mode="json")
    (folder / f"{deployment.metadata.name}.yaml").write_text(yaml.safe_dump(doc))


def test_retain_hands_the_env_over_to_a_new_object(make_reconciler, platform, versions, tmp_path):
    """The issue's case: prod declared under a new name while the old object exists is a
    Conflict; once the old one is deleted (Retain), the new one adopts the env."""
    folder = tmp_path / "deployments"
    folder.mkdir()
    rec = make_reconciler()
    rec.observer.rollout = COMPLETED
    old = make_deployment("usedcar-old", version=versions.good)
    new = make_deployment("usedcar-new", version=versions.better)

    def once() -> dict:
        ctl = Controller(DirectorySource(folder), rec, delete_policy="Retain")
        return {o.name: o for o in ctl.run_once()}

    _write(folder, old)
    assert not once()["usedcar-old"].failed
    old_key = Claims(platform).get(PROJECT, ENV).owner
    _write(folder, new)
    refused = once()["usedcar-new"]
    assert cond(refused.status, "Degraded") == ("True", "Conflict")
    assert old_key in refused.status.condition("Degraded").message
    desired_before = ecs_service(platform)["desiredCount"]

    (folder / "usedcar-old.yaml").unlink()
    for _ in range(3):
        outcomes = once()
    adopted = outcomes["usedcar-new"]
    assert not adopted.failed and cond(adopted.status, "Ready") == ("True", "RolloutComplete")
    assert Claims(platform).get(PROJECT, ENV).owner == adopted.key != old_key
    assert tags(platform)[TAG_DEPLOYMENT] == adopted.key
    assert ecs_service(platform)["desiredCount"] == desired_before  # Retain left it
    head = log_entries(platform)[0]
    assert (head.version, head.owner) == (versions.better, adopted.key)


def test_a_delete_releases_only_its_own_claim(make_reconciler, platform, versions):
    rec = make_reconciler()
    a = make_deployment("a", version=versions.good)
    rec.reconcile(a, None)
    replicas = ecs_service(platform)["desiredCount"]
    # Another object (never the owner) deleted, with either policy: nothing changes.
    for policy in ("Retain", "ScaleToZero"):
        assert rec.retire("ml/b", PROJECT, ENV, policy) is False
    assert Claims(platform).get(PROJECT, ENV).owner == "ml/a"
    assert ecs_service(platform)["desiredCount"] == replicas
    # The owner, with ScaleToZero: scaled to zero, then released; a repeat does nothing.
    assert rec.retire("ml/a", PROJECT, ENV, "ScaleToZero") is True
    assert ecs_service(platform)["desiredCount"] == 0
    assert Claims(platform).get(PROJECT, ENV) is None
    assert rec.retire("ml/a", PROJECT, ENV, "ScaleToZero") is False


def test_ownership_survives_a_controller_restart(make_reconciler, platform, versions, mutations):
    rec = make_reconciler()
    rec.observer.rollout = COMPLETED
    a = make_deployment("a", version=versions.good)
    b = make_deployment("b", version=versions.better)
    status = rec.reconcile(a, None).status
    status = rec.reconcile(a, status).status
    assert cond(status, "Ready") == ("True", "RolloutComplete")
    # A new controller: no cache, no status (lost with the old process).
    restarted = make_reconciler()
    restarted.observer.rollout = COMPLETED
    mutations.clear()
    refused = restarted.reconcile(b, None)
    assert refused.actions == [] and cond(refused.status, "Degraded") == ("True", "Conflict")
    steady = restarted.reconcile(a, None)
    assert steady.actions == [] and not steady.degraded
    assert mutations == {}, mutations
    assert restarted.observer.reads["s3:GetObject(claim)"] == 2  # one GET per pass
