"""`mlopsctl approve` and `reject` refuse, before any AWS call, what no rollout could act on."""

from __future__ import annotations

import pytest
from factories import project_config

from controller.api import ModelDeployment
from controller.sources.directory import DirectorySource
from mlops_core.registry import Registry
from mlopsctl.cli import main

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlops/serving:0.1.0"
NAME = "usedcar-price-prod"


def _source(tmp_path, **spec) -> str:
    source = DirectorySource(tmp_path / "deployments", create=True)
    source.put_manifest(
        ModelDeployment.model_validate(
            {
                "metadata": {"name": NAME},
                "spec": {
                    "project": "usedcar-price",
                    "env": "prod",
                    "model": {"version": "20260101T000000Z-aaaaaaa"},
                    "serving": {"image": IMAGE},
                    **spec,
                },
            }
        )
    )
    return str(source.path)


@pytest.mark.parametrize("decision", ["approve", "reject"])
def test_a_reason_longer_than_a_record_keeps_is_refused(platform, tmp_path, capsys, decision):
    source = _source(tmp_path, strategy={"type": "Canary"}, approval={"required": True})
    code = main([decision, NAME, "--reason", "x" * 501, "--source", source])
    out = capsys.readouterr()
    assert code == 2, out
    assert "more than the 500" in out.err + out.out
    assert "Traceback" not in out.err


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ({}, "its strategy is Rolling"),
        ({"strategy": {"type": "Canary"}}, "approval_required"),
        ({"strategy": {"type": "Canary"}, "approval": {"required": False}}, "approval_required"),
    ],
)
def test_a_deployment_that_needs_no_approval_is_refused(platform, tmp_path, capsys, spec, why):
    Registry(platform).register_project(project_config())
    code = main(["approve", NAME, "--reason", "ok", "--source", _source(tmp_path, **spec)])
    out = capsys.readouterr()
    assert code == 4, out
    text = out.err + out.out
    assert "needs no approval" in text and why in text, text


@pytest.mark.parametrize("by_project", [False, True])
def test_a_rollout_that_needs_approval_but_has_no_service_says_so(
    platform, tmp_path, capsys, by_project
):
    config = project_config()
    if by_project:  # project.yaml's approval_required: [prod], no spec.approval
        config = config.model_copy(update={"approval_required": ["prod"]})
    Registry(platform).register_project(config)
    spec = {"strategy": {"type": "Canary"}}
    if not by_project:
        spec["approval"] = {"required": True}
    code = main(["approve", NAME, "--reason", "ok", "--source", _source(tmp_path, **spec)])
    out = capsys.readouterr()
    assert code == 3, out
    assert "has no rollout in progress" in out.err + out.out
