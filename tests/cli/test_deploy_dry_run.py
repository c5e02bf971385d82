"""`mlopsctl deploy --dry-run` writes nothing (no manifest, no AWS write of any kind) and
prints the controller's plan and the monthly cost change; `--max-monthly-usd` is the
budget the controller enforces, and the dry run refuses what it would refuse.

Prices: the shipped table (us-east-1). One task of 256 CPU units / 512 MiB is
0.25 x 730 x 0.04048 + 0.5 x 730 x 0.004445 = 9.01 USD a month; the env's load balancer
16.425 where services attach to one (MLOPS_LOAD_BALANCERS terraform or managed; the
tests' network has none unless a test sets it).
"""

from __future__ import annotations

import json
import threading

import pytest
from configured import env_reconciler
from factories import make_artifacts, project_config

from controller.runtime import Controller
from controller.sources import open_source
from mlops_core import aws
from mlops_core.registry import Registry
from mlopsctl.cli import main

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlops/serving:0.1.0"
ONE_TASK = 0.25 * 730 * 0.04048 + 0.5 * 730 * 0.004445
SERVICES = ("ecs", "ssm", "s3", "logs", "elbv2", "cloudwatch")


@pytest.fixture
def versions(platform, tmp_path, monkeypatch) -> list[str]:
    monkeypatch.setenv("MLOPS_PRICES", "table")
    registry = Registry(platform)
    registry.register_project(project_config())
    out = []
    for seed in (1, 2):
        make_artifacts(tmp_path / f"v{seed}", seed=seed, r2=0.8)
        out.append(registry.publish(tmp_path / f"v{seed}").version)
    return out


@pytest.fixture
def writes():
    """Every mutating call of the shared clients, by operation (over HTTP)."""
    seen: list[str] = []

    def count(model, **kwargs):
        if not model.name.startswith(("Get", "List", "Describe", "Head", "Filter")):
            seen.append(model.name)

    clients = [aws.client(s) for s in SERVICES]
    for c in clients:
        c.meta.events.register("before-call.*.*", count)
    yield seen
    for c in clients:
        c.meta.events.unregister("before-call.*.*", count)


def deploy(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["deploy", "--project", "usedcar-price", "--env", "prod", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_dry_run_of_a_first_deploy_prints_the_plan_and_the_cost_and_writes_nothing(
    versions, network_env, monkeypatch, tmp_path, capsys, writes
):
    for name, value in network_env.items():
        monkeypatch.setenv(name, value)
    source = tmp_path / "deployments"
    code, out, err = deploy(
        capsys, "--source", str(source), "--image", IMAGE, "--cpu", "256", "--memory", "512",
        "--replicas", "2", "--dry-run", "--latest",
    )  # fmt: skip
    assert code == 0, out + err
    assert writes == []
    assert not source.exists()  # not even the folder
    assert "nothing written" in out
    # The env is claimed before any other write (one owner per project/env).
    assert "1. claim usedcar-price/prod for default/usedcar-price-prod" in out
    assert "2. register task definition usedcar-price-prod" in out
    assert "3. create service usedcar-price-prod" in out
    assert "4. move pointer usedcar-price/prod" in out
    total = 2 * ONE_TASK  # no load balancer in this network
    assert f"monthly cost: $0.00 -> ${total:,.2f} (+{total:,.2f} USD/month)" in out
    assert "prices: shipped-table, as of 2026-12-01" in out


def test_dry_run_of_a_change_prices_the_delta_against_what_runs(
    versions, network_env, monkeypatch, tmp_path, capsys, writes
):
    for name, value in network_env.items():
        monkeypatch.setenv(name, value)
    source = tmp_path / "deployments"
    source.mkdir()
    controller = Controller(
        open_source(str(source)), env_reconciler(), poll=0.2, resync=30, workers=1
    )
    stop = threading.Event()
    runner = threading.Thread(target=controller.run, args=(stop,), daemon=True)
    runner.start()
    try:
        code, out, err = deploy(
            capsys, "--source", str(source), "--image", IMAGE, "--cpu", "256", "--memory",
            "512", "--replicas", "2", "--version", versions[0], "--wait", "--until", "applied",
            "--timeout", "60",
        )  # fmt: skip
    finally:
        stop.set()
        runner.join(timeout=30)
    assert code == 0, out + err
    manifest = (source / "usedcar-price-prod.yaml").read_text()
    writes.clear()

    code, out, err = deploy(
        capsys, "--source", str(source), "--version", versions[1], "--replicas", "4",
        "--dry-run", "-o", "json",
    )  # fmt: skip
    assert code == 0, out + err
    assert writes == []
    assert (source / "usedcar-price-prod.yaml").read_text() == manifest
    doc = json.loads(out)
    assert doc["written"] is False and doc["generation"] == 2
    assert [a.split(" ")[0] for a in doc["actions"]] == ["register", "update", "move"]
    assert f"to {versions[1]} x4" in doc["actions"][1]
    assert doc["cost"]["current"]["monthly_usd"] == round(2 * ONE_TASK, 2)
    assert doc["cost"]["desired"]["monthly_usd"] == round(4 * ONE_TASK, 2)
    assert doc["cost"]["monthly_delta_usd"] == round(2 * ONE_TASK, 2)


def test_dry_run_over_budget_is_refused_exit_6(
    versions, network_env, monkeypatch, tmp_path, capsys, writes
):
    for name, value in network_env.items():
        monkeypatch.setenv(name, value)
    # Behind the env's load balancer: 2 x 9.01 + 16.425 = 34.45 a month.
    monkeypatch.setenv("MLOPS_LOAD_BALANCERS", "managed")
    code, out, err = deploy(
        capsys, "--source", str(tmp_path / "d"), "--image", IMAGE, "--cpu", "256",
        "--memory", "512", "--replicas", "2", "--max-monthly-usd", "30", "--dry-run", "--latest",
    )  # fmt: skip
    assert code == 6, out + err
    assert writes == []
    assert "the controller would make no change" in out
    assert "Degraded=True (BudgetExceeded)" in out
    assert "would be refused" in err and "$34.45/month" in err and "$30.00" in err


def test_the_budget_option_lands_in_the_manifest(versions, tmp_path, capsys):
    source = tmp_path / "deployments"
    code, out, err = deploy(
        capsys, "--source", str(source), "--image", IMAGE, "--max-monthly-usd", "120", "--latest"
    )
    assert code == 0, out + err
    text = (source / "usedcar-price-prod.yaml").read_text()
    assert "maxMonthlyUSD: 120.0" in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--dry-run", "--wait"], "nothing to --wait for"),
        (["--dry-run", "-o", "xml"], "is not one of"),
        (["--max-monthly-usd", "0"], "--max-monthly-usd"),
    ],
)
def test_dry_run_bad_input_is_exit_2(versions, tmp_path, capsys, argv, message):
    code, out, err = deploy(capsys, "--source", str(tmp_path / "d"), "--image", IMAGE, *argv)
    assert code == 2, out + err
    assert message in err


def test_dry_run_of_a_gate_failure_is_exit_6_and_force_needs_a_reason(
    platform, network_env, monkeypatch, tmp_path, capsys, writes
):
    for name, value in network_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MLOPS_PRICES", "table")
    registry = Registry(platform)
    registry.register_project(project_config(min_r2=0.5, max_regression=0.05))
    make_artifacts(tmp_path / "low", seed=3, r2=0.3)
    low = registry.publish(tmp_path / "low").version
    writes.clear()
    source = str(tmp_path / "d")
    code, out, err = deploy(
        capsys, "--source", source, "--image", IMAGE, "--version", low, "--dry-run"
    )
    assert code == 6, out + err
    assert "Degraded=True (GateFailed)" in out and "min_r2" in err
    assert "mlopsctl gates check" in err
    code, out, err = deploy(
        capsys, "--source", source, "--image", IMAGE, "--version", low, "--force", "--dry-run"
    )
    assert code == 2 and "--force needs --reason" in err, out + err
    code, out, err = deploy(
        capsys, "--source", source, "--image", IMAGE, "--version", low, "--force",
        "--reason", "known-bad metrics, fixed data", "--dry-run", "-o", "json",
    )  # fmt: skip
    assert code == 0, out + err
    doc = json.loads(out)
    assert "FORCED past min_r2" in doc["conditions"]["Progressing"]["message"]
    assert writes == []


def test_dry_run_reads_the_source_deploy_would_write(
    versions, network_env, monkeypatch, tmp_path, capsys, writes
):
    """A file:// folder is the folder (its manifest's 5 replicas are what is priced);
    kube and unknown schemes are refused as deploy refuses them, not planned as a first
    deploy of the defaults."""
    for name, value in network_env.items():
        monkeypatch.setenv(name, value)
    source = tmp_path / "deployments"
    code, out, err = deploy(
        capsys, "--source", str(source), "--image", IMAGE, "--replicas", "5", "--latest"
    )
    assert code == 0, out + err
    writes.clear()
    code, out, err = deploy(
        capsys, "--source", f"file://{source}", "--dry-run", "--latest", "-o", "json"
    )
    assert code == 0, out + err
    vcpu = json.loads(out)["cost"]["desired"]["items"][0]
    assert (vcpu["name"], vcpu["quantity"]) == ("fargate vCPU", 5 * 0.5 * 730)
    assert writes == []
    for uri, message in (("kube", "not a manifest store"), ("gs://b/x", "unsupported source")):
        code, out, err = deploy(capsys, "--source", uri, "--dry-run", "--latest")
        assert code == 2 and message in err, out + err
    assert writes == []
