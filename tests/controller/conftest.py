"""Shared fixtures of the reconciler tests: a VPC to run Fargate services in, published
model versions, and a factory of ModelDeployments.

Everything goes to the session's moto server over HTTP (``aws_env``)."""

from __future__ import annotations

import shutil

import pytest
from factories import make_artifacts, project_config
from reconcile_support import MUTATING_PREFIXES, PROJECT, Calls, Clock, RolloutObserver, Versions

from controller.plan import NetworkConfig
from controller.reconcile import Reconciler
from mlops_core import aws
from mlops_core.registry import Registry, sign_candidate


@pytest.fixture
def network(network_env) -> NetworkConfig:
    """Subnets and a security group in moto, as Terraform would output them."""
    return NetworkConfig(
        subnets=tuple(network_env["MLOPS_SUBNETS"].split(",")),
        security_groups=(network_env["MLOPS_SECURITY_GROUPS"],),
    )


@pytest.fixture(scope="session")
def artifact_folders(tmp_path_factory):
    """Artifact folders built once per session (training a tiny forest takes a moment)."""
    root = tmp_path_factory.mktemp("artifacts")
    out = {}
    for seed, r2 in [(1, 0.80), (2, 0.82), (3, 0.60), (4, 0.40), (5, 0.85)]:
        folder = root / str(seed)
        make_artifacts(folder, seed=seed, r2=r2)
        out[r2] = folder
    return out


@pytest.fixture
def registry(platform) -> Registry:
    reg = Registry(platform)
    reg.register_project(project_config(PROJECT, min_r2=0.5, max_regression=0.05))
    return reg


@pytest.fixture
def versions(registry, artifact_folders) -> Versions:
    got = {}
    for r2 in (0.80, 0.82, 0.60, 0.40):
        got[r2] = registry.publish(artifact_folders[r2]).version
    return Versions(good=got[0.80], better=got[0.82], worse=got[0.60], bad=got[0.40])


@pytest.fixture
def candidate_folder(artifact_folders, platform, tmp_path):
    """An unpublished artifacts folder (r2 0.85) to deploy as a candidate, signed by the
    publisher (this test's signing key: each test's local AWS is new)."""
    folder = tmp_path / "candidate"
    shutil.copytree(artifact_folders[0.85], folder)
    sign_candidate(str(folder), platform.model_signing_key)
    return folder


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_reconciler(platform, registry, network, clock):
    """Reconcilers sharing nothing but AWS (a fresh one is a restarted controller)."""

    def make(**kw) -> Reconciler:
        observer = kw.pop("observer", None) or RolloutObserver(
            platform, Registry(platform), clock=clock
        )
        kw.setdefault("network", network)
        return Reconciler(platform, clock=clock, observer=observer, **kw)

    return make


@pytest.fixture
def mutations():
    """Counts mutating AWS calls, by operation name, via botocore's before-call event
    (so over the real HTTP path), and records their parameters."""
    calls = Calls()

    def count(model, **kwargs):
        if model.name.startswith(MUTATING_PREFIXES):
            calls[model.name] = calls.get(model.name, 0) + 1

    def record(params, model, **kwargs):
        if model.name.startswith(MUTATING_PREFIXES):
            calls.params.append((model.name, dict(params)))

    clients = [aws.client(s) for s in ("ecs", "ssm", "s3")]
    for c in clients:
        c.meta.events.register("before-call.*.*", count)
        c.meta.events.register("provide-client-params.*.*", record)
    yield calls
    for c in clients:
        c.meta.events.unregister("before-call.*.*", count)
        c.meta.events.unregister("provide-client-params.*.*", record)
