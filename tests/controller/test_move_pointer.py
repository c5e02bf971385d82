"""The controller's MovePointer writes through the promotion log, like promote/rollback,
and only for the deployment holding the env's claim."""

from __future__ import annotations

import pytest
from factories import make_artifacts, project_config

from controller.actions import MovePointer
from controller.execute import CONTROLLER_ACTOR, Executor
from controller.plan import NetworkConfig
from mlops_core.claims import Claims
from mlops_core.errors import Conflict
from mlops_core.pointer import PointerStore
from mlops_core.promotion import promote
from mlops_core.promotion_log import PromotionLog
from mlops_core.registry import Registry

PROJECT, ENV = "usedcar-price", "prod"
OWNER = "ml/usedcar-prod"


@pytest.fixture
def setup(platform, tmp_path):
    reg = Registry(platform)
    reg.register_project(project_config())
    versions = []
    for seed in (1, 2):
        versions.append(make_artifacts(tmp_path / str(seed), seed=seed).version)
        reg.publish(tmp_path / str(seed))
    return reg, Executor(platform, reg, NetworkConfig()), versions


def move(reg: Registry, version: str, action: str = "promote") -> MovePointer:
    pins = reg.get_published(PROJECT, version).pins
    return MovePointer(
        project=PROJECT,
        env=ENV,
        version=version,
        uri=reg.platform.version_uri(PROJECT, version),
        sha256=reg.get_manifest(PROJECT, version).model_sha256,
        reason="controller: test",
        owner=OWNER,
        action=action,  # type: ignore[arg-type]
        manifest_sha256=pins.manifest_sha256,
        object_versions=pins.objects_json(),
    )


def test_a_repeated_move_appends_once_and_a_restore_pops_the_stack(setup):
    reg, executor, (v1, v2) = setup
    first, _ = promote(PROJECT, ENV, v1, registry=reg, actor="ci", reason="first")
    assert first.owner is None  # nobody owned the env then
    Claims(reg.platform).create(PROJECT, ENV, OWNER)
    executor.move_pointer(move(reg, v2))
    executor.move_pointer(move(reg, v2))  # a repeat after a crash: nothing new
    log = PromotionLog(reg.platform)
    assert [(e.seq, e.version, e.promoted_by) for e in log.history(PROJECT, ENV)] == [
        (2, v2, CONTROLLER_ACTOR),
        (1, v1, "ci"),
    ]
    executor.move_pointer(move(reg, v1, "rollback"))  # the rollout failed: back to v1
    head = log.head(PROJECT, ENV)
    assert head is not None and (head.seq, head.version, head.action) == (3, v1, "rollback")
    assert head.back is None  # popped: the stack is back at entry 1, nothing below it
    assert head.model_dump(include={"uri", "sha256", "pins"}) == first.model_dump(
        include={"uri", "sha256", "pins"}
    )
    assert PointerStore(reg.platform).get(PROJECT, ENV) == head
    assert head.owner == OWNER


def test_a_move_for_a_deployment_that_does_not_hold_the_claim_writes_nothing(setup, mutations):
    reg, executor, (v1, _) = setup
    claims = Claims(reg.platform)
    mutations.clear()
    with pytest.raises(Conflict, match="not claimed by ml/usedcar-prod"):
        executor.move_pointer(move(reg, v1))  # unclaimed: released meanwhile
    claims.create(PROJECT, ENV, "ml/other")
    mutations.clear()
    with pytest.raises(Conflict, match="belongs to ModelDeployment ml/other"):
        executor.move_pointer(move(reg, v1))
    assert mutations == {} and PointerStore(reg.platform).get(PROJECT, ENV) is None


@pytest.mark.parametrize("attack", ["copied from staging", "head deleted"])
def test_a_move_over_a_tampered_log_is_an_integrity_failure_writing_nothing(setup, attack):
    """The controller appends through the same log: a genuine staging entry copied to
    prod's next seq, or prod's head deleted, stops it before it writes, SSM untouched."""
    from mlops_core import aws
    from mlops_core.errors import IntegrityError

    reg, executor, (v1, v2) = setup
    promote(PROJECT, ENV, v1, registry=reg)
    promote(PROJECT, ENV, v2, registry=reg)
    promote(PROJECT, "staging", v1, registry=reg)
    promote(PROJECT, "staging", v2, registry=reg)
    promote(PROJECT, "staging", v1, registry=reg)
    Claims(reg.platform).create(PROJECT, ENV, OWNER)
    s3, bucket = aws.client("s3"), reg.platform.artifact_bucket
    if attack == "copied from staging":
        source = {"Bucket": bucket, "Key": reg.platform.promotion_key(PROJECT, "staging", 3)}
        s3.copy_object(Bucket=bucket, Key=reg.platform.promotion_key(PROJECT, ENV, 3),
                       CopySource=source)  # fmt: skip
    else:
        s3.delete_object(Bucket=bucket, Key=reg.platform.promotion_key(PROJECT, ENV, 2))
    before = PointerStore(reg.platform).get(PROJECT, ENV)
    with pytest.raises(IntegrityError):
        executor.move_pointer(move(reg, v1))
    assert PointerStore(reg.platform).get(PROJECT, ENV) == before
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=reg.platform.promotions_prefix(PROJECT, ENV))
    assert len(listed.get("Contents", [])) == (3 if attack == "copied from staging" else 1)
