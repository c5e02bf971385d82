"""One configuration object, read at the edges (issue 11, item 5)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from controller.settings import ControllerSettings
from mlops_core.config import PlatformSettings
from mlops_core.errors import InvalidInput
from monitoring.settings import DriftSettings
from serving.settings import load_settings as serving_settings

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("mlops_core", "controller", "serving", "monitoring", "training", "mlopsctl")
# The modules allowed to touch the process environment, and why.
EDGES = {
    "mlops_core/config.py": "the one reader of MLOPS_* variables",
    "mlops_core/aws.py": "the AWS SDK's own chain (endpoint, profile, AWS_MAX_ATTEMPTS)",
    "mlops_core/__init__.py": "turns onnxruntime's telemetry off before it is imported",
    "serving/settings.py": "serving's entry point reads its variables as one mapping",
    "serving/server.py": "hands the environment to the workers it forks",
    "serving/capture_process.py": "hands the worker's environment to its writer process",
    "mlopsctl/cmd_dev.py": "points the bootstrap at the local endpoint it started",
    "mlopsctl/context.py": "COLUMNS, the terminal's convention, read as Rich reads it",
    "mlopsctl/local_aws.py": "the environment of the servers dev up starts",
    "mlopsctl/motoserver.py": "moto builds some URLs from MOTO_PORT",
    "mlopsctl/dataplane/server.py": "the same, for the data plane's embedded moto",
    "mlopsctl/dataplane/agent.py": "the environment of the tasks it runs",
}


def _reads_environment(tree: ast.AST) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in ("environ", "getenv")
            and isinstance(node.value, ast.Name)
            and node.value.id in ("os", "_os")
        ):
            lines.append(node.lineno)
    return lines


def test_only_the_edges_read_the_environment():
    offenders = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel in EDGES:
                continue
            for line in _reads_environment(ast.parse(path.read_text())):
                offenders.append(f"{rel}:{line}")
    assert offenders == [], "read the setting from mlops_core.config, passed down"
    stale = [rel for rel in EDGES if not _reads_environment(ast.parse((ROOT / rel).read_text()))]
    assert stale == [], "no longer reads the environment: drop it from EDGES"


def test_a_bad_value_names_its_variable_and_what_to_do(monkeypatch):
    monkeypatch.setenv("MLOPS_OBJECT_LOCK_DAYS", "a week")
    with pytest.raises(InvalidInput) as err:
        PlatformSettings.load()
    assert err.value.where == "MLOPS_OBJECT_LOCK_DAYS"
    assert "'a week'" in err.value.what and "whole number of days" in (err.value.hint or "")
    monkeypatch.setenv("MLOPS_OBJECT_LOCK_DAYS", "")  # empty is unset, as in a shell
    assert PlatformSettings.load().object_lock_days == 30
    monkeypatch.setenv("MLOPS_PLATFORM", "Not_Valid")
    with pytest.raises(InvalidInput, match="MLOPS_PLATFORM"):
        PlatformSettings.load()


def test_every_component_reads_the_platform_variables_under_the_same_names(monkeypatch):
    monkeypatch.setenv("MLOPS_PLATFORM", "acme-ml")
    monkeypatch.setenv("MLOPS_ARTIFACT_BUCKET", "acme-models")
    monkeypatch.setenv("MLOPS_ACTOR", "ci-bot")
    monkeypatch.setenv("MLOPS_SUBNETS", "subnet-a, subnet-b,")
    monkeypatch.setenv("MLOPS_CONTROLLER_WORKERS", "7")
    monkeypatch.setenv("MLOPS_DRIFT_ALPHA", "0.01")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.delenv("AWS_REGION", raising=False)
    controller = ControllerSettings.load()
    drift = DriftSettings()
    serving = serving_settings({"MODEL_URI": "/models/v1"})
    for platform in (controller.names(), drift.names(), serving.platform):
        assert (platform.platform, platform.artifact_bucket) == ("acme-ml", "acme-models")
        assert (platform.region, platform.actor) == ("eu-west-1", "ci-bot")
    assert controller.workers == 7 and drift.alpha == 0.01
    assert controller.network().subnets == ("subnet-a", "subnet-b")
    # A flag overrides the environment; the platform's names stay as the environment set.
    assert ControllerSettings.load(workers=2).workers == 2


def test_a_bad_variable_fails_a_command_naming_it_without_a_traceback(monkeypatch, capsys):
    from mlopsctl.cli import main

    monkeypatch.setenv("MLOPS_LOAD_BALANCERS", "sometimes")
    code = main(["prices", "--region", "us-east-1"])
    err = capsys.readouterr().err
    assert code == 2
    assert "MLOPS_LOAD_BALANCERS: invalid value 'sometimes'" in err
    assert "Traceback" not in err
