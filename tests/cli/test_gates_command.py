"""`mlopsctl gates check`: the one gate verdict, for pipelines (exit 0 pass, 6 fail)."""

from __future__ import annotations

import json

import pytest
from factories import make_artifacts, project_config

from mlops_core.promotion import promote
from mlops_core.registry import Registry
from mlopsctl.cli import main

PROJECT = "usedcar-price"


@pytest.fixture
def live(platform, tmp_path):
    """prod has run R² 0.60, then 0.82 (gates: min_r2 0.5, max_regression 0.05)."""
    registry = Registry(platform)
    registry.register_project(project_config(min_r2=0.5, max_regression=0.05))
    out = {}
    for seed, r2 in [(1, 0.60), (2, 0.82), (3, 0.40)]:
        make_artifacts(tmp_path / str(seed), seed=seed, r2=r2)
        out[r2] = registry.publish(tmp_path / str(seed)).version
    promote(PROJECT, "prod", out[0.60], registry=registry)
    promote(PROJECT, "prod", out[0.82], registry=registry)
    return out


def _check(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["gates", "check", "--project", PROJECT, "--env", "prod", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _gates(doc: dict) -> dict[str, dict]:
    return {g["name"]: g for g in doc["gates"]}


def test_an_unpublished_folder_that_regresses_fails_with_exit_6(live, tmp_path, capsys):
    folder = tmp_path / "new"
    manifest = make_artifacts(folder, seed=9, r2=0.70)
    code, out, err = _check(capsys, "--artifacts", str(folder), "-o", "json")
    assert code == 6, out + err
    doc = json.loads(out)
    assert doc["version"] == manifest.version and doc["verdict"] == "FAIL"
    assert doc["current"] == live[0.82] and doc["rollback"] is None
    gates = _gates(doc)
    assert gates["max_regression"]["verdict"] == "FAIL"
    assert gates["max_regression"]["value"] == 0.70
    assert gates["max_regression"]["threshold"] == pytest.approx(0.77)
    assert (gates["min_r2"]["verdict"], gates["min_r2"]["threshold"]) == ("PASS", 0.5)
    assert "max_regression" in err and "error:" in err


def test_a_version_live_before_passes_with_regression_skipped(live, capsys):
    code, out, err = _check(capsys, live[0.60], "-o", "json")
    assert code == 0, out + err
    doc = json.loads(out)
    assert doc["verdict"] == "PASS" and doc["rollback"] == {"promotion_log_entry": 1}
    assert _gates(doc)["max_regression"]["verdict"] == "SKIP"
    code, out, err = _check(capsys, live[0.60])
    assert code == 0 and "SKIP" in out and "passes the gates" in out, out + err


def test_absolute_gates_fail_a_rollback_too_and_bad_input_is_exit_2(live, tmp_path, capsys):
    code, out, err = _check(capsys, live[0.40])
    assert code == 6 and "FAIL" in out and "min_r2" in err, out + err
    code, _, err = _check(capsys)
    assert code == 2 and "--artifacts" in err
    code = main(["gates", "check", "--project", PROJECT, "--env", "qa", live[0.82]])
    assert code == 2 and "unknown env 'qa'" in capsys.readouterr().err
    code, _, err = _check(capsys, "20990101T000000Z-0000000")
    assert code == 3 and "not published" in err


def test_a_project_before_its_first_publish_is_judged_by_its_project_yaml(
    platform, tmp_path, capsys
):
    import yaml

    project = tmp_path / "fresh"
    project.mkdir()
    config = project_config("fresh-proj", min_r2=0.9)
    (project / "project.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json")))
    make_artifacts(project / "artifacts", project="fresh-proj", r2=0.8)
    argv = ["gates", "check", "--project-dir", str(project), "--env", "prod"]
    code = main([*argv, "--artifacts", str(project / "artifacts")])
    out, err = capsys.readouterr()
    assert code == 6 and "not registered yet" in err and "min_r2" in err, out + err
    # Another project's name is not judged by this folder's project.yaml.
    code = main(["gates", "check", "--project", "other", "--env", "prod", "--artifacts", "x"])
    assert code == 3, capsys.readouterr()
