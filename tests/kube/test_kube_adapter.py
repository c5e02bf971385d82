"""The Kubernetes source's own pieces (the e2e drives the whole operator): parsing a body,
the status merge patch, the delete policy and the scale-to-zero it may call."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from controller import api
from controller.actions import TAG_DEPLOYMENT
from controller.api import ModelDeploymentStatus, set_condition
from controller.settings import ControllerSettings
from controller.sources import kube
from mlops_core import aws
from mlops_core.errors import InvalidInput

EXAMPLE = Path(__file__).resolve().parents[2] / "crds" / "examples" / "usedcar-price-prod.yaml"


def _body(**spec_changes) -> dict:
    body = yaml.safe_load(EXAMPLE.read_text())
    body["metadata"].update(
        namespace="ml", uid="1234", generation=3, resourceVersion="99", finalizers=["x"]
    )
    body["spec"]["serving"].update(spec_changes)
    body["status"] = {"observedGeneration": 2, "somethingElse": {"a": 1}}
    return body


def test_parse_reads_the_object_and_ignores_status_and_server_metadata():
    deployment = kube.parse_body(_body())
    assert deployment.key == "ml/usedcar-price-prod"
    assert deployment.metadata.generation == 3


def test_parse_names_every_bad_field():
    with pytest.raises(InvalidInput) as err:
        kube.parse_body(_body(memory=8192, replicas=-1))
    message = err.value.render()
    assert "modeldeployment ml/usedcar-price-prod" in message
    assert "spec.serving.replicas" in message
    assert "kubectl edit" in message


def test_status_patch_is_empty_when_nothing_changed_and_deletes_dropped_keys():
    conditions = set_condition([], "Ready", "False", "RolloutInProgress", "0/2", 1)
    status = ModelDeploymentStatus(
        observed_generation=1, current_version="20261128T064500Z-3f9a2c1", conditions=conditions
    )
    written = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert kube.status_patch(written, status) == {}

    later = status.model_copy(update={"current_version": None, "observed_generation": 2})
    patch = kube.status_patch({**written, "kopf": {"progress": {}}}, later)
    assert patch == {"observedGeneration": 2, "currentVersion": None, "kopf": None}


def test_delete_policy_comes_from_the_annotation_else_the_default():
    body = _body()
    annotations = body["metadata"].get("annotations")
    assert api.delete_policy(annotations, "Retain") == "Retain"
    assert api.delete_policy({api.DELETE_POLICY_ANNOTATION: "ScaleToZero"}, "Retain") == (
        "ScaleToZero"
    )
    with pytest.raises(ValueError, match="Retain, ScaleToZero"):
        api.delete_policy({api.DELETE_POLICY_ANNOTATION: "Destroy"}, "Retain")


def test_settings_refuse_a_bad_delete_policy_before_starting(monkeypatch):
    monkeypatch.setenv("MLOPS_DELETE_POLICY", "nope")
    with pytest.raises(ValidationError, match="ScaleToZero"):
        ControllerSettings()
    monkeypatch.setenv("MLOPS_DELETE_POLICY", "ScaleToZero")
    assert ControllerSettings().delete_policy == "ScaleToZero"


@pytest.mark.parametrize("identity", ["pod\x1b[31m-0", "pod\n0", "x" * 254])
def test_settings_refuse_an_identity_a_terminal_or_lease_cannot_carry(monkeypatch, identity):
    """MLOPS_CONTROLLER_IDENTITY goes into lock files and leases and is printed when a
    peer finds a key held: printable, at most 253 characters (a pod's name fits)."""
    monkeypatch.setenv("MLOPS_CONTROLLER_IDENTITY", identity)
    with pytest.raises(ValidationError, match="printable|at most 253"):
        ControllerSettings()
    monkeypatch.setenv("MLOPS_CONTROLLER_IDENTITY", "mlops-controller-7d9f-abcde")
    assert ControllerSettings().identity == "mlops-controller-7d9f-abcde"


def _service(platform, key: str, desired: int = 2) -> str:
    ecs = aws.client("ecs")
    td = ecs.register_task_definition(
        family="usedcar-price-prod",
        containerDefinitions=[{"name": "serving", "image": "mlops/serving:1", "memory": 512}],
    )["taskDefinition"]["taskDefinitionArn"]
    name = platform.service_name("usedcar-price", "prod")
    ecs.create_service(
        cluster=platform.ecs_cluster,
        serviceName=name,
        taskDefinition=td,
        desiredCount=desired,
        tags=[{"key": TAG_DEPLOYMENT, "value": key}],
    )
    return name


def _desired(platform, name: str) -> int:
    (svc,) = aws.client("ecs").describe_services(cluster=platform.ecs_cluster, services=[name])[
        "services"
    ]
    return svc["desiredCount"]


def _retire(platform, deployment, policy: str = "ScaleToZero") -> bool:
    from controller.reconcile import Reconciler

    s = deployment.spec
    return Reconciler(platform).retire(deployment.key, s.project, s.env, policy)


def test_scale_to_zero_scales_only_the_deployments_own_service(platform):
    deployment = kube.parse_body(_body())
    name = _service(platform, key="other-namespace/usedcar-price-prod")
    assert _retire(platform, deployment) is False
    assert _desired(platform, name) == 2


def test_scale_to_zero_is_idempotent_and_retain_leaves_the_service(platform):
    deployment = kube.parse_body(_body())
    name = _service(platform, key=deployment.key)
    assert _retire(platform, deployment, "Retain") is False
    assert _desired(platform, name) == 2
    assert _retire(platform, deployment) is True
    assert _desired(platform, name) == 0
    assert _retire(platform, deployment) is False


def test_scale_to_zero_without_a_service_does_nothing(platform):
    assert _retire(platform, kube.parse_body(_body())) is False
