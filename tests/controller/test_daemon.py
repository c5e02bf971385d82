"""The daemon over real sources and the real reconciler, on the local AWS endpoint.

Folder and S3 sources converge the example deployment; invalid manifests degrade with
zero AWS writes; two controllers on one source never act twice; drift is put back by a
resync; AWS errors back off per key.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import structlog
import yaml
from configured import env_platform
from factories import make_artifacts, project_config

from controller.actions import ENV_MODEL_VERSION
from controller.leases import FileLock
from controller.plan import NetworkConfig
from controller.reconcile import Reconciler
from controller.runtime import Controller
from controller.sources import DirectorySource, S3Source, StatusRecord
from controller.workqueue import WorkQueue
from mlops_core import aws
from mlops_core.claims import Claims
from mlops_core.config import PlatformSettings
from mlops_core.pointer import PointerStore
from mlops_core.registry import Registry
from mlopsctl.cmd_controller import once_failure

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "crds" / "examples" / "usedcar-price-prod.yaml"
INVALID = sorted((ROOT / "crds" / "examples" / "invalid").glob("*.yaml"))
NAME = "usedcar-price-prod"
SERVICES = ("ecs", "ssm", "s3", "ec2", "elbv2", "logs", "application-autoscaling")
READ_PREFIXES = ("Get", "List", "Describe", "Head")


# -- fixtures and helpers -----------------------------------------------------------
@pytest.fixture
def versions(platform, tmp_path) -> list[str]:
    """Two published versions of usedcar-price (gates pass for both)."""
    reg = Registry(platform)
    reg.register_project(project_config())
    out = []
    for seed in (1, 2):
        m = make_artifacts(tmp_path / "artifacts" / str(seed), seed=seed, r2=0.8 + seed / 100)
        reg.publish(tmp_path / "artifacts" / str(seed))
        out.append(m.version)
    return out


@pytest.fixture
def network(platform, network_env, monkeypatch) -> NetworkConfig:
    """The serving network, also in the environment for the CLI run as a subprocess."""
    for name, value in network_env.items():
        monkeypatch.setenv(name, value)
    return NetworkConfig.from_settings(PlatformSettings.load())


def manifest(version: str, *, name: str = NAME, env: str = "prod", replicas: int = 2) -> str:
    return (
        EXAMPLE.read_text()
        .replace("20261128T064500Z-3f9a2c1", version)
        .replace(f"name: {NAME}", f"name: {name}")
        .replace("env: prod", f"env: {env}")
        .replace("replicas: 2", f"replicas: {replicas}")
    )


def controller(source, network: NetworkConfig, **kwargs) -> Controller:
    return Controller(source, Reconciler(env_platform(), network=network), **kwargs)


class AwsWrites:
    """Counts mutating AWS calls (anything but Get/List/Describe/Head) by operation,
    through botocore's 'before-call' event on the shared clients."""

    def __init__(self, services=SERVICES) -> None:
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._clients = [aws.client(s) for s in services]
        for c in self._clients:
            c.meta.events.register("before-call", self._count)

    def _count(self, model, **_kwargs) -> None:
        if not model.name.startswith(READ_PREFIXES):
            with self._lock:
                self.calls[model.name] += 1

    def close(self) -> None:
        for c in self._clients:
            c.meta.events.unregister("before-call", self._count)

    def total(self, *, exclude: tuple[str, ...] = ()) -> int:
        return sum(n for op, n in self.calls.items() if op not in exclude)


@pytest.fixture
def writes(aws_env) -> Iterator[AwsWrites]:
    w = AwsWrites()
    yield w
    w.close()


def live(platform, project: str = "usedcar-price", env: str = "prod") -> tuple[str, str]:
    """(pointer version, version pinned by the service's task definition)."""
    pointer = PointerStore(platform).get(project, env)
    ecs = aws.client("ecs")
    svc = ecs.describe_services(cluster=platform.ecs_cluster, services=[f"{project}-{env}"])
    td_arn = svc["services"][0]["taskDefinition"]
    td = ecs.describe_task_definition(taskDefinition=td_arn)["taskDefinition"]
    envs = {e["name"]: e["value"] for e in td["containerDefinitions"][0]["environment"]}
    return (pointer.version if pointer else None), envs[ENV_MODEL_VERSION]


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def assert_progressing(record: StatusRecord, generation: int, version: str) -> None:
    status = record.status
    assert status is not None
    assert record.generation == generation
    assert status.observed_generation == generation
    assert status.current_version == version
    degraded = status.condition("Degraded")
    assert degraded is not None and degraded.status == "False"
    # moto's ECS never completes a rollout: Ready stays False while it is in progress.
    progressing = status.condition("Progressing")
    assert progressing is not None and progressing.status == "True"
    assert progressing.observed_generation == generation


# -- convergence ------------------------------------------------------------------------
def test_folder_source_converges_and_counts_generations(platform, versions, network, tmp_path):
    v1, v2 = versions
    folder = tmp_path / "deployments"
    folder.mkdir()
    (folder / f"{NAME}.yaml").write_text(manifest(v1))

    outcomes = controller(DirectorySource(folder), network).run_once()
    assert [o.key for o in outcomes] == [f"default/{NAME}"]
    assert live(platform) == (v1, v1)
    record = DirectorySource(folder).read_status(NAME)
    assert_progressing(record, 1, v1)
    assert (folder / f"{NAME}.status.json").is_file()

    # A pass over an unchanged spec keeps the generation; a spec change bumps it.
    controller(DirectorySource(folder), network).run_once()
    assert DirectorySource(folder).read_status(NAME).generation == 1
    (folder / f"{NAME}.yaml").write_text(manifest(v2))
    controller(DirectorySource(folder), network).run_once()
    assert live(platform) == (v2, v2)
    assert_progressing(DirectorySource(folder).read_status(NAME), 2, v2)

    # metadata.generation in the manifest, if given, wins over the counter.
    text = manifest(v2).replace(f"  name: {NAME}\n", f"  name: {NAME}\n  generation: 7\n")
    (folder / f"{NAME}.yaml").write_text(text)
    controller(DirectorySource(folder), network).run_once()
    assert DirectorySource(folder).read_status(NAME).status.observed_generation == 7


def test_s3_source_converges_with_status_beside_the_manifest(platform, versions, network):
    v1, _ = versions
    source = S3Source("s3", platform=env_platform())
    deployment_text = manifest(v1)
    aws.client("s3").put_object(
        Bucket=platform.artifact_bucket,
        Key=f"{platform.desired_state_prefix}{NAME}.yaml",
        Body=deployment_text.encode(),
    )
    outcomes = controller(source, network).run_once()
    assert [o.failed for o in outcomes] == [False]
    assert live(platform) == (v1, v1)
    record = S3Source("s3", platform=env_platform()).get_record(NAME)
    assert_progressing(record, 1, v1)
    status_key = f"{platform.desired_state_prefix}.status/{NAME}.json"
    aws.client("s3").head_object(Bucket=platform.artifact_bucket, Key=status_key)
    lease = aws.client("s3").get_object(
        Bucket=platform.artifact_bucket,
        Key=f"{platform.desired_state_prefix}.leases/controller.json",
    )
    assert yaml.safe_load(lease["Body"].read())["holder"] is None, "released on exit"


# -- invalid manifests ------------------------------------------------------------------
def _invalid_folder(folder: Path) -> dict[str, str]:
    """Every invalid example under its metadata.name, plus broken YAML and a name that
    does not match its file. Returns name -> the text that must appear in the message."""
    expected = {}
    for path in INVALID:
        name = yaml.safe_load(path.read_text())["metadata"]["name"]
        (folder / f"{name}.yaml").write_text(path.read_text())
        expected[name] = f"{folder / (name + '.yaml')}:"
    (folder / "broken.yaml").write_text("apiVersion: x\nspec: [unclosed\n")
    expected["broken"] = "invalid YAML"
    (folder / "renamed.yaml").write_text(EXAMPLE.read_text())
    expected["renamed"] = "does not match the file name 'renamed'"
    return expected


def test_invalid_manifests_degrade_with_zero_aws_writes(
    platform, versions, network, tmp_path, writes
):
    folder = tmp_path / "deployments"
    folder.mkdir()
    expected = _invalid_folder(folder)
    outcomes = controller(DirectorySource(folder), network).run_once()
    assert writes.total() == 0, writes.calls
    assert {o.name for o in outcomes} == set(expected)
    src = DirectorySource(folder)
    for name, needle in expected.items():
        status = src.read_status(name).status
        degraded = status.condition("Degraded")
        assert degraded.status == "True" and degraded.reason == "InvalidSpec", name
        assert needle in degraded.message, (name, degraded.message)
        assert status.condition("Ready").status == "False"
        assert status.observed_generation == 1
    misspelled = src.read_status("usedcar-price-typo").status.condition("Degraded").message
    assert "usedcar-price-typo.yaml:14: spec.serving.replica: unknown field" in misspelled

    # A good deployment beside them converges; the invalid ones stay as they were.
    (folder / f"{NAME}.yaml").write_text(manifest(versions[0]))
    outcomes = controller(DirectorySource(folder), network).run_once()
    assert live(platform) == (versions[0], versions[0])
    failed = {o.name for o in outcomes if o.failed}
    assert failed == set(expected)
    assert writes.calls["CreateService"] == 1


# -- two controllers on one source --------------------------------------------------------
def _run(ctl: Controller) -> tuple[threading.Thread, threading.Event]:
    stop = threading.Event()
    t = threading.Thread(target=ctl.run, args=(stop,), daemon=True)
    t.start()
    return t, stop


def test_two_controllers_on_one_folder_never_act_twice(
    platform, versions, network, tmp_path, writes
):
    v1, v2 = versions
    folder = tmp_path / "deployments"
    folder.mkdir()
    (folder / f"{NAME}.yaml").write_text(manifest(v1))
    a = controller(DirectorySource(folder), network, poll=0.05, resync=0.2, workers=2)
    b = controller(DirectorySource(folder), network, poll=0.03, resync=0.13, workers=2)
    runs = [_run(a), _run(b)]
    wait_for(lambda: live_or_none(platform) == (v1, v1))
    (folder / f"{NAME}.yaml").write_text(manifest(v2))
    wait_for(lambda: live_or_none(platform) == (v2, v2))
    # Both took part (on a loaded machine one thread may get no turn for a while), then
    # several resyncs of both controllers over the converged state.
    wait_for(lambda: a.stats["reconciles"] >= 1 and b.stats["reconciles"] >= 1, timeout=60)
    time.sleep(1.0)
    for t, stop in runs:
        stop.set()
        t.join(timeout=30)
    assert a.stats["reconciles"] >= 1 and b.stats["reconciles"] >= 1, "both took part"
    # One controller alone does exactly this: one service, two revisions, two promotions.
    assert writes.calls["CreateService"] == 1
    assert writes.calls["RegisterTaskDefinition"] == 2
    assert writes.calls["PutParameter"] == 2


def live_or_none(platform) -> tuple[str, str] | None:
    try:
        return live(platform)
    except (IndexError, KeyError):
        return None


def test_two_controllers_on_one_s3_prefix_one_leads_the_other_takes_over(
    platform, versions, network, writes
):
    v1, v2 = versions
    src_a, src_b = (
        S3Source("s3", platform=env_platform(), lease_ttl=3),
        S3Source("s3", platform=env_platform(), lease_ttl=3),
    )
    key = f"{platform.desired_state_prefix}{NAME}.yaml"
    s3 = aws.client("s3")
    s3.put_object(Bucket=platform.artifact_bucket, Key=key, Body=manifest(v1).encode())
    a = controller(src_a, network, poll=0.05, resync=0.2)
    b = controller(src_b, network, poll=0.05, resync=0.2)
    (ta, stop_a), (tb, stop_b) = _run(a), _run(b)
    wait_for(lambda: live_or_none(platform) == (v1, v1))
    time.sleep(0.5)
    assert src_a.lease.held() != src_b.lease.held(), "exactly one controller leads"
    leader, standby = (a, b) if src_a.lease.held() else (b, a)
    assert standby.outcomes == {}, "the standby did nothing"
    assert writes.calls["CreateService"] == 1

    # The leader stops (releasing its lease); the standby takes over and converges a change.
    stop_leader, t_leader = (stop_a, ta) if leader is a else (stop_b, tb)
    stop_leader.set()
    t_leader.join(timeout=60)
    assert not t_leader.is_alive(), "the leader stopped"
    assert not leader.source.lease.held(), "the leader released its lease"
    s3.put_object(Bucket=platform.artifact_bucket, Key=key, Body=manifest(v2).encode())
    # The pointer moves inside the standby's reconcile; its outcome is recorded when that
    # reconcile returns, a moment later: wait for both, not only the first.
    wait_for(lambda: live_or_none(platform) == (v2, v2) and standby.outcomes)
    assert standby.outcomes, "the standby took over"
    (stop_b if leader is a else stop_a).set()
    (tb if leader is a else ta).join(timeout=30)
    assert writes.calls["CreateService"] == 1
    assert writes.calls["PutParameter"] == 2


# -- --once beside another controller ------------------------------------------------------
PEER = "peer-host:4242:abcd"


def test_once_waits_for_a_key_another_controller_holds_then_reconciles_it(
    platform, versions, network, tmp_path, writes
):
    """Two overlapping --once passes (CI jobs) on one folder: the one that finds a key
    locked waits for the other to let go and reconciles it itself; nothing failed."""
    v1, _ = versions
    folder = tmp_path / "deployments"
    folder.mkdir()
    (folder / f"{NAME}.yaml").write_text(manifest(v1))
    peer = FileLock(folder / ".leases" / f"{NAME}.lock", holder=PEER)
    assert peer.try_acquire()
    # Longer than the 4 backoff attempts a failing key gets (0.5 + 1 + 2 s at most).
    threading.Timer(5.0, peer.release).start()
    ctl = controller(DirectorySource(folder), network, lease_retry=0.2)
    (outcome,) = ctl.run_once()
    assert outcome.key == f"default/{NAME}"
    assert not outcome.failed and outcome.error is None and outcome.held_by is None
    assert outcome.generation == 1 and outcome.status.current_version == v1
    assert live(platform) == (v1, v1)
    assert writes.calls["CreateService"] == 1


@pytest.mark.e2e
def test_once_reports_a_key_held_past_the_wait_by_its_holder_not_as_failed(
    platform, versions, network, tmp_path
):
    folder = tmp_path / "deployments"
    folder.mkdir()
    (folder / f"{NAME}.yaml").write_text(manifest(versions[0]))
    peer = FileLock(folder / ".leases" / f"{NAME}.lock", holder=PEER)
    assert peer.try_acquire()
    try:
        proc = mlopsctl(
            "controller", "run", "--source", str(folder), "--once", "-o", "json",
            "--lease-ttl", "3",
        )  # fmt: skip
        out, err = proc.communicate(timeout=120)
    finally:
        peer.release()
    assert proc.returncode == 4, (out, err)  # not 1: nothing failed
    (d,) = json.loads(out)["deployments"]
    assert d["key"] == f"default/{NAME}" and d["failed"] is False and d["error"] is None
    assert d["held_by"] == PEER and d["reason"] == f"HeldByAnotherController: {PEER}"
    assert f"held by another controller for longer than this pass waited: default/{NAME}" in err
    assert "giving up" not in err


def test_once_on_s3_waits_out_the_lease_of_a_dead_controller(platform, versions, network):
    """A controller killed (kill -9) while it led: its lease stays until it expires; a
    --once pass waits for that and converges, rather than refusing."""
    v1, _ = versions
    s3 = aws.client("s3")
    key = f"{platform.desired_state_prefix}{NAME}.yaml"
    s3.put_object(Bucket=platform.artifact_bucket, Key=key, Body=manifest(v1).encode())
    dead = S3Source("s3", platform=env_platform(), lease_ttl=3, holder=PEER)
    assert dead.heartbeat()  # and never again: its process is gone
    src = S3Source("s3", platform=env_platform(), lease_ttl=3)
    started = time.monotonic()
    (outcome,) = controller(src, network, lease_retry=0.2, busy_wait=3).run_once()
    assert time.monotonic() - started < 15
    assert outcome.key == f"default/{NAME}" and not outcome.failed
    assert live(platform) == (v1, v1)


def test_once_on_s3_reports_a_live_holder_and_its_expiry_as_holding_every_key(
    platform, versions, network
):
    """A live daemon leads the prefix: a --once pass waits about one ttl, then reports
    each deployment as held by that daemon (until when), as a folder pass reports a key
    a peer holds; not as failed, and without acting."""
    s3 = aws.client("s3")
    key = f"{platform.desired_state_prefix}{NAME}.yaml"
    s3.put_object(Bucket=platform.artifact_bucket, Key=key, Body=manifest(versions[0]).encode())
    alive = S3Source("s3", platform=env_platform(), lease_ttl=3, holder=PEER)
    stop = threading.Event()

    def renew() -> None:
        while not stop.is_set():
            alive.heartbeat()
            stop.wait(0.2)

    renewer = threading.Thread(target=renew, daemon=True)
    renewer.start()
    try:
        wait_for(alive.lease.held)
        src = S3Source("s3", platform=env_platform(), lease_ttl=3)
        started = time.monotonic()
        (outcome,) = controller(src, network, lease_retry=0.2, busy_wait=3).run_once()
        waited = time.monotonic() - started
    finally:
        stop.set()
        renewer.join(timeout=10)
        alive.close()
    assert 2.5 < waited < 15, "waited about one lease ttl, then gave up"
    assert outcome.key == f"default/{NAME}" and not outcome.failed
    assert outcome.held_by is not None and outcome.held_by.startswith(f"{PEER} until 20")
    failure = once_failure([outcome], src.uri)
    assert failure is not None and failure.exit_code == 4
    assert f"default/{NAME} (held by {PEER} until 20" in failure.render()
    assert live_or_none(platform) is None, "nothing was deployed"


class SlowReconciler(Reconciler):
    """The real reconciler, each batch of which first takes ``delay`` seconds (a slow
    AWS, throttling, many keys in one batch)."""

    def __init__(self, *args, delay: float, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.delay = delay

    def reconcile_many(self, items, *args, **kwargs):
        time.sleep(self.delay)
        return super().reconcile_many(items, *args, **kwargs)


def test_once_on_s3_renews_its_lease_through_a_batch_longer_than_the_ttl(
    platform, versions, network
):
    """A --once pass alone on an S3 prefix whose batch outlasts the lease: it keeps
    the lease (renewed while the pass runs, as the daemon's loop does) and converges;
    it does not lose it and report its own keys held by 'another controller'."""
    v1, _ = versions
    s3 = aws.client("s3")
    key = f"{platform.desired_state_prefix}{NAME}.yaml"
    s3.put_object(Bucket=platform.artifact_bucket, Key=key, Body=manifest(v1).encode())
    src = S3Source("s3", platform=env_platform(), lease_ttl=3)
    slow = SlowReconciler(env_platform(), network=network, delay=4.0)
    ctl = Controller(src, slow, lease_retry=0.2, busy_wait=1)
    (outcome,) = ctl.run_once()
    assert outcome.held_by is None, outcome.held_by
    assert not outcome.failed and outcome.error is None
    assert outcome.generation == 1 and outcome.status.current_version == v1
    assert live(platform) == (v1, v1)


# -- drift --------------------------------------------------------------------------------
def test_resync_puts_back_a_pointer_moved_by_hand(platform, versions, network, tmp_path):
    v1, v2 = versions
    folder = tmp_path / "deployments"
    folder.mkdir()
    (folder / f"{NAME}.yaml").write_text(manifest(v1))
    ctl = controller(DirectorySource(folder), network, poll=0.05, resync=0.3)
    t, stop = _run(ctl)
    try:
        wait_for(lambda: live_or_none(platform) == (v1, v1))
        with structlog.testing.capture_logs() as logs:
            # Someone moves the pointer in the console (no manifest change at all).
            store = PointerStore(platform)
            moved = store.get("usedcar-price", "prod").model_copy(update={"version": v2})
            store.put("usedcar-price", "prod", moved)

            def put_back():
                return [
                    e
                    for e in logs
                    if e.get("key") == f"default/{NAME}"
                    and "move pointer" in str(e.get("action", ""))
                ]

            # The pointer is put back inside the action, and the action is logged right
            # after it: wait for both.
            wait_for(lambda: store.get("usedcar-price", "prod").version == v1 and put_back())
    finally:
        stop.set()
        t.join(timeout=30)
    assert put_back(), "the revert is logged with the deployment key"
    assert all(e.get("generation") == 1 for e in put_back())


# -- AWS errors ---------------------------------------------------------------------------
def test_aws_errors_back_off_per_key_and_once_gives_up(platform, versions, tmp_path, writes):
    folder = tmp_path / "deployments"
    folder.mkdir()
    (folder / f"{NAME}.yaml").write_text(manifest(versions[0]))
    bad_network = NetworkConfig(subnets=("subnet-00000000",), security_groups=("sg-0",))
    queue = WorkQueue(base_delay=0.01, max_delay=0.05)
    ctl = Controller(
        DirectorySource(folder),
        Reconciler(env_platform(), network=bad_network),
        queue=queue,
        once_attempts=3,
    )
    outcomes = ctl.run_once()
    assert writes.calls["CreateService"] == 3, "retried, then gave up"
    assert [o.failed for o in outcomes] == [True]
    degraded = DirectorySource(folder).read_status(NAME).status.condition("Degraded")
    assert degraded.reason == "AWSError" and "subnet" in degraded.message


def test_a_removed_manifest_stops_management_and_leaves_aws_alone(
    platform, versions, network, tmp_path, writes
):
    folder = tmp_path / "deployments"
    folder.mkdir()
    (folder / f"{NAME}.yaml").write_text(manifest(versions[0]))
    ctl = controller(DirectorySource(folder), network, poll=0.05, resync=60)
    t, stop = _run(ctl)
    try:
        wait_for(lambda: (folder / f"{NAME}.status.json").exists())
        before = writes.total()
        (folder / f"{NAME}.yaml").unlink()
        wait_for(lambda: not (folder / f"{NAME}.status.json").exists())
    finally:
        stop.set()
        t.join(timeout=30)
    # Retain: the one write releases the env's claim; the service and the pointer stay.
    assert writes.total() == before + 1 and writes.calls["DeleteObject"] == 1
    assert Claims(platform).get("usedcar-price", "prod") is None
    assert live(platform)[0] == versions[0]


# -- the CLI, as a subprocess ---------------------------------------------------------------
def mlopsctl(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "MLOPS_LOG_FORMAT": "json", "MLOPS_CONTROLLER_METRICS_PORT": "0"}
    return subprocess.Popen(
        [sys.executable, "-m", "mlopsctl.cli", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


@pytest.mark.e2e
def test_once_prints_a_table_and_fails_on_a_degraded_deployment(
    platform, versions, network, tmp_path
):
    folder = tmp_path / "deployments"
    folder.mkdir()
    (folder / f"{NAME}.yaml").write_text(manifest(versions[0]))
    proc = mlopsctl("controller", "run", "--source", str(folder), "--once")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert f"default/{NAME}" in out and versions[0] in out
    assert live(platform) == (versions[0], versions[0])

    (folder / "typo.yaml").write_text(
        manifest(versions[0], name="typo").replace("replicas: 2", "replica: 2")
    )
    proc = mlopsctl("controller", "run", "--source", str(folder), "--once")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, (out, err)
    row = next(line for line in out.splitlines() if "typo" in line)
    assert "InvalidSpec" in row and "False" in row
    assert "1 of 2 deployment(s) Degraded or failed: default/typo" in err

    # The same pass as a document (-o json), and the wide table with the messages.
    proc = mlopsctl("controller", "run", "--source", str(folder), "--once", "-o", "json")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, (out, err)
    doc = json.loads(out)
    assert doc["source"].endswith("deployments")
    by_name = {d["name"]: d for d in doc["deployments"]}
    assert by_name["typo"]["failed"] and by_name["typo"]["reason"] == "InvalidSpec"
    assert not by_name[NAME]["failed"] and by_name[NAME]["version"] == versions[0]
    ready = next(c for c in by_name[NAME]["status"]["conditions"] if c["type"] == "Ready")
    assert by_name[NAME]["reason"] == ready["reason"]  # the table's REASON, from the status
    assert by_name[NAME]["status"]["currentVersion"] == versions[0]
    proc = mlopsctl("controller", "run", "--source", str(folder), "--once", "-o", "wide")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "MESSAGE" in out, (out, err)
    assert "TAKEN" in out and "InvalidSpec" in next(r for r in out.splitlines() if "typo" in r)
    typo = by_name["typo"]["status"]["conditions"]
    assert any("typo.yaml:19" in c.get("message", "") for c in typo), typo


@pytest.mark.e2e
def test_a_mistyped_delete_policy_is_said_when_applied_not_only_when_removed(
    platform, versions, network, tmp_path
):
    """A folder has no Events: the typo (meant ScaleToZero) is a warning the first time the
    spec is seen, naming the value and the default it falls back to, not silence until the
    manifest's removal quietly retains the service."""
    folder = tmp_path / "deployments"
    folder.mkdir()
    text = manifest(versions[0]).replace(
        "  labels:\n",
        "  annotations:\n    mlops.platform.io/delete-policy: ScaleToZer0\n  labels:\n",
        1,
    )
    (folder / f"{NAME}.yaml").write_text(text)
    proc = mlopsctl("controller", "run", "--source", str(folder), "--once")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    warned = [json.loads(line) for line in err.splitlines() if "invalid delete policy" in line]
    assert len(warned) == 1 and warned[0]["level"] == "warning", err
    assert (
        "'ScaleToZer0'" in warned[0]["error"]
        and "applying the default, Retain" in (warned[0]["error"])
    )
    proc = mlopsctl("controller", "run", "--source", str(folder), "--once")
    out, err = proc.communicate(timeout=120)
    assert "invalid delete policy" not in err  # said once per spec, not every pass


@pytest.mark.e2e
def test_output_without_once_is_refused(aws_env, tmp_path):
    proc = mlopsctl("controller", "run", "--source", str(tmp_path), "-o", "json")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, (out, err)
    assert "needs --once" in err and "Traceback" not in err


@pytest.mark.e2e
@pytest.mark.parametrize("source", ["", " ", "file://"])
def test_an_empty_source_is_refused_not_the_current_folder(aws_env, tmp_path, source):
    """An unset CI variable (--source "$DEPLOYMENTS") read the folder the controller was
    started in, and reported success over whatever manifests it held."""
    proc = mlopsctl("controller", "run", "--source", source, "--once")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, (out, err)
    assert "the source is empty" in err and "Traceback" not in err


@pytest.mark.e2e
def test_a_missing_folder_is_a_clear_error(aws_env, tmp_path):
    proc = mlopsctl("controller", "run", "--source", str(tmp_path / "nope"), "--once")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "does not exist" in err and "Traceback" not in err


@pytest.mark.e2e
def test_sigterm_finishes_and_exits_cleanly(platform, versions, network, tmp_path):
    folder = tmp_path / "deployments"
    folder.mkdir()
    (folder / f"{NAME}.yaml").write_text(manifest(versions[0]))
    proc = mlopsctl("controller", "run", "--source", str(folder), "--poll", "0.1")
    try:
        wait_for(lambda: DirectorySource(folder).read_status(NAME) is not None, timeout=60)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert '"signal": "SIGTERM"' in err
    assert err.rstrip().splitlines()[-1].find("controller stopped") >= 0
    assert "Traceback" not in err
    lock = FileLock(folder / ".leases" / f"{NAME}.lock")
    assert lock.try_acquire(), "no lock is left held"
    lock.release()
    assert live(platform) == (versions[0], versions[0])


@pytest.mark.e2e
def test_kube_source_is_dispatched_to_the_operator_module(aws_env):
    """--source kube goes to the Kubernetes operator (controller.launch.run_kube); it
    runs until stopped, so --once is refused with a clear error rather than ignored."""
    proc = mlopsctl("controller", "run", "--source", "kube", "--once")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert "--once is not available with --source kube" in err
    assert "Traceback" not in err
