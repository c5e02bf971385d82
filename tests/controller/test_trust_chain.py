"""The trust chain end to end, as an attacker with write access to the artifact bucket
would try it (issue 8): on the local endpoint over HTTP, every consumer (the controller,
serving, promote, rollback) refuses a tampered version with a clear reason, nothing is
re-pinned, and the previous state keeps serving."""

from __future__ import annotations

import json
import pickle

import pytest
import structlog
from factories import project_config
from reconcile_support import PROJECT, cond, make_deployment, pointer_version, revisions

from controller.observe import COMPLETED
from mlops_core import aws
from mlops_core.artifacts import BASELINE_FILE, MANIFEST, METRICS_FILE, MODEL_FILE, ONNX_FILE
from mlops_core.errors import IntegrityError
from mlops_core.pointer import PointerStore
from mlops_core.promotion import promote, rollback
from mlops_core.publication import PUBLICATION, SIGNATURE
from mlops_core.registry import Registry
from serving.loader import load_model


class Marker:
    """A pickle payload that would leave a file behind if anything unpickled it."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _tamper(platform, version: str, name: str, body: bytes) -> None:
    key = platform.version_prefix(PROJECT, version) + name
    aws.client("s3").put_object(Bucket=platform.artifact_bucket, Key=key, Body=body)


def _forged_manifest(registry, version: str, **files: bytes) -> bytes:
    """The version's manifest with other digests for ``files``: what an attacker writes
    alongside replaced files so that the manifest and the files agree."""
    import hashlib

    doc = json.loads(registry.get_manifest(PROJECT, version).to_json())
    for name, body in files.items():
        doc["files"][name] = {"sha256": hashlib.sha256(body).hexdigest(), "size": len(body)}
    return json.dumps(doc).encode()


def _serve_env(platform, version: str):
    """What the controller's task definition pins, read back from ECS."""
    svc = aws.client("ecs").describe_services(
        cluster=platform.ecs_cluster, services=[platform.service_name(PROJECT, "prod")]
    )["services"][0]
    td = aws.client("ecs").describe_task_definition(taskDefinition=svc["taskDefinition"])
    env = {
        e["name"]: e["value"]
        for e in td["taskDefinition"]["containerDefinitions"][0]["environment"]
    }
    assert env["MODEL_VERSION"] == version
    return env


@pytest.fixture
def live(make_reconciler, versions, platform):
    """prod converged on the good version; returns (deployment, status)."""
    rec = make_reconciler()
    rec.observer.rollout = COMPLETED
    dep = make_deployment(version=versions.good)
    status = rec.reconcile(dep, None).status
    status = rec.reconcile(dep, status).status
    assert cond(status, "Ready") == ("True", "RolloutComplete")
    return dep, status


@pytest.mark.parametrize(
    "name", [MODEL_FILE, ONNX_FILE, BASELINE_FILE, METRICS_FILE, MANIFEST, SIGNATURE, PUBLICATION]
)
def test_any_file_of_the_live_version_replaced_is_refused_by_every_consumer(
    name, live, make_reconciler, versions, platform, registry, mutations, tmp_path
):
    dep, status = live
    env = _serve_env(platform, versions.good)
    before = PointerStore(platform).get(PROJECT, "prod")
    marker = tmp_path / "pwned"
    payload = pickle.dumps(Marker(str(marker)))
    forged = _forged_manifest(registry, versions.good, **{name: payload})
    _tamper(platform, versions.good, name, payload)
    if name not in (MANIFEST, SIGNATURE, PUBLICATION):
        # The attacker rewrites the manifest to match: it no longer matches its signature.
        _tamper(platform, versions.good, MANIFEST, forged)
    mutations.clear()

    # The controller (a new process, as after a restart): Degraded, nothing changed.
    with structlog.testing.capture_logs() as logs:
        result = make_reconciler().reconcile(dep, status)
    assert result.actions == [] and mutations == {}
    assert [e["log_level"] for e in logs if e["event"] == "integrity check failed"] == ["error"]
    assert cond(result.status, "Degraded") == ("True", "IntegrityFailed")
    message = result.status.condition("Degraded").message
    assert "after publication" in message or (name == PUBLICATION and "malformed" in message)
    assert len(revisions(platform)) == 1
    assert PointerStore(platform).get(PROJECT, "prod") == before

    # Serving, started from the revision's pins, refuses to load.
    with pytest.raises(IntegrityError, match="after publication"):
        load_model(
            env["MODEL_URI"],
            expected_sha256=env["MODEL_SHA256"],
            pins=before.pins,
            signing_key=platform.model_signing_key,
        )
    # promote of the live version and rollback onto it both check it, and refuse (the
    # deployment owns prod: an operator overrides it, with a reason).
    incident = {"force": True, "reason": "incident: the live version was tampered with"}
    with pytest.raises(IntegrityError):
        promote(PROJECT, "prod", versions.good, registry=Registry(platform))
    promote(
        PROJECT, "prod", versions.better, registry=Registry(platform), **incident
    )  # an intact version goes live
    with pytest.raises(IntegrityError):
        rollback(PROJECT, "prod", registry=Registry(platform), **incident)
    assert pointer_version(platform) == versions.better
    assert not marker.exists()  # nothing was ever unpickled


def test_rollback_pins_what_the_history_entry_recorded_not_what_the_bucket_holds(
    versions, platform, registry
):
    promote(PROJECT, "prod", versions.good, registry=Registry(platform))
    first = PointerStore(platform).get(PROJECT, "prod")
    promote(PROJECT, "prod", versions.better, registry=Registry(platform))
    _, after = rollback(PROJECT, "prod", registry=Registry(platform))
    assert after.version == versions.good and after.pins == first.pins
    assert after.action == "rollback"


def test_a_pointer_without_pins_or_with_other_pins_is_not_served(
    live, versions, platform, registry
):
    from serving.manager import ModelManager
    from serving.metrics import ServingMetrics
    from serving.settings import load_settings

    store = PointerStore(platform)
    pointer = store.get(PROJECT, "prod")
    manager = ModelManager(
        load_settings({"MLOPS_PROJECT": PROJECT, "MLOPS_ENV": "prod"}), ServingMetrics(), store
    )
    store.put(PROJECT, "prod", pointer.model_copy(update={"pins": None}))
    assert manager.refresh() is False and "without its publication pins" in manager.error
    other = registry.get_published(PROJECT, versions.better).pins
    store.put(PROJECT, "prod", pointer.model_copy(update={"pins": other}))
    assert manager.refresh() is False and manager.current is None
    store.put(PROJECT, "prod", pointer)
    assert manager.refresh() is True and manager.current.version == versions.good


def test_a_pointer_naming_another_projects_version_is_not_served(
    live, versions, platform, registry, tmp_path
):
    """SSM write access alone: another project's real, signed version with its real pins
    written into this project's pointer is refused by pointer-following serving."""
    from factories import make_artifacts, project_config

    from serving.manager import ModelManager
    from serving.metrics import ServingMetrics
    from serving.settings import load_settings

    make_artifacts(tmp_path / "o", project="other-proj", seed=7)
    registry.publish(tmp_path / "o", config=project_config("other-proj"))
    other = registry.list_versions("other-proj")[0]
    store = PointerStore(platform)
    store.put(
        PROJECT,
        "prod",
        store.get(PROJECT, "prod").model_copy(
            update={
                "version": other.version,
                "uri": platform.version_uri("other-proj", other.version),
                "sha256": other.model_sha256,
                "pins": registry.get_published("other-proj", other.version).pins,
            }
        ),
    )
    manager = ModelManager(
        load_settings({"MLOPS_PROJECT": PROJECT, "MLOPS_ENV": "prod"}), ServingMetrics(), store
    )
    assert manager.refresh() is False and manager.current is None
    assert "project 'other-proj'" in manager.error


def test_a_revision_newer_than_the_cached_one_is_read_again_not_taken_for_a_deletion(
    make_reconciler, registry, versions, platform
):
    """`policy set` and a promotion judged by the new revision, seen by a controller whose
    cached registration is older: it reads the registration again, and carries on."""
    r = make_reconciler()
    dep = make_deployment(version=versions.good)
    status = r.reconcile(dep, None).status
    assert r.observer.registration(PROJECT).revision == 1  # cached from here on
    registry.policy.set(project_config(PROJECT, min_r2=0.55, max_regression=0.05), reason="x")
    store = PointerStore(platform)
    live = store.get(PROJECT, "prod")
    store.put(PROJECT, "prod", live.model_copy(update={"policy_revision": 2}))  # as promote
    result = r.reconcile(dep, status)
    assert cond(result.status, "Degraded") != ("True", "IntegrityFailed"), result.status
    assert r.observer.registration(PROJECT).revision == 2
