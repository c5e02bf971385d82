"""`mlopsctl deploy`: it writes desired state into the controller's source, nothing else."""

from __future__ import annotations

import threading

import pytest
import yaml
from configured import env_platform, env_reconciler
from factories import make_artifacts, project_config

from controller.runtime import Controller
from controller.sources import open_source
from mlops_core.pointer import PointerStore
from mlops_core.registry import Registry
from mlopsctl.cli import main

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlops/serving:0.1.0"


@pytest.fixture
def versions(platform, tmp_path) -> list[str]:
    registry = Registry(platform)
    registry.register_project(project_config())
    out = []
    for seed in (1, 2):
        make_artifacts(tmp_path / f"v{seed}", seed=seed, r2=0.8)
        out.append(registry.publish(tmp_path / f"v{seed}").version)
    return out


def _deploy(capsys, *argv: str) -> tuple[int, str]:
    code = main(["deploy", "--project", "usedcar-price", *argv])
    out, err = capsys.readouterr()
    return code, out + err


def test_deploy_writes_and_updates_the_manifest_only(versions, tmp_path, capsys):
    source = tmp_path / "deployments"
    code, out = _deploy(
        capsys, "--env", "prod", "--source", str(source), "--image", IMAGE, "--latest"
    )
    assert code == 0, out
    doc = yaml.safe_load((source / "usedcar-price-prod.yaml").read_text())
    assert doc["spec"]["model"] == {"version": versions[-1]}  # --latest: the newest
    assert doc["spec"]["serving"]["image"] == IMAGE
    # Nothing in AWS moved: that is the controller's job.
    assert PointerStore(env_platform()).get("usedcar-price", "prod") is None
    # A second deploy changes the version and keeps the rest of the spec.
    code, out = _deploy(capsys, "--env", "prod", "--source", str(source), "--version", versions[0])
    assert code == 0, out
    doc = yaml.safe_load((source / "usedcar-price-prod.yaml").read_text())
    assert doc["spec"]["model"] == {"version": versions[0]}
    assert doc["spec"]["serving"]["image"] == IMAGE


def test_deploy_wait_follows_the_controller_until_applied(
    versions, network_env, monkeypatch, tmp_path, capsys
):
    for name, value in network_env.items():
        monkeypatch.setenv(name, value)
    source = tmp_path / "deployments"
    source.mkdir()
    controller = Controller(
        open_source(str(source)), env_reconciler(), poll=0.2, resync=30, workers=2
    )
    stop = threading.Event()
    runner = threading.Thread(target=controller.run, args=(stop,), daemon=True)
    runner.start()
    try:
        code, out = _deploy(
            capsys, "--env", "prod", "--source", str(source), "--image", IMAGE,
            "--version", versions[1], "--wait", "--until", "applied", "--timeout", "60",
        )  # fmt: skip
    finally:
        stop.set()
        runner.join(timeout=30)
    assert code == 0, out
    assert f"pointer and service name {versions[1]}" in out
    assert PointerStore(env_platform()).get("usedcar-price", "prod").version == versions[1]


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["--env", "qa"], 2, "unknown env 'qa'"),
        (["--env", "prod", "--version", "20990101T000000Z-0000000"], 3, "not published"),
        (["--env", "prod", "--version", "v1", "--candidate", "s3://b/x/"], 2, "one of"),
        (["--env", "prod", "--version", "v1", "--latest"], 2, "one of"),
        (["--env", "prod"], 3, "nothing is live in usedcar-price/prod"),
        (["--env", "prod", "--latest", "--force"], 2, "--force needs --reason"),
        (
            ["--env", "prod", "--candidate", "s3://b/x/", "--force", "--reason", "x"],
            2,
            "published version",
        ),
        (["--env", "prod", "--wait", "--until", "soon"], 2, "--until"),
        # A spec the flags make invalid: the flag and the field, and no pydantic noise.
        (["--env", "prod", "--latest", "--replicas", "-1"], 2, "--replicas (spec.serving."),
        (["--env", "prod", "--latest", "--cpu", "300"], 2, "--cpu (spec.serving"),
    ],
)
def test_deploy_bad_input_writes_nothing(versions, tmp_path, capsys, argv, code, message):
    source = tmp_path / "deployments"
    got, out = _deploy(capsys, *argv, "--source", str(source), "--image", IMAGE)
    assert (got, message in out) == (code, True), out
    assert "errors.pydantic.dev" not in out and "input_value" not in out, out
    assert not source.exists() or not list(source.iterdir())


def test_bare_deploy_declares_the_live_version_and_force_binds_an_override(
    versions, platform, tmp_path, capsys
):
    from mlops_core.promotion import promote

    source = tmp_path / "deployments"
    promote("usedcar-price", "prod", versions[0], actor="ci", registry=Registry(platform))
    code, out = _deploy(capsys, "--env", "prod", "--source", str(source), "--image", IMAGE)
    assert code == 0, out
    doc = yaml.safe_load((source / "usedcar-price-prod.yaml").read_text())
    assert doc["spec"]["model"] == {"version": versions[0]}  # never "the newest"
    code, out = _deploy(
        capsys, "--env", "prod", "--source", str(source), "--version", versions[1],
        "--force", "--reason", "incident 9",
    )  # fmt: skip
    assert code == 0 and "gates overridden" in out, out
    doc = yaml.safe_load((source / "usedcar-price-prod.yaml").read_text())
    override = doc["spec"]["gates"]["override"]
    assert (override["version"], override["reason"]) == (versions[1], "incident 9")
    assert override["by"]
    # A later deploy without --force drops it: an override is bound to its version.
    code, out = _deploy(capsys, "--env", "prod", "--source", str(source), "--latest")
    assert code == 0, out
    doc = yaml.safe_load((source / "usedcar-price-prod.yaml").read_text())
    assert "override" not in doc["spec"].get("gates", {})


def test_deploy_wait_exits_6_when_the_controller_refuses_the_gates(
    versions, platform, network_env, monkeypatch, tmp_path, capsys
):
    for name, value in network_env.items():
        monkeypatch.setenv(name, value)
    make_artifacts(tmp_path / "low", seed=7, r2=0.05)  # below the project's min_r2 0.1
    low = Registry(platform).publish(tmp_path / "low").version
    source = tmp_path / "deployments"
    source.mkdir()
    controller = Controller(
        open_source(str(source)), env_reconciler(), poll=0.2, resync=30, workers=2
    )
    stop = threading.Event()
    runner = threading.Thread(target=controller.run, args=(stop,), daemon=True)
    runner.start()
    try:
        code, out = _deploy(
            capsys, "--env", "prod", "--source", str(source), "--image", IMAGE,
            "--version", low, "--wait", "--timeout", "60",
        )  # fmt: skip
    finally:
        stop.set()
        runner.join(timeout=30)
    assert code == 6, out
    assert "min_r2" in out and "mlopsctl gates check" in out
    assert PointerStore(platform).get("usedcar-price", "prod") is None


def test_deploy_wait_exits_6_when_the_controller_refuses_the_budget(
    versions, platform, network_env, monkeypatch, tmp_path, capsys
):
    """BudgetExceeded is a gate failure (GateFailed's exit 6) under --wait too, as in the
    dry run; nothing is written to AWS."""
    for name, value in network_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MLOPS_PRICES", "table")
    source = tmp_path / "deployments"
    source.mkdir()
    controller = Controller(
        open_source(str(source)), env_reconciler(), poll=0.2, resync=30, workers=2
    )
    stop = threading.Event()
    runner = threading.Thread(target=controller.run, args=(stop,), daemon=True)
    runner.start()
    try:
        # 2 tasks of 0.5 vCPU / 1 GB, no load balancer here: $36.04 a month in us-east-1.
        code, out = _deploy(
            capsys, "--env", "prod", "--source", str(source), "--image", IMAGE,
            "--version", versions[1], "--max-monthly-usd", "30", "--wait", "--timeout", "60",
        )  # fmt: skip
    finally:
        stop.set()
        runner.join(timeout=30)
    assert code == 6, out
    assert "exceeds the budget $30.00; nothing changed" in out
    assert "$36.04/month" in out and "lower serving.replicas" in out
    assert PointerStore(platform).get("usedcar-price", "prod") is None


def test_a_timeout_below_one_second_is_refused_before_anything_is_written(tmp_path, capsys):
    source = tmp_path / "deployments"
    version = "20260101T000000Z-aaaaaaa"
    args = ["--env", "prod", "--project", "demo", "--version", version, "--source", str(source)]
    code = main(["deploy", *args, "--timeout", "-1"])
    out = capsys.readouterr()
    assert code == 2 and "--timeout" in out.err, out
    assert not source.exists()
