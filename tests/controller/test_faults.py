"""Faults: a controller killed between actions, flaky AWS, bad input.

Each test asserts what AWS holds afterwards, over moto's server.
"""

from __future__ import annotations

import random

import pytest
from botocore.awsrequest import AWSResponse
from reconcile_support import PROJECT, ecs_service, make_deployment, pointer_version, revisions

from controller.api import ModelDeployment
from controller.execute import Executor
from controller.manifests import parse_manifest
from controller.observe import COMPLETED
from controller.reconcile import invalid_status
from mlops_core import aws
from mlops_core.errors import InvalidInput
from mlops_core.pointer import PointerStore


class Killed(Exception):
    """The controller process dying (not an error the reconciler may handle)."""


def killer(k: int):
    def after_each(action, index):
        if index == k:
            raise Killed(f"killed after action {index} ({type(action).__name__})")

    return after_each


def converged(platform, registry, version: str, replicas: int = 2) -> None:
    """AWS serves ``version``: the service's revision pins it, the pointer names it."""
    svc = ecs_service(platform)
    assert svc is not None and svc["desiredCount"] == replicas
    td = aws.client("ecs").describe_task_definition(taskDefinition=svc["taskDefinition"])
    env = {
        e["name"]: e["value"]
        for e in td["taskDefinition"]["containerDefinitions"][0]["environment"]
    }
    assert env["MODEL_VERSION"] == version
    assert env["MODEL_SHA256"] == registry.get_manifest(PROJECT, version).model_sha256
    # Pinned as publication recorded it, in the revision and in the pointer.
    pins = registry.get_published(PROJECT, version).pins
    assert (env["MODEL_MANIFEST_SHA256"], env["MODEL_OBJECT_VERSIONS"]) == (
        pins.manifest_sha256,
        pins.objects_json(),
    )
    assert pointer_version(platform) == version
    assert PointerStore(platform).get(PROJECT, "prod").pins == pins


def run_until_converged(rec, dep, status, passes: int = 5):
    for _ in range(passes):
        result = rec.reconcile(dep, status)
        status = result.status
        if not result.actions and not result.degraded:
            return result
    raise AssertionError(f"not converged after {passes} passes: {status}")


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_killed_during_a_candidate_deploy_then_restarted(
    k, make_reconciler, platform, registry, network, candidate_folder, versions
):
    dep = make_deployment(candidate=str(candidate_folder))
    # Pass 1 publishes (k=0 dies after it); pass 2 registers, creates, moves (k-1).
    status = None
    if k > 0:
        status = make_reconciler().reconcile(dep, None).status
    executor = Executor(platform, registry, network, after_each=killer(max(k - 1, 0)))
    first = make_reconciler(executor=executor)
    with pytest.raises(Killed):
        first.reconcile(dep, status)

    # A new process, which never saw the status of the killed pass.
    fresh = make_reconciler()
    fresh.observer.rollout = COMPLETED
    result = run_until_converged(fresh, dep, None)
    version = result.status.current_version
    assert registry.exists(PROJECT, version)
    converged(platform, registry, version)
    assert len(revisions(platform)) == 1  # the re-run reused the revision it registered
    assert fresh.reconcile(dep, result.status).actions == []


@pytest.mark.parametrize("k", [0, 1, 2])
def test_killed_during_an_upgrade_then_restarted(
    k, make_reconciler, platform, registry, network, versions
):
    rec = make_reconciler()
    rec.observer.rollout = COMPLETED
    good = run_until_converged(rec, make_deployment(version=versions.good), None).status

    dep2 = make_deployment(version=versions.better, generation=2)
    executor = Executor(platform, registry, network, after_each=killer(k))
    with pytest.raises(Killed):  # Register, Update, Move
        make_reconciler(executor=executor).reconcile(dep2, good)

    fresh = make_reconciler()
    fresh.observer.rollout = COMPLETED
    result = run_until_converged(fresh, dep2, good)  # the status persisted before the kill
    converged(platform, registry, versions.better)
    assert len(revisions(platform)) == 2  # good's and better's: no extra revision
    assert result.status.previous_version == versions.good
    assert result.status.previous_task_definition == good.task_definition


def test_killed_between_register_and_update_leaves_at_most_one_extra_revision(
    make_reconciler, platform, registry, network, versions
):
    """Killed after registering, and the image changed before the restart: the orphan
    revision stays (it is immutable), the new one is registered once."""
    rec = make_reconciler()
    good = rec.reconcile(make_deployment(version=versions.good), None).status
    executor = Executor(platform, registry, network, after_each=killer(0))
    with pytest.raises(Killed):
        make_reconciler(executor=executor).reconcile(
            make_deployment(version=versions.better, generation=2), good
        )
    dep3 = make_deployment(
        version=versions.better, generation=3, image="registry.example.com/serving:2"
    )
    fresh = make_reconciler()
    fresh.observer.rollout = COMPLETED
    run_until_converged(fresh, dep3, good)
    converged(platform, registry, versions.better)
    assert len(revisions(platform)) == 3  # good, the orphan, and the one that serves


def test_killed_during_a_rollback_then_restarted(
    make_reconciler, platform, registry, network, versions
):
    rec = make_reconciler()
    rec.observer.rollout = COMPLETED
    good = run_until_converged(rec, make_deployment(version=versions.good), None).status
    dep2 = make_deployment(version=versions.better, generation=2)
    rec.observer.rollout = None
    progressing = rec.reconcile(dep2, good).status

    executor = Executor(platform, registry, network, after_each=killer(1))
    dying = make_reconciler(executor=executor)
    dying.observer.rollout = "FAILED"
    with pytest.raises(Killed):  # Rollback (recorded), Update: killed before the pointer
        dying.reconcile(dep2, progressing)

    fresh = make_reconciler()
    fresh.observer.rollout = COMPLETED
    # The status of the dying pass is lost; the service's tags still say not to retry.
    result = fresh.reconcile(dep2, progressing)
    assert pointer_version(platform) == versions.good
    assert ecs_service(platform)["taskDefinition"] == good.task_definition
    assert fresh.reconcile(dep2, result.status).actions == []
    assert result.status.failed_version == versions.better


# -- flaky AWS ------------------------------------------------------------------------
class _Raw:
    def __init__(self, body: bytes):
        self._body = body

    def stream(self, **_):
        yield self._body


@pytest.fixture
def flaky_aws():
    """20% of the ecs, ssm and s3 calls fail with a throttle or a 5xx, seeded."""
    rng = random.Random(20261128)
    injected = {"n": 0, "calls": 0}

    def before_send(request, **kwargs):
        injected["calls"] += 1
        if rng.random() >= 0.2:
            return None
        injected["n"] += 1
        if "ecs." in request.url or request.headers.get("X-Amz-Target", b"").startswith(b"Amazon"):
            if rng.random() < 0.5:
                body = b'{"__type":"ThrottlingException","message":"Rate exceeded"}'
                return AWSResponse(request.url, 400, {}, _Raw(body))
            body = b'{"__type":"ServerException","message":"injected"}'
            return AWSResponse(request.url, 500, {}, _Raw(body))
        if rng.random() < 0.5:
            body = b"<Error><Code>SlowDown</Code><Message>Reduce your rate</Message></Error>"
            return AWSResponse(request.url, 503, {}, _Raw(body))
        body = b"<Error><Code>InternalError</Code><Message>injected</Message></Error>"
        return AWSResponse(request.url, 500, {}, _Raw(body))

    clients = [aws.client(s) for s in ("ecs", "ssm", "s3")]
    for c in clients:
        c.meta.events.register_first("before-send.*.*", before_send)
    yield injected
    for c in clients:
        c.meta.events.unregister("before-send.*.*", before_send)
    # The adaptive retry mode's client-side rate limiter remembers the throttles; later
    # tests get fresh clients rather than a slowed-down one.
    with aws._lock:
        aws._clients.clear()


def test_converges_with_20_percent_of_aws_calls_failing(
    make_reconciler, platform, registry, versions, candidate_folder, flaky_aws
):
    rec = make_reconciler()
    rec.observer.rollout = COMPLETED
    dep = make_deployment(candidate=str(candidate_folder))
    result = run_until_converged(rec, dep, None, passes=10)
    version = result.status.current_version
    dep2 = make_deployment(version=versions.better, generation=2)
    result = run_until_converged(rec, dep2, result.status, passes=10)
    assert flaky_aws["n"] > 5  # faults were really injected
    converged(platform, registry, versions.better)
    assert result.status.previous_version == version
    assert len(revisions(platform)) == 2


# -- bad input ------------------------------------------------------------------------
GOOD_YAML = """
apiVersion: mlops.platform.io/v1alpha1
kind: ModelDeployment
metadata: {{name: bad, namespace: ml, generation: 3}}
spec:
  project: usedcar-price
  env: prod
  model: {{{model}}}
  serving: {{image: "{image}", cpu: {cpu}, memory: {memory}{extra}}}
"""


def manifest_text(
    model="version: 20261128T060100Z-fca2cc7",
    image="repo/serving:1",
    cpu=256,
    memory=512,
    extra="",
):
    return GOOD_YAML.format(model=model, image=image, cpu=cpu, memory=memory, extra=extra)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (manifest_text(extra=", replicsa: 2"), ["replicsa", "unknown field"]),
        (manifest_text(model=""), ["model"]),
        (manifest_text(model="version: latest"), ["version"]),
        (manifest_text(image="Not An Image!"), ["image"]),
        (manifest_text(cpu=256, memory=4096), ["memory 4096", "cpu 256"]),
        (manifest_text(cpu=300), ["cpu 300"]),
    ],
)
def test_invalid_manifests_get_a_clear_degraded_status_and_no_aws_call(
    text, words, aws_env, mutations
):
    with pytest.raises(InvalidInput) as info:
        parse_manifest(text, "deployments/bad.yaml")
    status = invalid_status(info.value, 3, None)
    degraded = status.condition("Degraded")
    assert (degraded.status, degraded.reason) == ("True", "InvalidSpec")
    for w in words:
        assert w in degraded.message
    assert "deployments/bad.yaml" in degraded.message
    assert status.condition("Ready").status == "False"
    assert status.observed_generation == 3
    assert mutations == {}


def test_bad_deployments_are_degraded_and_others_unaffected(
    make_reconciler, platform, registry, versions, mutations
):
    good = make_deployment("good", version=versions.good)
    unknown_project = make_deployment("p", project="nope", version=versions.good)
    unpublished = make_deployment("u", env="staging", version="20991231T000000Z-abcdef0")
    bad_candidate = make_deployment("c", env="dev", candidate="/nonexistent/run")
    bad_env = make_deployment("e", env="qa", version=versions.good)
    items: list[tuple[ModelDeployment, None]] = [
        (d, None) for d in (unknown_project, good, unpublished, bad_candidate, bad_env)
    ]
    results = {r.key: r for r in make_reconciler().reconcile_many(items)}

    def reason(d):
        c = results[d.key].status.condition("Degraded")
        return c.reason if c.status == "True" else None

    assert reason(good) is None and results[good.key].actions
    assert reason(unknown_project) == "ProjectNotFound"
    assert (
        "unknown project 'nope'"
        in results[unknown_project.key].status.condition("Degraded").message
    )
    assert reason(unpublished) == "VersionNotFound"
    assert "spec.model.version" in results[unpublished.key].status.condition("Degraded").message
    assert reason(bad_candidate) == "CandidateInvalid"
    assert reason(bad_env) == "InvalidSpec"
    assert "unknown env 'qa'" in results[bad_env.key].status.condition("Degraded").message
    for d in (unknown_project, unpublished, bad_candidate, bad_env):
        assert results[d.key].actions == [] and results[d.key].degraded
    # Only the good deployment wrote to AWS.
    assert ecs_service(platform, "staging") is None and ecs_service(platform, "dev") is None
    assert pointer_version(platform, "staging") is None
    assert pointer_version(platform, "dev") is None
    written = [p for _, p in mutations.params]
    assert all("nope" not in str(p) and "-staging" not in str(p) for p in written)
    assert pointer_version(platform) == versions.good


def test_two_deployments_of_one_env_conflict(make_reconciler, platform, versions):
    a = make_deployment("a", version=versions.good)
    b = make_deployment("b", version=versions.better)
    rec = make_reconciler()
    ra, rb = rec.reconcile_many([(a, None), (b, None)])
    assert not ra.degraded and ra.actions
    assert rb.degraded and rb.actions == []
    assert rb.status.condition("Degraded").reason == "Conflict"
    assert "ModelDeployment ml/a" in rb.status.condition("Degraded").message
    assert pointer_version(platform) == versions.good
    # Alone in a later batch, b still finds the service owned by a (its tag).
    rb = rec.reconcile(b, rb.status)
    assert rb.actions == [] and rb.status.condition("Degraded").reason == "Conflict"
    assert pointer_version(platform) == versions.good


def test_an_unreadable_pointer_is_rewritten(make_reconciler, platform, versions):
    rec = make_reconciler()
    dep = make_deployment(version=versions.good)
    status = rec.reconcile(dep, None).status
    aws.client("ssm").put_parameter(
        Name=platform.pointer_param(PROJECT, "prod"), Value="{not json", Overwrite=True
    )
    result = rec.reconcile(dep, status)
    assert [type(a).__name__ for a in result.actions] == ["MovePointer"]
    assert pointer_version(platform) == versions.good
