"""mlopsctl end to end against moto's server: the golden path and its bad inputs.

Commands run in-process through ``mlopsctl.cli.main`` (the console script's own entry),
so exit codes and messages are exactly what a user sees; AWS calls go over HTTP.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from configured import env_platform
from factories import make_artifacts

from mlops_core import aws
from mlops_core.artifacts import MANIFEST, MODEL_FILE
from mlops_core.pointer import PointerStore
from mlops_core.registry import Registry
from mlopsctl.cli import main

ROOT = Path(__file__).resolve().parents[2]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def project(tmp_path, capsys) -> Path:
    """A fresh project scaffolded by `mlopsctl init`, with small, fast settings."""
    code, out, err = run(capsys, "init", "demo-proj", "--dir", str(tmp_path / "p"), "--rows", "600")
    assert code == 0, err
    cfg = tmp_path / "p" / "project.yaml"
    text = cfg.read_text().replace("n_estimators: 100", "n_estimators: 10")
    cfg.write_text(text.replace("min_r2: 0.7", "min_r2: 0.3"))
    return tmp_path / "p"


def test_init_scaffolds_a_trainable_project(project):
    assert {p.name for p in project.iterdir()} >= {"project.yaml", "Makefile", "data"}
    assert "name: demo-proj" in (project / "project.yaml").read_text()
    assert "train-local" in (project / "Makefile").read_text()
    assert (project / "data" / "usedcars.csv").stat().st_size > 1000


def test_init_never_overwrites(project, capsys):
    before = (project / "project.yaml").read_text()
    code, _, err = run(capsys, "init", "demo-proj", "--dir", str(project))
    assert code == 2 and "not empty" in err
    assert (project / "project.yaml").read_text() == before


def test_golden_path(project, aws_env, capsys, monkeypatch):
    monkeypatch.chdir(project)
    monkeypatch.setenv("MLOPS_ACTOR", "alice")
    code, out, err = run(capsys, "train")
    assert code == 0, err
    assert json.loads((project / "artifacts" / MANIFEST).read_text())["project"] == "demo-proj"
    code, out, err = run(capsys, "publish")
    assert code == 0, err
    code, out, _ = run(capsys, "models", "-q")
    (v1,) = out.split()
    code, out, err = run(capsys, "promote", v1, "--env", "prod")
    assert code == 0, err
    assert PointerStore(env_platform()).get("demo-proj", "prod").promoted_by == "alice"

    # A second version, from other data, then back.
    shutil.copy(project / "data" / "usedcars.csv", project / "more.csv")
    with (project / "more.csv").open("a") as f:
        f.writelines((project / "data" / "usedcars.csv").read_text().splitlines(True)[1:200])
    assert run(capsys, "train", "--data", str(project / "more.csv"))[0] == 0
    assert run(capsys, "publish")[0] == 0
    listed = run(capsys, "models", "-q")[1].split()
    assert len(listed) == 2 and listed[0] == v1  # oldest first, even within one second
    v2 = listed[1]
    code, out, err = run(capsys, "promote", v2, "--env", "prod", "--force", "--reason", "test")
    assert code == 0, err
    code, out, err = run(capsys, "rollback", "--env", "prod")
    assert code == 0 and f"{v2} -> {v1}" in out
    code, out, _ = run(capsys, "status", "-o", "wide")
    assert code == 0
    prod = next(line for line in out.splitlines() if "prod" in line)
    assert v1 in prod and "alice" in prod
    code, out, _ = run(capsys, "models")
    assert v1 in out and v2 in out


def test_malformed_project_yaml_names_field_and_line(project, aws_env, capsys, monkeypatch):
    monkeypatch.chdir(project)
    cfg = project / "project.yaml"
    cfg.write_text(cfg.read_text().replace("test_size: 0.2", "test_size: lots"))
    line = next(i for i, t in enumerate(cfg.read_text().splitlines(), 1) if "test_size" in t)
    code, _, err = run(capsys, "train")
    assert code == 2
    assert f"project.yaml:{line}: evaluation.test_size" in err
    assert not (project / "artifacts").exists()


def test_publish_bad_inputs_change_nothing(project, aws_env, platform, capsys, monkeypatch):
    monkeypatch.chdir(project)
    assert run(capsys, "train")[0] == 0
    assert run(capsys, "publish")[0] == 0
    # Publishing the same version again: refused, exit 4.
    code, _, err = run(capsys, "publish")
    assert code == 4 and "already published" in err
    # A model whose digest does not match its manifest: refused before any upload.
    other = make_artifacts(project / "tampered", project="demo-proj", seed=9)
    (project / "tampered" / MODEL_FILE).write_bytes(b"tampered")
    code, _, err = run(capsys, "publish", "--artifacts", str(project / "tampered"))
    assert code == 5 and "model.pkl" in err
    prefix = platform.version_prefix("demo-proj", other.version)
    listed = aws.client("s3").list_objects_v2(Bucket=platform.artifact_bucket, Prefix=prefix)
    assert listed.get("KeyCount", 0) == 0


def test_promote_and_status_bad_inputs(project, aws_env, capsys, monkeypatch):
    monkeypatch.chdir(project)
    assert run(capsys, "train")[0] == 0
    assert run(capsys, "publish")[0] == 0
    version = Registry(env_platform()).list_versions("demo-proj")[0].version
    cases = [
        (["promote", "20990101T000000Z-0000000", "--env", "prod"], 3, "not published"),
        (["promote", "not-a-version", "--env", "prod"], 2, "malformed model version"),
        (["promote", version, "--env", "qa"], 2, "unknown env 'qa'"),
        (["promote", version, "--env", "prod", "--project", "nope-proj"], 3, "unknown project"),
        (["status", "--project", "nope-proj"], 3, "unknown project"),
        (["rollback", "--env", "prod"], 3, "no model pointer"),
    ]
    for argv, want_code, want in cases:
        code, _, err = run(capsys, *argv)
        assert (code, want in err) == (want_code, True), (argv, code, err)
    assert PointerStore(env_platform()).history("demo-proj", "prod") == []


def test_unreachable_endpoint_is_a_clear_error(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    code, _, err = run(capsys, "status", "--project", "demo-proj")
    assert code == 10 and "cannot reach the AWS endpoint" in err and "dev up" in err


def test_usage_errors_exit_2_without_a_traceback(capsys):
    code, _, err = run(capsys, "promote")
    assert code == 2 and "Missing argument" in err and "Traceback" not in err
    code, _, err = run(capsys, "no-such-command")
    assert code == 2 and "No such command" in err


def test_version_and_help_render_as_designed(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.startswith("mlopsctl 0.")
    code, out, _ = run(capsys, "controller", "run", "--help")
    assert code == 0 and "--once" in out
    code, out, _ = run(capsys, "status", "--help")
    assert "--output" in out and "table|wide|json|yaml" in out
    # Metavars are click's names (TEXT), and a flag takes no value: what Typer >= 0.27
    # renders as <str> and, from 0.29, "--wait <bool>" (pyproject pins below 0.27).
    for command in ("status", "deploy", "promote"):
        code, out, _ = run(capsys, command, "--help")
        assert code == 0 and "<bool>" not in out and "<str>" not in out, out
    assert "TEXT" in out


def test_optional_commands_fail_loudly_on_a_broken_import(monkeypatch):
    """Only a missing optional dependency (kopf) hides controller/deploy; a typo in our
    own module must not silently drop them."""
    import builtins

    from mlopsctl import cli

    real_import = builtins.__import__

    def broken(name, *args, **kwargs):
        if name == "mlopsctl" and args and args[2] and "cmd_controller" in args[2]:
            raise ModuleNotFoundError("No module named 'controller.lunch'", name="controller.lunch")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", broken)
    with pytest.raises(ModuleNotFoundError, match="controller.lunch"):
        cli._mount_optional()

    def no_kopf(name, *args, **kwargs):
        if name == "mlopsctl" and args and args[2] and "cmd_controller" in args[2]:
            raise ModuleNotFoundError("No module named 'kopf'", name="kopf")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_kopf)
    cli._mount_optional()  # dropped quietly: the slim image has no controller


@pytest.mark.parametrize("value", ["maybe", ""])
def test_serve_with_a_bad_capture_setting_is_a_clear_error(capsys, tmp_path, monkeypatch, value):
    """`mlopsctl serve` checks MLOPS_CAPTURE_* before it starts a worker (which would
    end in a traceback), as the container's entry point does."""
    monkeypatch.setenv("MLOPS_CAPTURE_WRITER_PROCESS", value)
    code, out, err = run(capsys, "serve", "--model-dir", str(tmp_path))
    assert code != 0
    assert "MLOPS_CAPTURE_WRITER_PROCESS" in err
    assert "Traceback" not in err + out
