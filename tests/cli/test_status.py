"""`mlopsctl status`: the pointer of each env next to the ECS service that serves it.

The service is made by the real controller (``controller.runtime.Controller``) from a
manifest that ``mlopsctl deploy`` writes into a folder source; every call goes to the
session's moto server over HTTP.
"""

from __future__ import annotations

import json

import pytest
from configured import env_reconciler
from factories import make_artifacts, project_config

from controller.runtime import Controller
from controller.sources import open_source
from mlops_core import aws
from mlops_core.pointer import ModelPointer, PointerStore, now
from mlops_core.registry import Registry
from mlopsctl.cli import main

PROJECT = "usedcar-price"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlops/serving:0.1.0"
ECS_COLUMNS = ("service", "serving", "rollout", "tasks")
REPLICAS = 3


@pytest.fixture(scope="module")
def artifact_folders(tmp_path_factory):
    """Two artifact folders, built once for this module (training takes a moment)."""
    root = tmp_path_factory.mktemp("status-artifacts")
    for seed in (1, 2):
        make_artifacts(root / f"v{seed}", seed=seed, r2=0.7 + seed / 10)
    return [root / "v1", root / "v2"]


@pytest.fixture
def versions(platform, artifact_folders) -> list[str]:
    registry = Registry(platform)
    registry.register_project(project_config(PROJECT))
    return [registry.publish(folder).version for folder in artifact_folders]


@pytest.fixture
def ecs_reads():
    """ECS operations the command makes, by name, counted on the real HTTP path."""
    calls: dict[str, int] = {}

    def count(model, **kwargs):
        calls[model.name] = calls.get(model.name, 0) + 1

    client = aws.client("ecs")
    client.meta.events.register("before-call.ecs.*", count)
    yield calls
    client.meta.events.unregister("before-call.ecs.*", count)


@pytest.fixture
def converged(versions, network_env, monkeypatch, tmp_path, capsys) -> str:
    """prod deployed on the newer version by one controller pass; returns that version."""
    for name, value in network_env.items():
        monkeypatch.setenv(name, value)
    source = tmp_path / "deployments"
    code = main(
        ["deploy", "--project", PROJECT, "--env", "prod", "--source", str(source),
         "--image", IMAGE, "--version", versions[1], "--replicas", str(REPLICAS)]
    )  # fmt: skip
    assert code == 0, capsys.readouterr()
    outcomes = Controller(open_source(str(source)), env_reconciler(), workers=1).run_once()
    assert [o.failed for o in outcomes] == [False], outcomes
    capsys.readouterr()
    return versions[1]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["status", "--project", PROJECT, *argv])
    out, err = capsys.readouterr()
    return code, out, err


def table(out: str) -> dict[str, dict[str, str]]:
    """The rows of Rich's table, by env, as {column: cell}."""
    lines = [line for line in out.splitlines() if line.startswith(("│", "┃"))]
    split = [[cell.strip() for cell in line.strip("│┃").split("│" if "│" in line else "┃")]
             for line in lines]  # fmt: skip
    header, *rows = split
    return {row[0]: dict(zip(header, row, strict=True)) for row in rows}


def status_json(capsys) -> dict:
    code, out, err = run(capsys, "-o", "json")
    assert code == 0, err
    return json.loads(out)


def test_no_service_shows_a_dash_with_one_batched_read(versions, ecs_reads, capsys):
    assert main(["promote", versions[0], "--env", "prod", "--project", PROJECT]) == 0
    capsys.readouterr()
    code, out, err = run(capsys, "-o", "wide")
    assert code == 0, err
    rows = table(out)
    assert list(rows) == ["dev", "staging", "prod"]
    assert rows["prod"]["version"] == versions[0]
    for env in rows:
        assert [rows[env][c] for c in ECS_COLUMNS] == ["-"] * 4, rows[env]
    # Three envs, no service: one describe_services, no task definition read.
    assert ecs_reads == {"DescribeServices": 1}


def test_works_in_an_account_without_the_cluster(versions, platform, capsys):
    aws.client("ecs").delete_cluster(cluster=platform.ecs_cluster)
    code, out, err = run(capsys, "-o", "wide")
    assert code == 0, err
    rows = table(out)
    assert all(rows[env]["service"] == "-" for env in ("dev", "staging", "prod")), rows
    doc = status_json(capsys)
    assert [e["service"] for e in doc["envs"]] == [None, None, None]
    assert doc["ecs_error"] is None


def test_converged_service_shows_its_revision_and_the_pointer_version(converged, ecs_reads, capsys):
    code, out, err = run(capsys, "-o", "wide")
    assert code == 0, err
    prod = table(out)["prod"]
    assert prod["version"] == converged  # the controller moved the pointer...
    assert prod["serving"] == converged  # ...and the service pins the same version
    assert prod["service"] == f"{PROJECT}-prod:1"
    # moto never completes a rollout: the primary deployment stays IN_PROGRESS.
    assert prod["rollout"] == "IN_PROGRESS"
    assert prod["tasks"] == f"0/{REPLICAS}"
    assert "≠" not in out
    assert table(out)["dev"]["service"] == "-"
    # One describe_services for all envs, one describe_task_definition for prod's revision.
    assert ecs_reads == {"DescribeServices": 1, "DescribeTaskDefinition": 1}


def _point_prod_by_hand(platform, version):
    """Move prod's pointer to ``version`` by hand (bob, no controller)."""
    manifest = Registry(platform).get_manifest(PROJECT, version)
    PointerStore(platform).put(
        PROJECT,
        "prod",
        ModelPointer(
            version=version,
            uri=platform.version_uri(PROJECT, version),
            sha256=manifest.model_sha256,
            promoted_at=now(),
            promoted_by="bob",
            reason="by hand",
        ),
    )


def test_pointer_moved_by_hand_is_flagged(converged, versions, platform, capsys):
    _point_prod_by_hand(platform, versions[0])
    code, out, err = run(capsys, "-o", "wide")
    assert code == 0, err
    prod = table(out)["prod"]
    assert prod["version"] == versions[0]
    assert prod["serving"] == f"{converged} ≠ pointer"
    assert (prod["by"], prod["reason"]) == ("bob", "by hand")
    doc = status_json(capsys)
    by_env = {e["env"]: e for e in doc["envs"]}
    assert by_env["prod"]["drift"] is True
    assert by_env["prod"]["pointer"]["version"] == versions[0]
    assert by_env["prod"]["service"]["version"] == converged


def test_json_has_pointer_and_service_fields(converged, capsys):
    doc = status_json(capsys)
    assert doc["project"] == PROJECT and doc["ecs_error"] is None
    assert [e["env"] for e in doc["envs"]] == ["dev", "staging", "prod"]
    dev, _, prod = doc["envs"]
    assert (dev["pointer"], dev["service"], dev["drift"]) == (None, None, False)
    assert prod["pointer"]["version"] == converged
    assert prod["published"] is True and prod["r2"] == pytest.approx(0.9)
    assert prod["metric"]["name"] == "r2" and prod["metric"]["value"] == prod["r2"]
    assert prod["drift"] is False
    service = prod["service"]
    assert service["name"] == f"{PROJECT}-prod" and service["status"] == "ACTIVE"
    assert service["revision"] == f"{PROJECT}-prod:1"
    assert service["task_definition"].endswith(f":task-definition/{PROJECT}-prod:1")
    assert service["version"] == converged
    deployment = service["deployment"]
    assert deployment["rollout_state"] == "IN_PROGRESS"
    assert (deployment["running"], deployment["desired"]) == (0, REPLICAS)


def test_unreadable_ecs_still_shows_the_pointers(versions, monkeypatch, capsys):
    """Someone who may read the pointers but not ECS still gets them, with a warning.
    (boto3 retries the refused connection a few times first: one run only.)"""
    assert main(["promote", versions[0], "--env", "prod", "--project", PROJECT]) == 0
    capsys.readouterr()
    monkeypatch.setenv("AWS_ENDPOINT_URL_ECS", "http://127.0.0.1:9")  # nothing listens
    code, out, err = run(capsys, "-o", "wide")
    assert code == 0, err
    assert "cannot read the ECS services" in err and "pointers only" in err
    prod = table(out)["prod"]
    assert prod["version"] == versions[0]
    assert [prod[c] for c in ECS_COLUMNS] == ["?"] * 4


def test_endpoint_is_the_load_balancers_url(versions, network_env, platform, capsys):
    """On AWS the load balancer's DNS name; where the local data plane serves the listener
    (its loopback URL in the listener's tag) that URL. No load balancer: none."""
    from controller import loadbalancing
    from mlops_core.naming import LOCAL_ENDPOINT_TAG

    loadbalancing.ensure(
        platform,
        PROJECT,
        "prod",
        port=8080,
        subnets=tuple(network_env["MLOPS_SUBNETS"].split(",")),
        security_groups=(network_env["MLOPS_SECURITY_GROUPS"],),
    )
    elb = aws.client("elbv2")
    lb = elb.describe_load_balancers(Names=[platform.load_balancer(PROJECT, "prod")])
    dns = lb["LoadBalancers"][0]["DNSName"]
    by_env = {e["env"]: e for e in status_json(capsys)["envs"]}
    assert by_env["prod"]["endpoint"] == f"http://{dns}"
    assert by_env["staging"]["endpoint"] is None
    (listener,) = elb.describe_listeners(LoadBalancerArn=lb["LoadBalancers"][0]["LoadBalancerArn"])[
        "Listeners"
    ]
    elb.add_tags(
        ResourceArns=[listener["ListenerArn"]],
        Tags=[{"Key": LOCAL_ENDPOINT_TAG, "Value": "http://127.0.0.1:41234"}],
    )
    code, out, err = run(capsys)
    assert code == 0, err
    rows = table(out)
    assert rows["prod"]["endpoint"] == "http://127.0.0.1:41234"
    assert rows["dev"]["endpoint"] == "-"


def test_the_table_fits_100_columns_and_wide_and_yaml_show_more(converged, capsys, monkeypatch):
    import yaml

    from mlopsctl import context

    monkeypatch.setattr(context.console, "width", 100)
    code, out, _ = run(capsys)
    assert code == 0
    assert max(len(line) for line in out.splitlines()) <= 100, out
    assert "reason" not in out
    assert table(out)["prod"]["version"] == converged, "the id whole, on one line"
    assert table(out)["prod"]["serving"] == "= version"
    monkeypatch.setattr(context.console, "width", 200)
    code, out, _ = run(capsys, "-o", "wide")
    assert code == 0 and "reason" in out and "service" in out
    code, out, _ = run(capsys, "-o", "yaml")
    doc = yaml.safe_load(out)
    assert doc["project"] == PROJECT and {e["env"] for e in doc["envs"]} >= {"prod"}


def test_at_100_columns_on_a_terminal_both_version_ids_stay_whole(
    converged, versions, platform, capsys, monkeypatch
):
    """A pointer moved by hand: the version and the one the service serves are both shown,
    each on one line (users copy them into approve/deploy --version), as a real
    100-column terminal renders them."""
    from rich.console import Console

    from mlopsctl import cmd_models

    _point_prod_by_hand(platform, versions[0])
    terminal = Console(width=100, force_terminal=True, color_system=None, highlight=False)
    monkeypatch.setattr(cmd_models, "console", terminal)
    code, out, err = run(capsys)
    assert code == 0, err
    assert max(len(line) for line in out.splitlines()) <= 100, out
    prod = table(out)["prod"]
    assert prod["version"] == versions[0]
    assert prod["serving"] == f"≠ {converged}"
    assert prod["tasks"] == f"0/{REPLICAS}"


def test_piped_output_honours_columns_and_is_wide_without_it(monkeypatch):
    from mlopsctl.context import _console

    monkeypatch.setenv("COLUMNS", "100")
    assert _console().width == 100
    monkeypatch.delenv("COLUMNS")
    assert _console().width == 200, "scripts that read the table get it whole"


@pytest.mark.parametrize("columns", ["0", "00", "-5", "abc", " "])
def test_a_columns_of_zero_or_garbage_is_ignored_not_an_empty_output(monkeypatch, columns):
    """COLUMNS=0: Rich took it as a width of 0 and printed nothing at all (status,
    models, controller --once tables: empty output, rc 0). Ignored, as garbage is."""
    from rich.table import Table

    from mlopsctl.context import _console

    monkeypatch.setenv("COLUMNS", columns)
    c = _console()
    assert c.width == 200
    with c.capture() as captured:
        c.print(Table("env", "version"))
    assert "version" in captured.get()


def test_the_newest_drift_check_of_the_live_version_is_shown(converged, platform, capsys):
    from drift_data import drift_result_for

    from mlops_core import drift_result

    code, out, _ = run(capsys)
    assert code == 0 and "Drifted=" not in out  # never checked: nothing to say
    assert status_json(capsys)["envs"][2]["drifted"] is None
    drift_result.write(
        platform, drift_result_for(PROJECT, "prod", converged, ["mileage"]), "<html></html>"
    )
    code, out, _ = run(capsys)
    assert code == 0
    line = next(line for line in out.splitlines() if line.startswith("prod: Drifted="))
    assert "Drifted=True (Drifted)" in line and "(mileage)" in line and "report.html" in line
    prod = status_json(capsys)["envs"][2]
    assert prod["drifted"]["status"] == "True"
    assert prod["drifted"]["report"].startswith(f"s3://{platform.artifact_bucket}/")


def test_the_controller_once_table_keeps_key_and_version_whole_at_80_columns():
    from rich.console import Console

    from controller.api import ModelDeploymentStatus
    from controller.runtime import Outcome
    from mlopsctl.cmd_controller import outcome_table

    version = "20261128T064500Z-3f9a2c1"
    status = ModelDeploymentStatus(current_version=version)
    outcome = Outcome("usedcar-price-prod", "default/usedcar-price-prod", 1, status)
    terminal = Console(width=80, force_terminal=True, color_system=None)
    with terminal.capture() as got:
        terminal.print(outcome_table([outcome] * 2))
    assert "default/usedcar-price-prod" in got.get() and version in got.get(), got.get()
