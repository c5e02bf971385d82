"""``mlopsctl publish`` and ``mlopsctl policy show | set | history`` through the console
script's own entry point, against moto's server over HTTP: the registration changes only
through ``policy set``, which records who and why, and promotions record what judged them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from configured import env_platform
from factories import make_artifacts, project_config

from mlops_core.pointer import PointerStore
from mlops_core.project import ProjectConfig
from mlops_core.registry import Registry
from mlopsctl.cli import main

PROJECT = "usedcar-price"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write_yaml(folder: Path, config: ProjectConfig) -> None:
    (folder / "project.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json")))


@pytest.fixture
def project(tmp_path, aws_env, monkeypatch) -> Path:
    """A project folder with a project.yaml (min_r2 0.6) and a trained artifacts folder."""
    folder = tmp_path / "p"
    folder.mkdir()
    write_yaml(folder, project_config(min_r2=0.6, max_regression=0.05))
    make_artifacts(folder / "artifacts", seed=1, r2=0.7)
    monkeypatch.chdir(folder)
    monkeypatch.setenv("MLOPS_ACTOR", "alice")
    return folder


def show(capsys) -> dict:
    code, out, err = run(capsys, "policy", "show", "-o", "json")
    assert code == 0, err
    return json.loads(out)


def test_publish_registers_once_then_only_reports_a_difference(project, capsys, tmp_path):
    code, out, err = run(capsys, "publish")
    assert code == 0, err
    assert "registration revision 1" in out and err == ""
    assert show(capsys)["revision"] == 1

    # Loosened gates in project.yaml, then another version: published, policy unchanged.
    write_yaml(project, project_config(min_r2=0.0, max_regression=1.0))
    make_artifacts(tmp_path / "second", seed=2, r2=0.3)
    code, out, err = run(capsys, "publish", "--artifacts", str(tmp_path / "second"))
    assert code == 0, err
    note = [line for line in err.splitlines() if line.strip()]
    assert len(note) == 1 and "mlopsctl policy set" in note[0] and "revision 1" in note[0]
    doc = show(capsys)
    assert doc["revision"] == 1 and doc["config"]["gates"]["min_r2"] == 0.6

    # Refused (already published): exit 4, and still revision 1.
    code, _, err = run(capsys, "publish", "--artifacts", str(tmp_path / "second"))
    assert code == 4 and "already published" in err
    assert show(capsys)["revision"] == 1


def test_policy_set_dry_run_set_and_history(project, capsys, monkeypatch):
    assert run(capsys, "publish")[0] == 0
    write_yaml(project, project_config(min_r2=0.3, max_regression=0.05))

    code, out, err = run(capsys, "policy", "set")
    assert code == 2 and "--reason" in err
    assert show(capsys)["revision"] == 1

    code, out, err = run(capsys, "policy", "set", "--reason", "try", "--dry-run")
    assert code == 0, err
    assert "prod: min_r2 0.6 -> 0.3" in out and "nothing written" in out
    assert show(capsys)["revision"] == 1

    monkeypatch.setenv("MLOPS_ACTOR", "bob")
    code, out, err = run(capsys, "policy", "set", "--reason", "dev data is noisier")
    assert code == 0, err
    assert "prod: min_r2 0.6 -> 0.3" in out and "revision 2" in out
    doc = show(capsys)
    assert (doc["revision"], doc["previous"], doc["author"], doc["reason"]) == (
        2,
        1,
        "bob",
        "dev data is noisier",
    )
    assert doc["config"]["gates"]["min_r2"] == 0.3

    code, out, err = run(capsys, "policy", "set", "--reason", "again")
    assert code == 0 and "nothing written" in out
    assert show(capsys)["revision"] == 2

    code, out, err = run(capsys, "policy", "history", "-o", "json")
    assert code == 0, err
    revisions = json.loads(out)["revisions"]
    assert [(r["revision"], r["author"]) for r in revisions] == [(2, "bob"), (1, "alice")]
    code, out, err = run(capsys, "policy", "history")
    assert code == 0, err
    rows = [line for line in out.splitlines() if "dev data is noisier" in line or "alice" in line]
    assert len(rows) == 2 and "dev data is noisier" in rows[0]
    assert "min_r2 0.6 -> 0.3" in rows[0]

    code, out, err = run(capsys, "policy", "show")
    assert code == 0 and "revision 2" in out and "bob" in out


def test_policy_commands_on_an_unknown_project(aws_env, capsys):
    for sub in ("show", "history"):
        code, _, err = run(capsys, "policy", sub, "--project", "nope-proj")
        assert code == 3 and "unknown project" in err


def test_a_promotions_pointer_records_the_gates_and_revision(project, capsys, tmp_path):
    assert run(capsys, "publish", "-q")[0] == 0
    first = Registry(env_platform()).list_versions(PROJECT)[0].version
    code, _, err = run(capsys, "promote", first, "--env", "prod")
    assert code == 0, err
    pointer = PointerStore(env_platform()).get(PROJECT, "prod")
    assert pointer.policy_revision == 1
    assert pointer.gates is not None and pointer.gates["min_r2"] == 0.6

    # Revision 2 lowers min_r2: a version it lets through records revision 2's gates.
    write_yaml(project, project_config(min_r2=0.2, max_regression=1.0))
    assert run(capsys, "policy", "set", "--reason", "accept weaker models")[0] == 0
    make_artifacts(tmp_path / "second", seed=2, r2=0.3)
    assert run(capsys, "publish", "--artifacts", str(tmp_path / "second"))[0] == 0
    second = Registry(env_platform()).list_versions(PROJECT)[-1].version
    code, _, err = run(capsys, "promote", second, "--env", "prod")
    assert code == 0, err
    pointer = PointerStore(env_platform()).get(PROJECT, "prod")
    assert (pointer.version, pointer.policy_revision) == (second, 2)
    assert pointer.gates is not None
    assert (pointer.gates["min_r2"], pointer.gates["max_regression"]) == (0.2, 1.0)
    # The earlier value keeps what judged it.
    assert PointerStore(env_platform()).history(PROJECT, "prod")[0].gates["min_r2"] == 0.6
