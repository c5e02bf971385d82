"""Which planned actions revert a hand-made change (logged loudly, counted) and which
only deploy the spec."""

from __future__ import annotations

from types import SimpleNamespace

from controller.actions import UpdateService
from controller.api import ModelDeploymentStatus
from controller.reconcile import find_drift

TD = "arn:aws:ecs:us-east-1:123456789012:task-definition/usedcar-price-prod:{}"


def _status() -> ModelDeploymentStatus:
    return ModelDeploymentStatus.model_validate(
        {"observedGeneration": 3, "currentVersion": "v2", "taskDefinition": TD.format(2)}
    )


def _running(revision: int) -> SimpleNamespace:
    return SimpleNamespace(
        pointer=None, service=SimpleNamespace(task_definition=TD.format(revision))
    )


def _update(version: str, revision: int | None = None) -> UpdateService:
    arn = TD.format(revision) if revision is not None else None
    return UpdateService(service=None, task=SimpleNamespace(version=version), task_definition=arn)


def test_a_service_changed_by_hand_is_drift_when_the_spec_is_the_one_converged():
    (drift,) = find_drift(3, _status(), _running(7), [_update("v2", 2)])
    assert (drift.kind, drift.found, drift.restored) == (
        "service",
        "usedcar-price-prod:7",
        "usedcar-price-prod:2",
    )


def test_deploying_another_version_over_an_older_revision_is_not_drift():
    # ECS rolled a superseded rollout back to revision 1; the spec now wants v3.
    assert find_drift(3, _status(), _running(1), [_update("v3")]) == []
    # Another generation is never drift either.
    assert find_drift(4, _status(), _running(7), [_update("v2", 2)]) == []
