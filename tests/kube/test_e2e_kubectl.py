"""End to end: kubectl -> (emulated) Kubernetes API -> the real operator -> AWS (moto).

The operator is ``mlopsctl controller run --source kube`` in a subprocess; kubectl is the
real binary; AWS is the session's moto server over HTTP. On moto an ECS rollout never
completes, so a converged deployment reads Progressing=True/RolloutInProgress and
Ready=False with that reason, while the pointer and the service already name the version.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx
import pytest
import yaml
from chart_render import allows, grants, one, render
from conftest import ROOT, liveness_ok, wait_for
from kube_emulator import resource_requests

from controller.actions import ENV_MODEL_VERSION
from mlops_core import aws
from mlops_core.naming import Platform
from mlops_core.pointer import PointerStore
from mlops_core.registry import Registry

pytestmark = pytest.mark.e2e

NAME = "usedcar-price-prod"
EXAMPLE = ROOT / "crds" / "examples" / "usedcar-price-prod.yaml"
CRD = ROOT / "crds" / "modeldeployment.yaml"
CONDITIONS = '{range .status.conditions[*]}{.type}={.status} {.reason}{"\\n"}{end}'


def _manifest(tmp_path: Path, version: str) -> Path:
    """The checked-in example, pinned to a version this test published."""
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["spec"]["model"]["version"] = version
    path = tmp_path / EXAMPLE.name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _rules() -> list[dict]:
    """What the chart grants the operator: its ClusterRole and the lease Role."""
    docs = render()
    return one(docs, "ClusterRole")["rules"] + one(docs, "Role")["rules"]


def _requests(cluster) -> set[tuple[str, str, str]]:
    """Every resource request of the operator: kopf's watch and finalizer, the runtime's
    status patches, Events and Lease."""
    return resource_requests(cluster, "kopf/") | resource_requests(cluster, "mlops-controller")


def _status(kubectl) -> dict:
    return kubectl.json("get", "modeldeployment", NAME).get("status") or {}


def _condition(status: dict, type_: str) -> dict:
    return next((c for c in status.get("conditions", []) if c["type"] == type_), {})


def _converged(kubectl, generation: int, reason: str = "RolloutInProgress"):
    def check():
        status = _status(kubectl)
        ready = _condition(status, "Ready")
        if status.get("observedGeneration") == generation and ready.get("reason") == reason:
            return status
        return None

    return check


def _aws_state(platform: Platform) -> dict:
    """What AWS runs for usedcar-price/prod: the pointer's version, the service's task
    definition and the version that revision pins."""
    ssm, ecs = aws.client("ssm"), aws.client("ecs")
    pointer = json.loads(
        ssm.get_parameter(Name=platform.pointer_param("usedcar-price", "prod"))["Parameter"][
            "Value"
        ]
    )
    (svc,) = ecs.describe_services(
        cluster=platform.ecs_cluster, services=[platform.service_name("usedcar-price", "prod")]
    )["services"]
    td = ecs.describe_task_definition(taskDefinition=svc["taskDefinition"])["taskDefinition"]
    env = {e["name"]: e["value"] for e in td["containerDefinitions"][0]["environment"]}
    return {
        "pointer": pointer["version"],
        "task_definition": svc["taskDefinition"],
        "served": env[ENV_MODEL_VERSION],
        "desired": svc["desiredCount"],
    }


def _aws_snapshot(platform: Platform) -> dict:
    """Everything a reconcile could write, to compare before/after (zero writes)."""
    ssm, ecs = aws.client("ssm"), aws.client("ecs")
    history = ssm.get_parameter_history(Name=platform.pointer_param("usedcar-price", "prod"))
    (svc,) = ecs.describe_services(
        cluster=platform.ecs_cluster,
        services=[platform.service_name("usedcar-price", "prod")],
        include=["TAGS"],
    )["services"]
    return {
        "pointer_history": [p["Version"] for p in history["Parameters"]],
        "task_definitions": ecs.list_task_definitions()["taskDefinitionArns"],
        "service": {
            k: svc.get(k) for k in ("taskDefinition", "desiredCount", "deployments", "tags")
        },
    }


def test_kubectl_apply_patch_rollback_and_invalid_spec(
    kubectl, cluster, start_operator, versions, platform, tmp_path
):
    v1, v2 = versions
    kubectl("apply", "--validate=false", "-f", str(CRD), record=True)
    manifest = _manifest(tmp_path, v1)
    kubectl("apply", "--validate=false", "-f", str(manifest), record=True)

    operator = start_operator()
    ops = [operator]

    # 1. created: converges on v1 (pointer and service), rollout in progress on moto.
    status = wait_for("generation 1 to converge", _converged(kubectl, 1), operators=ops)
    assert _condition(status, "Progressing")["status"] == "True"
    assert _condition(status, "Ready")["status"] == "False"
    assert _condition(status, "Degraded").get("status") != "True"
    assert all(c.get("observedGeneration") == 1 for c in status["conditions"])
    state = _aws_state(platform)
    assert state["pointer"] == v1 and state["served"] == v1
    assert wait_for("the liveness endpoint", lambda: liveness_ok(operator.liveness))
    wide = kubectl("get", "modeldeployment", NAME, "-o", "wide", record=True).splitlines()
    # The estimate of the example (2 tasks of 0.5 vCPU / 1 GB in us-east-1, shipped
    # prices since moto has no Price List API; no load balancer here, as the operator
    # attaches none: 29.55 + 6.49) in its own column.
    column = wide[0].index("MONTHLY-USD")
    assert wide[1][column:].split()[0] == "36.04", wide
    kubectl("get", "modeldeployment", NAME, "-o", f"jsonpath={CONDITIONS}", record=True)

    # Every action taken was posted as an Event on the object.
    def action_events():
        events = [
            e
            for e in cluster.objects("v1/events")
            if e.get("involvedObject", {}).get("name") == NAME
        ]
        reasons = {e["reason"] for e in events}
        return reasons if {"CreateService", "MovePointer"} <= reasons else None

    reasons = wait_for("action events", action_events, operators=ops)
    assert "RegisterTaskDefinition" in reasons
    described = kubectl("describe", "modeldeployment", NAME, record=True)
    assert "CreateService" in described and "MovePointer" in described

    # Drift made by hand in AWS (the pointer moved to v2 behind the controller's back) is
    # put back by the resync timer, without any change to the object.
    store = PointerStore(platform)
    pointer = store.get("usedcar-price", "prod")
    published_v2 = Registry(platform).get_published("usedcar-price", v2)
    manifest_v2 = published_v2.manifest
    store.put(
        "usedcar-price",
        "prod",
        pointer.model_copy(
            update={
                "version": v2,
                "uri": platform.version_uri("usedcar-price", v2),
                "sha256": manifest_v2.model_sha256,
                "pins": published_v2.pins,
                "reason": "edited by hand",
            }
        ),
    )
    wait_for(
        "the timer to revert the pointer",
        lambda: _aws_state(platform)["pointer"] == v1,
        operators=ops,
    )
    assert _status(kubectl)["observedGeneration"] == 1

    # 2. a new version by kubectl patch: converges on v2.
    kubectl(
        "patch", "modeldeployment", NAME, "--type=merge",
        "-p", json.dumps({"spec": {"model": {"version": v2}}}),
        record=True,
    )  # fmt: skip
    wait_for("generation 2 to converge", _converged(kubectl, 2), operators=ops)
    wait_for("AWS to serve v2", lambda: _aws_state(platform)["served"] == v2, operators=ops)
    state = _aws_state(platform)
    assert state["pointer"] == v2

    # 3. rollback by patch: back to v1.
    kubectl(
        "patch", "modeldeployment", NAME, "--type=merge",
        "-p", json.dumps({"spec": {"model": {"version": v1}}}),
    )  # fmt: skip
    wait_for("generation 3 to converge", _converged(kubectl, 3), operators=ops)
    state = _aws_state(platform)
    assert state["pointer"] == v1 and state["served"] == v1

    # 4. a malformed spec (a real API server's CEL rule would refuse it at admission; the
    # emulator has no schema validation, so the operator's own validation is what shows):
    # Degraded with the message, and not one AWS write.
    before = _aws_snapshot(platform)
    kubectl(
        "patch", "modeldeployment", NAME, "--type=merge",
        "-p", json.dumps({"spec": {"serving": {"memory": 8192}}}),
    )  # fmt: skip
    status = wait_for("generation 4 to be Degraded", _converged(kubectl, 4, "InvalidSpec"))
    degraded = _condition(status, "Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "InvalidSpec"
    assert "memory 8192 MiB is not valid with cpu 512" in degraded["message"]
    assert degraded["observedGeneration"] == 4
    assert _aws_snapshot(platform) == before
    kubectl("get", "modeldeployment", NAME, "-o", f"jsonpath={CONDITIONS}", record=True)
    degraded_message = '{.status.conditions[?(@.type=="Degraded")].message}'
    kubectl("get", "modeldeployment", NAME, "-o", f"jsonpath={degraded_message}", record=True)

    # 5. fixed again: the Degraded condition clears, AWS still serves v1.
    kubectl(
        "patch", "modeldeployment", NAME, "--type=merge",
        "-p", json.dumps({"spec": {"serving": {"memory": 1024}}}),
    )  # fmt: skip
    status = wait_for("generation 5 to converge", _converged(kubectl, 5), operators=ops)
    assert _condition(status, "Degraded")["status"] == "False"
    assert _aws_state(platform)["served"] == v1

    # Least privilege, measured: every request the operator made is one the chart's
    # ClusterRole grants, and every permission it grants was used.
    rules = _rules()
    used = _requests(cluster)
    assert [u for u in sorted(used) if not allows(rules, *u)] == []
    assert used == grants(rules)

    transcript = os.environ.get("MLOPS_KUBE_TRANSCRIPT")
    text = "\n".join(kubectl.transcript)
    (tmp_path / "transcript.txt").write_text(text)
    if transcript:
        Path(transcript).write_text(text)


@pytest.mark.parametrize(
    "policy, annotation, replicas_after",
    [
        ("ScaleToZero", None, 0),
        ("Retain", "ScaleToZero", 0),  # the annotation overrides the operator's default
        ("Retain", "Destroy", 2),  # a typo falls back to the default (and warns)
    ],
)
def test_delete_policy(
    kubectl, cluster, start_operator, versions, platform, tmp_path, policy, annotation,
    replicas_after,
):  # fmt: skip
    """Deleting goes through the finalizer and the delete policy: Retain leaves the service
    running, ScaleToZero scales it to zero tasks; the pointer stays either way."""
    kubectl("apply", "--validate=false", "-f", str(CRD))
    kubectl("apply", "--validate=false", "-f", str(_manifest(tmp_path, versions[0])))
    if annotation:
        policy_annotation = f"mlops.platform.io/delete-policy={annotation}"
        kubectl("annotate", "modeldeployment", NAME, policy_annotation)
    operator = start_operator(MLOPS_DELETE_POLICY=policy)
    wait_for("convergence", _converged(kubectl, 1), operators=[operator])
    finalizers = kubectl.json("get", "modeldeployment", NAME)["metadata"]["finalizers"]
    assert "mlops.platform.io/finalizer" in finalizers

    # (kubectl's --wait watches with a stream encoding the emulator lacks: poll instead.)
    kubectl("delete", "modeldeployment", NAME, "--wait=false")

    def gone():
        return kubectl("get", "modeldeployment", NAME, "--ignore-not-found", "-o", "name") == ""

    wait_for("the finalizer to let the object go", gone, operators=[operator])
    state = _aws_state(platform)
    assert state["pointer"] == versions[0]
    assert state["desired"] == replicas_after
    reasons = {e["reason"] for e in cluster.objects("v1/events")}
    assert ("InvalidDeletePolicy" in reasons) == (annotation == "Destroy")
    rules = _rules()
    assert [u for u in sorted(_requests(cluster)) if not allows(rules, *u)] == []


def _leases(cluster) -> dict:
    (lease,) = cluster.objects("coordination.k8s.io/v1/leases")
    return lease["spec"]


def test_one_replica_acts_through_the_lease_and_a_restart_resumes_at_once(
    kubectl, cluster, start_operator, versions, tmp_path
):
    """Two replicas: the one holding the Lease acts, the other stands by; a clean stop
    hands over at once; a replica killed and restarted with its identity (the chart
    passes the pod's name) takes its lease back at once, not after the lease expires."""
    kubectl("apply", "--validate=false", "-f", str(CRD))
    kubectl("apply", "--validate=false", "-f", str(_manifest(tmp_path, versions[0])))
    active = start_operator("active", MLOPS_CONTROLLER_IDENTITY="pod-a", LEASE_TTL="60")
    wait_for("convergence", _converged(kubectl, 1), operators=[active])
    assert _leases(cluster)["holderIdentity"] == "pod-a"

    standby = start_operator("standby", MLOPS_CONTROLLER_IDENTITY="pod-b", LEASE_TTL="60")
    wait_for("the standby to be ready", lambda: liveness_ok(standby.metrics + "/readyz"))
    kubectl(
        "patch", "modeldeployment", NAME, "--type=merge",
        "-p", json.dumps({"spec": {"model": {"version": versions[1]}}}),
    )  # fmt: skip
    wait_for("generation 2 to converge", _converged(kubectl, 2), operators=[active])
    assert '"status written"' not in standby.logs()
    assert "mlops_controller_leader 0.0" in httpx.get(standby.metrics + "/metrics").text

    # A crash (SIGKILL: no release) and a restart in place: back within seconds, although
    # the lease (60 s) has not expired; the standby never took over.
    active.proc.kill()
    active.proc.wait(timeout=30)
    restarted = start_operator("active", MLOPS_CONTROLLER_IDENTITY="pod-a", LEASE_TTL="60")
    kubectl(
        "patch", "modeldeployment", NAME, "--type=merge",
        "-p", json.dumps({"spec": {"model": {"version": versions[0]}}}),
    )  # fmt: skip
    # 45 s: room for a loaded machine's start and rollout, still short of the lease's 60 s.
    wait_for("the restarted replica to resume", _converged(kubectl, 3), timeout=45,
             operators=[restarted])  # fmt: skip
    assert '"lease acquired"' in restarted.logs()
    assert '"status written"' not in standby.logs()

    # A clean stop releases the lease: the standby takes over at once.
    restarted.proc.terminate()
    restarted.proc.wait(timeout=30)
    kubectl(
        "patch", "modeldeployment", NAME, "--type=merge",
        "-p", json.dumps({"spec": {"model": {"version": versions[1]}}}),
    )  # fmt: skip
    wait_for("the standby to take over", _converged(kubectl, 4), timeout=45, operators=[standby])
    assert _leases(cluster)["holderIdentity"] == "pod-b"
    assert "mlops_controller_leader 1.0" in httpx.get(standby.metrics + "/metrics").text


def test_large_annotations_never_break_the_bookkeeping(
    kubectl, cluster, start_operator, versions, platform, tmp_path
):
    """A legal object with ~100 KB of annotations: kopf's bookkeeping never copies them
    (a copy would exceed the API server's 256 KiB limit and make kopf retry forever), so
    the object converges once and stays quiet."""
    kubectl("apply", "--validate=false", "-f", str(CRD))
    doc = yaml.safe_load(_manifest(tmp_path, versions[0]).read_text())
    doc["metadata"]["annotations"] = {f"example.com/note-{i}": "x" * 1000 for i in range(100)}
    big = tmp_path / "big.yaml"
    big.write_text(yaml.safe_dump(doc))
    kubectl("apply", "--validate=false", "-f", str(big))
    operator = start_operator()
    wait_for("convergence", _converged(kubectl, 1), operators=[operator])
    obj = kubectl.json("get", "modeldeployment", NAME)
    annotations = obj["metadata"]["annotations"]
    ours = {k: v for k, v in annotations.items() if k.startswith("kopf.mlops.platform.io/")}
    assert sum(len(v) for v in ours.values()) < 2000, ours
    assert "example.com/note-0" not in "".join(ours.values())
    before = _aws_snapshot(platform)
    time.sleep(3)  # several polls of the runtime and timers: nothing more happens
    assert _aws_snapshot(platform) == before
    assert "Too long" not in operator.logs() and '"Traceback' not in operator.logs()
    assert operator.logs().count('"status written"') <= 2
