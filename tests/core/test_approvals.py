"""Rollout approvals: sealed for their own key, decided once, and read by the controller
(from the record, or from a Kubernetes annotation naming the version)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from controller.api import ModelDeployment
from controller.observe import Observed, Observer, ServiceState, TaskDefinitionState
from controller.shifts import ShiftState
from mlops_core import aws
from mlops_core.approvals import Approvals
from mlops_core.errors import Conflict, IntegrityError, InvalidInput, NotFound

SD = "arn:aws:ecs:us-east-1:123456789012:service-deployment/mlops/demo-prod/r1"
OTHER = "arn:aws:ecs:us-east-1:123456789012:service-deployment/mlops/demo-prod/r2"
V2 = "20260102T000000Z-bbbbbbb"


def test_a_decision_is_recorded_once_and_read_back(platform):
    approvals = Approvals(platform)
    assert approvals.get("demo", "prod", SD) is None
    made = approvals.record("demo", "prod", service_deployment=SD, decision="approve",
                            version=V2, by="ana", reason="looked at the canary")  # fmt: skip
    assert approvals.get("demo", "prod", SD) == made
    with pytest.raises(Conflict, match="already approved by ana") as second:
        approvals.record("demo", "prod", service_deployment=SD, decision="reject",
                         version=V2, by="bob", reason="no")  # fmt: skip
    # The way to a new decision is one that works: deploy --retry rolls the version again.
    assert f"'mlopsctl deploy --env prod --version {V2} --retry'" in second.value.render()
    assert approvals.get("demo", "prod", OTHER) is None  # one rollout only


def test_a_forged_or_copied_record_is_an_integrity_failure(platform):
    approvals = Approvals(platform)
    approvals.record("demo", "prod", service_deployment=SD, decision="approve",
                     version=V2, by="ana", reason="ok")  # fmt: skip
    s3 = aws.client("s3")
    bucket = platform.artifact_bucket
    key = platform.approval_key("demo", "prod", "r1")
    genuine = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    # Copied to another rollout: sealed for its own key, it does not verify there.
    s3.put_object(Bucket=bucket, Key=platform.approval_key("demo", "prod", "r2"), Body=genuine)
    with pytest.raises(IntegrityError, match="does not verify"):
        approvals.get("demo", "prod", OTHER)
    # Written by hand: not a sealed record.
    doc = json.loads(genuine)["document"]
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(doc).encode())
    with pytest.raises(IntegrityError, match="not a sealed record"):
        approvals.get("demo", "prod", SD)


@pytest.mark.parametrize("bad", ["../prod/x", "a/b", "", "x" * 200, "id with space"])
def test_no_key_is_built_from_a_name_that_is_not_a_rollout_id(platform, bad):
    with pytest.raises(InvalidInput, match="not an ECS service deployment id"):
        platform.approval_key("demo", "prod", bad)


def _observed(version: str) -> Observed:
    td = "arn:aws:ecs:us-east-1:123456789012:task-definition/demo-prod:2"
    spec = type("Spec", (), {"version": version})()
    svc = ServiceState(name="demo-prod", arn="svc", status="ACTIVE", desired_count=1,
                       task_definition=td, deployments=(), tags={}, min_healthy_percent=100,
                       max_percent=200, circuit_breaker=True)  # fmt: skip
    return Observed(
        key="ml/demo-prod",
        now=datetime(2026, 12, 1, tzinfo=UTC),
        service=svc,
        task_definitions={td: TaskDefinitionState(td, "demo-prod", 2, True, spec)},  # type: ignore[arg-type]
    )


def _deployment(annotations: dict[str, str]) -> ModelDeployment:
    return ModelDeployment.model_validate(
        {
            "metadata": {"name": "demo-prod", "namespace": "ml", "annotations": annotations},
            "spec": {"project": "demo", "env": "prod", "model": {"version": V2},
                     "serving": {"image": "img:1"}, "strategy": {"type": "BlueGreen"},
                     "approval": {}},
        }
    )  # fmt: skip


def test_an_annotation_naming_the_rolling_version_approves_or_rejects_it(platform):
    state = ShiftState(service_deployment=SD, status="IN_PROGRESS", stage=None, hook=None)
    observer = Observer(platform)
    notes = {
        "mlops.platform.io/approve": V2,
        "mlops.platform.io/approved-by": "ana",
        "mlops.platform.io/approval-reason": "canary looked fine",
    }
    found = observer._approval(_deployment(notes), state, _observed(V2))
    assert found is not None
    assert (found.decision, found.version, found.by, found.reason) == (
        "approve", V2, "ana", "canary looked fine",
    )  # fmt: skip
    assert found.source == "annotation mlops.platform.io/approve"
    # An annotation for another version approves nothing; a rejection wins over both.
    assert (
        observer._approval(_deployment(notes), state, _observed("20260103T000000Z-ccccccc")) is None
    )
    rejected = observer._approval(
        _deployment({**notes, "mlops.platform.io/reject": V2}), state, _observed(V2)
    )
    assert rejected is not None and rejected.decision == "reject"
    # A sealed record comes first.
    Approvals(platform).record("demo", "prod", service_deployment=SD, decision="reject",
                               version=V2, by="bob", reason="not now")  # fmt: skip
    record = observer._approval(_deployment(notes), state, _observed(V2))
    assert record is not None and (record.decision, record.by) == ("reject", "bob")


def test_a_promotion_key_that_does_not_exist_names_its_setting(platform):
    wrong = Approvals(replace(platform, promotion_log_key="alias/no-such-key"))

    def refused(attempt) -> None:
        with pytest.raises(NotFound) as caught:
            attempt()
        assert "promotion-signing key" in caught.value.what
        assert "MLOPS_PROMOTION_KEY" in (caught.value.hint or "")
        assert "MLOPS_SIGNING_KEY" not in (caught.value.hint or "")

    refused(lambda: wrong.record("demo", "prod", service_deployment=SD, decision="approve",
                                 version=V2, by="ana", reason="ok"))  # fmt: skip
    Approvals(platform).record("demo", "prod", service_deployment=SD, decision="approve",
                               version=V2, by="ana", reason="ok")  # fmt: skip
    refused(lambda: wrong.get("demo", "prod", SD))


def test_a_forged_record_at_the_pause_says_the_rollout_is_held_and_what_to_do(platform):
    state = ShiftState(service_deployment=SD, status="IN_PROGRESS", stage=None, hook=None)
    key = platform.approval_key("demo", "prod", "r1")
    aws.client("s3").put_object(Bucket=platform.artifact_bucket, Key=key, Body=b"{}")
    with pytest.raises(IntegrityError) as caught:
        Observer(platform)._approval(_deployment({}), state, _observed(V2))
    hint = caught.value.hint or ""
    assert f"ECS holds the rollout of {V2} at its approval pause" in hint
    assert "'mlopsctl approve' or 'reject' records a genuine decision" in hint
    assert key in (caught.value.where or "")
