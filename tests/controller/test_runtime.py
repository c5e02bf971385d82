"""The one runtime, exercised through every source on the local AWS endpoint: the same
queue, reconcile path, delete policy and faults for a folder, S3 and Kubernetes.

The Kubernetes source is fed here the way kopf feeds it (``observe`` with the objects
read from the emulated API server); ``tests/kube`` drives the real kopf operator.
"""

from __future__ import annotations

import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import kopf
import pytest
import structlog
import yaml
from botocore.exceptions import EndpointConnectionError
from configured import env_platform
from factories import make_artifacts, project_config

from controller.leases import Lease
from controller.metrics import ControllerMetrics, serve
from controller.plan import NetworkConfig
from controller.reconcile import Reconciler
from controller.runtime import Controller
from controller.sources import DirectorySource, S3Source
from controller.workqueue import WorkQueue
from mlops_core import aws
from mlops_core.claims import Claims
from mlops_core.pointer import PointerStore
from mlops_core.registry import Registry

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "crds" / "examples" / "usedcar-price-prod.yaml"
NAME = "usedcar-price-prod"
PROJECT = "usedcar-price"


@pytest.fixture
def versions(platform, tmp_path) -> list[str]:
    reg = Registry(platform)
    reg.register_project(project_config())
    out = []
    for seed in (1, 2):
        folder = tmp_path / "artifacts" / str(seed)
        out.append(make_artifacts(folder, seed=seed, r2=0.8 + seed / 100).version)
        reg.publish(folder)
    return out


@pytest.fixture
def network(network_env) -> NetworkConfig:
    return NetworkConfig(
        subnets=tuple(network_env["MLOPS_SUBNETS"].split(",")),
        security_groups=(network_env["MLOPS_SECURITY_GROUPS"],),
    )


def manifest(version: str, **annotations: str) -> dict:
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["spec"]["model"]["version"] = version
    if annotations:
        doc["metadata"]["annotations"] = annotations
    return doc


def service(platform) -> dict | None:
    page = aws.client("ecs").describe_services(
        cluster=platform.ecs_cluster, services=[platform.service_name(PROJECT, "prod")]
    )
    live = [s for s in page["services"] if s["status"] == "ACTIVE"]
    return live[0] if live else None


def pointer_version(platform) -> str | None:
    p = PointerStore(platform).get(PROJECT, "prod")
    return p.version if p else None


# -- one harness per source: put a manifest, delete it, read its status back -----------
@dataclass
class Harness:
    source: object
    name: str
    put: Callable[[dict], None]
    delete: Callable[[], None]
    status: Callable[[], dict | None]


@pytest.fixture(params=["folder", "s3", "kube"])
def harness(request, platform, tmp_path) -> Iterator[Harness]:
    if request.param == "folder":
        folder = tmp_path / "deployments"
        folder.mkdir()
        src = DirectorySource(folder)

        def status():
            record = src.read_status(NAME)
            return record.status.model_dump(by_alias=True) if record and record.status else None

        yield Harness(
            src,
            NAME,
            lambda doc: (folder / f"{NAME}.yaml").write_text(yaml.safe_dump(doc)),
            lambda: (folder / f"{NAME}.yaml").unlink(),
            status,
        )
    elif request.param == "s3":
        src = S3Source("s3", platform=env_platform())
        s3, key = aws.client("s3"), f"{platform.desired_state_prefix}{NAME}.yaml"

        def status():
            record = S3Source("s3", platform=env_platform()).get_record(NAME)
            return record.status.model_dump(by_alias=True) if record and record.status else None

        yield Harness(
            src,
            NAME,
            lambda doc: s3.put_object(
                Bucket=platform.artifact_bucket, Key=key, Body=yaml.safe_dump(doc).encode()
            ),
            lambda: s3.delete_object(Bucket=platform.artifact_bucket, Key=key),
            status,
        )
    else:
        yield from _kube_harness(tmp_path)


def _kube_harness(tmp_path: Path) -> Iterator[Harness]:
    import sys

    sys.path.insert(0, str(ROOT / "tests" / "kube"))
    from kube_emulator import EmulatedCluster

    from controller.kubeapi import KubeClient
    from controller.sources.kube import KubeLeaseStore, KubeSource

    cluster = EmulatedCluster(tmp_path).start()
    client = KubeClient(kopf.ConnectionInfo(server=f"http://127.0.0.1:{cluster.port}"))
    src = KubeSource(client, Lease(KubeLeaseStore(client, "default"), holder="test"))
    path = "/apis/mlops.platform.io/v1alpha1/namespaces/default/modeldeployments"
    name = f"default/{NAME}"

    def sync():  # what kopf's watch would deliver
        src.observe("MODIFIED", client.request("GET", f"{path}/{NAME}"))

    def put(doc):
        doc = {**doc, "metadata": {**doc["metadata"], "namespace": "default",
                                   "finalizers": ["mlops.platform.io/finalizer"]}}  # fmt: skip
        if client.request("GET", f"{path}/{NAME}") is None:
            client.request("POST", path, doc)
        else:
            client.request("PATCH", f"{path}/{NAME}", doc,
                           **{"Content-Type": "application/merge-patch+json"})  # fmt: skip
        sync()

    def delete():
        client.request("DELETE", f"{path}/{NAME}")
        sync()

    def status():
        body = client.request("GET", f"{path}/{NAME}")
        return (body or {}).get("status") or None

    try:
        yield Harness(src, name, put, delete, status)
    finally:
        client.close()
        cluster.stop()


def _conditions(status: dict | None) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in (status or {}).get("conditions", [])}


def test_the_same_core_converges_refuses_and_retires_through_every_source(
    harness, platform, versions, network
):
    v1, v2 = versions
    reconciler = Reconciler(env_platform(), network=network)
    claims = Claims(platform)

    def once() -> Controller:
        ctl = Controller(harness.source, reconciler, delete_policy="Retain")
        ctl.run_once()
        return ctl

    # Converge, and write the status back where the manifest came from.
    harness.put(manifest(v1))
    ctl = once()
    assert ctl.stats["actions"] == 4 and ctl.stats["status_writes"] == 1  # claim first
    assert claims.get(PROJECT, "prod").owner == "default/" + NAME
    assert pointer_version(platform) == v1 and service(platform)["desiredCount"] == 2
    conditions = _conditions(harness.status())
    assert conditions["Degraded"] == ("False", "AsExpected")
    assert conditions["Progressing"][0] == "True"

    # A spec the API refuses: Degraded/InvalidSpec, and AWS stays as it was.
    bad = manifest(v2)
    bad["spec"]["serving"]["memory"] = 8192
    harness.put(bad)
    ctl = once()
    assert ctl.stats["actions"] == 0
    assert _conditions(harness.status())["Degraded"] == ("True", "InvalidSpec")
    assert pointer_version(platform) == v1

    # Deleted with the ScaleToZero policy asked for by the annotation: the same policy
    # code for every source scales the service to zero and releases the claim; the
    # pointer stays.
    harness.put(manifest(v1, **{"mlops.platform.io/delete-policy": "ScaleToZero"}))
    once()
    harness.delete()
    once()
    assert service(platform)["desiredCount"] == 0
    assert pointer_version(platform) == v1
    assert claims.get(PROJECT, "prod") is None


# -- faults: loud and bounded ----------------------------------------------------------
def test_once_ends_on_a_manifest_that_is_not_utf8(platform, versions, network, tmp_path):
    folder = tmp_path / "deployments"
    folder.mkdir()
    (folder / f"{NAME}.yaml").write_text(yaml.safe_dump(manifest(versions[0])))
    (folder / "latin1.yaml").write_bytes("metadata: {name: caf\xe9}\n".encode("latin-1"))
    with structlog.testing.capture_logs() as logs:
        outcomes = Controller(
            DirectorySource(folder), Reconciler(env_platform(), network=network)
        ).run_once()
    by_name = {o.name: o for o in outcomes}
    assert set(by_name) == {NAME, "latin1"}
    bad = by_name["latin1"].status.condition("Degraded")
    assert bad.status == "True" and bad.reason == "InvalidSpec"
    assert "not UTF-8" in bad.message and "latin1.yaml" in bad.message
    assert not by_name[NAME].failed, "the other deployment converged"
    assert any(e.get("key") == "default/latin1" and e["log_level"] == "warning" for e in logs)


class BrokenStatus(DirectorySource):
    """A folder whose status store fails for one key (a disk error, say)."""

    def read_status(self, name):
        if name == "broken":
            raise OSError(5, "Input/output error")
        return super().read_status(name)


def test_every_exception_is_logged_with_its_key_and_once_gives_up(
    platform, versions, network, tmp_path
):
    folder = tmp_path / "deployments"
    folder.mkdir()
    doc = manifest(versions[0])
    doc["metadata"]["name"] = "broken"
    (folder / "broken.yaml").write_text(yaml.safe_dump(doc))
    queue = WorkQueue(base_delay=0.01, max_delay=0.02)
    ctl = Controller(BrokenStatus(folder), Reconciler(env_platform(), network=network), queue=queue,
                     once_attempts=3)  # fmt: skip
    with structlog.testing.capture_logs() as logs:
        (outcome,) = ctl.run_once()
    assert outcome.failed and "Input/output error" in outcome.error
    raised = [e for e in logs if e["event"] == "reconcile raised"]
    # Keyed namespace/name, as every log line is, although it failed before it was read.
    assert len(raised) == 3 and all(e["key"] == "default/broken" for e in raised)
    assert [e["key"] for e in logs if e["event"] == "giving up"] == ["default/broken"]
    assert outcome.key == "default/broken"


@pytest.fixture
def black_hole(aws_env, monkeypatch) -> Iterator[dict]:
    """An AWS endpoint that accepts connections and never answers; counts connections."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    seen = {"connections": 0}
    held: list[socket.socket] = []

    def accept():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            seen["connections"] += 1
            held.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.getsockname()[1]}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    aws.configure(aws.CallLimits(connect_timeout=0.5, read_timeout=0.5, max_attempts=5))
    try:
        yield seen
    finally:
        aws.configure(aws.CLI)
        server.close()
        for conn in held:
            conn.close()


def test_a_black_holed_endpoint_fails_each_call_within_its_limits_and_says_so(black_hole, tmp_path):
    assert aws.CONTROLLER.worst_case() < 30 / 2, "one controller call ends within half a lease"
    folder = tmp_path / "deployments"
    folder.mkdir()
    (folder / f"{NAME}.yaml").write_text(yaml.safe_dump(manifest("20261128T064500Z-3f9a2c1")))
    queue = WorkQueue(base_delay=0.01, max_delay=0.02)
    network = NetworkConfig(subnets=("subnet-0",), security_groups=("sg-0",))
    ctl = Controller(
        DirectorySource(folder),
        Reconciler(env_platform(), network=network),
        queue=queue,
        once_attempts=2,
    )
    with structlog.testing.capture_logs() as logs:
        (outcome,) = ctl.run_once()
    assert outcome.failed
    degraded = outcome.status.condition("Degraded")
    assert degraded.reason == "AWSError" and "timeout" in degraded.message.lower()
    warned = [e for e in logs if e["log_level"] == "warning" and e.get("key") == f"default/{NAME}"]
    assert warned, "each failure is logged with the deployment key"


def test_aws_max_attempts_bounds_every_call(black_hole):
    """AWS_MAX_ATTEMPTS=2 overrides the limits' 5: a call to a dead endpoint is tried
    exactly twice, then fails with the timeout."""
    ssm = aws.client("ssm")
    with pytest.raises(Exception, match="(?i)timeout"):
        ssm.get_parameters(Names=["/mlops/x/prod/model"])
    assert black_hole["connections"] == 2


def test_writes_after_the_lease_lapses_are_fenced(platform, versions, network):
    """The lease lapses between two actions (a paused process): the next write is not
    made, and the status is not written either; the next holder finishes the job."""
    s3, key = aws.client("s3"), f"{platform.desired_state_prefix}{NAME}.yaml"
    s3.put_object(Bucket=platform.artifact_bucket, Key=key,
                  Body=yaml.safe_dump(manifest(versions[0])).encode())  # fmt: skip
    src = S3Source("s3", platform=env_platform(), lease_ttl=30)
    now = [0.0]
    src.lease._clock = lambda: now[0]
    reconciler = Reconciler(env_platform(), network=network)
    registered = reconciler.executor.register

    def slow_register(spec, log):
        arn = registered(spec, log)
        now[0] += 20.0  # paused for 20 s of a 30 s lease: no room for another call
        return arn

    reconciler.executor.register = slow_register
    (outcome,) = Controller(src, reconciler, once_attempts=1).run_once()
    assert outcome.failed and "lease lapsed" in outcome.error
    assert service(platform) is None and pointer_version(platform) is None
    assert S3Source("s3", platform=env_platform()).get_record(NAME) is None, (
        "no status written after the lapse"
    )

    reconciler.executor.register = registered
    (outcome,) = Controller(S3Source("s3", platform=env_platform()), reconciler).run_once()
    assert not outcome.failed and pointer_version(platform) == versions[0]


# -- drift and metrics -------------------------------------------------------------------
def test_a_reverted_hand_made_change_is_a_warning_with_both_values_and_is_counted(
    platform, versions, network, tmp_path
):
    v1, v2 = versions
    folder = tmp_path / "deployments"
    folder.mkdir()
    (folder / f"{NAME}.yaml").write_text(yaml.safe_dump(manifest(v1)))
    reconciler = Reconciler(env_platform(), network=network)
    Controller(DirectorySource(folder), reconciler).run_once()
    store = PointerStore(platform)
    store.put(PROJECT, "prod", store.get(PROJECT, "prod").model_copy(update={"version": v2}))

    metrics = ControllerMetrics()
    with structlog.testing.capture_logs() as logs:
        Controller(DirectorySource(folder), reconciler, metrics=metrics).run_once()
    (drift,) = [e for e in logs if e["event"] == "reverting a change made outside the controller"]
    assert drift["log_level"] == "warning" and drift["key"] == f"default/{NAME}"
    assert drift["kind"] == "pointer" and v2 in drift["found"] and drift["restored"] == v1
    assert pointer_version(platform) == v1
    value = metrics.registry.get_sample_value(
        "mlops_controller_drift_reverts_total", {"kind": "pointer"}
    )
    assert value == 1.0


def test_metrics_and_readiness_are_served(platform, versions, network, tmp_path):
    folder = tmp_path / "deployments"
    folder.mkdir()
    (folder / f"{NAME}.yaml").write_text(yaml.safe_dump(manifest(versions[0])))
    (folder / "typo.yaml").write_text("metadata: {name: typo}\nspec: {}\n")
    metrics = ControllerMetrics()
    metrics.count_aws_calls()
    server, port = serve(metrics, "127.0.0.1", 0, ready_within=60)
    try:
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{url}/readyz").status_code == 503, "not ready before a pass"
        rec = Reconciler(env_platform(), network=network)
        ctl = Controller(DirectorySource(folder), rec, metrics=metrics, poll=0.05)
        stop = threading.Event()
        ready = threading.Event()
        thread = threading.Thread(target=ctl.run, args=(stop,), kwargs={"ready": ready})
        thread.start()
        try:
            ready.wait(30)
            assert httpx.get(f"{url}/readyz").status_code == 200
            text = ""
            for _ in range(100):  # the first pass finishes a moment after the loop is ready
                text = httpx.get(f"{url}/metrics").text
                if 'mlops_controller_reconciles_total{result="ok"}' in text:
                    break
                stop.wait(0.1)
        finally:
            stop.set()
            thread.join(30)
        assert 'mlops_controller_reconciles_total{result="ok"} 1.0' in text
        assert "mlops_controller_reconcile_duration_seconds_count 1.0" in text
        assert 'mlops_controller_deployments{condition="Degraded",status="True"} 1.0' in text
        assert 'mlops_controller_deployments{condition="Degraded",status="False"} 1.0' in text
        assert (
            "mlops_controller_queue_depth" in text
            and "mlops_controller_queue_oldest_seconds" in text
        )
        assert 'operation="CreateService",outcome="ok",service="ecs"' in text
        assert "mlops_controller_leader 1.0" in text
    finally:
        server.shutdown()
        shutil.rmtree(folder, ignore_errors=True)


def test_an_aws_call_that_cannot_connect_is_counted_not_raised_over(monkeypatch):
    # botocore's "after-call-error" carries no operation model: counting must not turn a
    # connection error into an AttributeError of its own.
    metrics = ControllerMetrics()
    metrics.count_aws_calls()
    with socket.socket() as s:  # a port nothing listens on any more
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "unreachable-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "unreachable-test")
    ssm = aws.client("ssm", config=aws.FAIL_FAST_CONFIG)
    with pytest.raises(EndpointConnectionError):
        ssm.get_parameter(Name="/nothing")
    labels = {"service": "ssm", "operation": "GetParameter", "outcome": "EndpointConnectionError"}
    assert metrics.registry.get_sample_value("mlops_controller_aws_calls_total", labels) == 1.0
