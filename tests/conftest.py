"""Shared fixtures: a real moto server over HTTP for the whole session.

Every AWS call in the tests goes over HTTP to this server through boto3's standard
configuration chain (``AWS_ENDPOINT_URL``); nothing is patched in-process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

# Test folders are named like the packages they test (tests/training, tests/serving...);
# keep the real packages first on sys.path whatever way pytest is started.
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# pytest-xdist's workers start with COLUMNS=80, which the CLI's piped console honours (as
# a user's COLUMNS=100 should be): tests see the console as a pipe without it sees it.
os.environ.pop("COLUMNS", None)

import pytest  # noqa: E402
from configured import env_platform  # noqa: E402

from mlops_core.naming import Platform  # noqa: E402
from mlopsctl import local_aws  # noqa: E402


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory) -> Iterator[dict[str, str]]:
    port = local_aws.free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    env = local_aws.local_env(port)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    for k in ("AWS_PROFILE", "MLOPS_PLATFORM", "MLOPS_ARTIFACT_BUCKET"):
        os.environ.pop(k, None)
    proc = local_aws.start_server(port, log_path=log)
    try:
        yield {**env, "port": str(port)}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def aws_env(moto_server) -> dict[str, str]:
    """A clean local AWS with the base resources bootstrapped, for one test."""
    local_aws.reset(int(moto_server["port"]))
    local_aws.bootstrap(env_platform())
    return moto_server


@pytest.fixture
def platform(aws_env) -> Platform:
    return env_platform()


@pytest.fixture
def network_env(aws_env) -> dict[str, str]:
    """The serving network that bootstrap made (as ``mlopsctl dev up`` does), as the
    environment Terraform's ``controller_environment`` output gives the controller."""
    subnets, group = local_aws.ensure_network(env_platform())
    return {"MLOPS_SUBNETS": ",".join(subnets), "MLOPS_SECURITY_GROUPS": group}


def pytest_collection_modifyitems(config, items) -> None:
    # The demo takes as long as the rest of the suite on one worker: start it first, or the
    # suite's wall time is the demo's plus however long it waited in a queue.
    items.sort(key=lambda item: item.get_closest_marker("long_pole") is None)
