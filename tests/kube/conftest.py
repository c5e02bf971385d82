"""Fixtures of the Kubernetes tests: an emulated API server, kubectl, the real operator.

The operator runs as users run it, ``mlopsctl controller run --source kube``, in a
subprocess with the kubeconfig of the emulator (``kube_emulator``) and the local AWS
endpoint of the session's moto server.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from factories import make_artifacts, project_config
from kube_emulator import EmulatedCluster

from mlops_core.registry import Registry
from mlopsctl import local_aws

ROOT = Path(__file__).resolve().parents[2]
MLOPSCTL = Path(sys.executable).with_name("mlopsctl")
PROJECT = "usedcar-price"


@dataclass
class Kubectl:
    kubeconfig: Path
    transcript: list[str]

    def __call__(self, *args: str, check: bool = True, record: bool = False) -> str:
        cmd = ["kubectl", "--kubeconfig", str(self.kubeconfig), *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if record:
            shown = " ".join(a if " " not in a else f"'{a}'" for a in args)
            self.transcript.append(f"$ kubectl {shown}\n{proc.stdout}{proc.stderr}")
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{proc.stderr}")
        return proc.stdout + (proc.stderr if not check else "")

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "-o", "json"))


@pytest.fixture
def cluster(tmp_path) -> Iterator[EmulatedCluster]:
    if shutil.which("kubectl") is None:
        pytest.skip("needs the kubectl binary on PATH (see infra/kind/README.md to install it)")
    emulated = EmulatedCluster(tmp_path).start()
    try:
        yield emulated
    finally:
        emulated.stop()


@pytest.fixture
def kubectl(cluster) -> Kubectl:
    return Kubectl(cluster.kubeconfig, [])


@pytest.fixture(scope="session")
def kube_artifacts(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("kube-artifacts")
    folders = []
    for seed in (11, 12):
        make_artifacts(root / str(seed), seed=seed, r2=0.8)
        folders.append(root / str(seed))
    return folders


@pytest.fixture
def versions(platform, kube_artifacts) -> list[str]:
    """Two published versions of usedcar-price, oldest first."""
    registry = Registry(platform)
    registry.register_project(project_config(PROJECT, min_r2=0.5, max_regression=0.05))
    published = [registry.publish(folder).version for folder in kube_artifacts]
    return sorted(published)


@dataclass
class Operator:
    proc: subprocess.Popen
    log: Path
    liveness: str
    metrics: str  # base URL of /metrics and /readyz

    def logs(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def start_operator(cluster, aws_env, network_env, tmp_path) -> Iterator[Callable[..., Operator]]:
    started: list[Operator] = []

    def start(name: str = "operator", **extra_env: str) -> Operator:
        port, metrics_port = local_aws.free_port(), local_aws.free_port()
        lease_ttl = extra_env.pop("LEASE_TTL", "30")
        env = {
            **os.environ,
            **{k: v for k, v in aws_env.items() if k != "port"},
            **network_env,
            "KUBECONFIG": str(cluster.kubeconfig),
            "MLOPS_KUBE_LIVENESS": f"http://127.0.0.1:{port}/healthz",
            "MLOPS_KUBE_LEASE_NAMESPACE": "default",
            "MLOPS_CONTROLLER_METRICS_PORT": str(metrics_port),
            "MLOPS_CONTROLLER_METRICS_HOST": "127.0.0.1",
            "MLOPS_LOG_FORMAT": "json",
            **extra_env,
        }
        log = tmp_path / f"{name}.log"
        log.unlink(missing_ok=True)
        proc = subprocess.Popen(
            [
                str(MLOPSCTL),
                "controller",
                "run",
                "--source",
                "kube",
                "--resync",
                "30",
                "--lease-ttl",
                lease_ttl,
            ],
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp_path,
            start_new_session=True,
        )
        op = Operator(
            proc, log, f"http://127.0.0.1:{port}/healthz", f"http://127.0.0.1:{metrics_port}"
        )
        started.append(op)
        return op

    yield start
    for op in started:
        if op.proc.poll() is None:
            os.killpg(op.proc.pid, signal.SIGTERM)
            try:
                op.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(op.proc.pid, signal.SIGKILL)
                op.proc.wait()


def wait_for(what: str, fn: Callable[[], Any], *, timeout: float = 60, operators=()) -> Any:
    """Poll ``fn`` until it returns something truthy; fail naming ``what`` and showing the
    operators' logs otherwise. (A convergence wait, not a timing assertion.)"""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        for op in operators:
            if op.proc.poll() is not None:
                raise AssertionError(f"the operator exited ({op.proc.returncode}):\n{op.logs()}")
        time.sleep(0.3)
    logs = "\n".join(op.logs()[-6000:] for op in operators)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}\n{logs}")


def liveness_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
