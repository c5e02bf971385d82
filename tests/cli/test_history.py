"""`mlopsctl history` and a lost promotion race at the CLI (exit 4, the winner named)."""

from __future__ import annotations

import json

import pytest
from configured import env_platform
from factories import make_artifacts, project_config

from mlops_core.pointer import PointerStore
from mlops_core.promotion import pointer_for
from mlops_core.promotion_log import PromotionLog
from mlops_core.registry import Registry
from mlopsctl.cli import main

PROJECT = "usedcar-price"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def artifact_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("history-artifacts")
    for seed in (1, 2, 3):
        make_artifacts(root / f"v{seed}", seed=seed, r2=0.8)
    return [root / f"v{seed}" for seed in (1, 2, 3)]


@pytest.fixture
def versions(platform, artifact_folders) -> list[str]:
    registry = Registry(platform)
    registry.register_project(project_config(PROJECT))
    return [registry.publish(folder).version for folder in artifact_folders]


def test_history_lists_the_log_newest_first(versions, capsys, monkeypatch):
    monkeypatch.setenv("MLOPS_ACTOR", "alice")
    for v in versions[:2]:
        assert run(capsys, "promote", v, "--env", "prod", "-p", PROJECT)[0] == 0
    code, _, err = run(capsys, "rollback", "--env", "prod", "-p", PROJECT, "--reason", "slow")
    assert code == 0, err
    code, out, err = run(capsys, "history", "--env", "prod", "-p", PROJECT, "-o", "json")
    assert code == 0, err
    doc = json.loads(out)
    rows = [(e["seq"], e["version"], e["action"], e["reason"]) for e in doc["entries"]]
    assert rows == [
        (3, versions[0], "rollback", "slow"),
        (2, versions[1], "promote", "promote"),
        (1, versions[0], "promote", "promote"),
    ]
    assert {e["promoted_by"] for e in doc["entries"]} == {"alice"}
    code, out, _ = run(capsys, "history", "--env", "prod", "-p", PROJECT, "-n", "1")
    assert code == 0
    assert versions[0] in out and "rollback" in out and "slow" in out
    assert versions[1] not in out


def test_history_of_an_env_without_promotions_and_of_an_unknown_env(versions, capsys):
    code, out, _ = run(capsys, "history", "--env", "staging", "-p", PROJECT)
    assert code == 0 and "no promotions yet" in out
    code, _, err = run(capsys, "history", "--env", "qa", "-p", PROJECT)
    assert code == 2 and "unknown env 'qa'" in err


def test_a_promotion_that_loses_the_race_exits_4_naming_the_winner(
    versions, platform, capsys, monkeypatch
):
    registry = Registry(platform)
    create = PromotionLog.create

    def another_writer_first(self, project, env, entry):
        # Between this promote's read of the head and its write, bob promotes v3.
        rival = pointer_for(
            registry.get_published(PROJECT, versions[2]), registry, reason="x", actor="bob"
        )
        create(self, project, env, rival.model_copy(update={"seq": entry.seq, "back": None}))
        monkeypatch.setattr(PromotionLog, "create", create)
        return create(self, project, env, entry)

    monkeypatch.setenv("MLOPS_ACTOR", "bob")
    monkeypatch.setattr(PromotionLog, "create", another_writer_first)
    code, _, err = run(capsys, "promote", versions[0], "--env", "prod", "-p", PROJECT)
    assert code == 4
    assert f"promote of {versions[2]} by bob" in err and "entry 1" in err
    assert "nothing was written" in err
    log = PromotionLog(platform)
    assert [e.version for e in log.history(PROJECT, "prod")] == [versions[2]]
    # The winner's SSM put had not happened yet; the next reader repairs it.
    assert PointerStore(platform).get(PROJECT, "prod") is None
    assert log.head(PROJECT, "prod").version == versions[2]
    assert PointerStore(platform).get(PROJECT, "prod").version == versions[2]


def test_promote_and_rollback_of_an_owned_env_exit_4_naming_the_owner(versions, capsys):
    from mlops_core.claims import Claims

    assert run(capsys, "promote", versions[0], "--env", "prod", "-p", PROJECT)[0] == 0
    assert run(capsys, "promote", versions[1], "--env", "prod", "-p", PROJECT)[0] == 0
    Claims(PromotionLog(env_platform()).platform).create(PROJECT, "prod", "ml/usedcar-prod")
    code, _, err = run(capsys, "rollback", "--env", "prod", "-p", PROJECT)
    assert code == 4 and "owned by ModelDeployment ml/usedcar-prod" in err
    assert "Traceback" not in err and "--force --reason" in err
    code, out, _ = run(
        capsys, "rollback", "--env", "prod", "-p", PROJECT, "--force", "--reason", "slow"
    )
    assert code == 0 and versions[0] in out
    code, out, _ = run(capsys, "history", "--env", "prod", "-p", PROJECT, "-o", "json")
    head = json.loads(out)["entries"][0]
    assert head["reason"] == "FORCED past the owner ml/usedcar-prod: slow"
    assert head["owner"] == "ml/usedcar-prod"
