"""The CI workflow `mlopsctl init` scaffolds names only commands and options that exist:
every `mlopsctl ...` it runs is parsed by the real CLI's click command tree."""

from __future__ import annotations

import re
import shlex

import pytest
import typer
import yaml

# Typer 0.29 carries its own copy of click: its command tree and errors are these.
from typer._click import Command
from typer._click.exceptions import MissingParameter, NoSuchOption
from typer.core import TyperGroup

from mlopsctl.cli import app, main
from mlopsctl.cmd_project import WORKFLOW

# A GitHub expression or a shell variable stands for a value of the right shape.
VALUE = "20261128T064500Z-3f9a2c1"


def _mlopsctl_lines(script: str) -> list[list[str]]:
    """Each `mlopsctl` invocation of a run: script, as its argument list."""
    script = re.sub(r"\$\{\{[^}]*\}\}", VALUE, script)
    script = re.sub(r"\$\{?[A-Z_]+\}?", "prod", script)
    out = []
    for inner in re.findall(r"\$\((mlopsctl[^)]*)\)", script):
        out.append(shlex.split(inner)[1:])
    script = re.sub(r"\$\(mlopsctl[^)]*\)", VALUE, script)
    for line in script.splitlines():
        words = shlex.split(line, comments=True)
        if words and words[0] == "mlopsctl":
            out.append(words[1:])
    return out


def _parse(argv: list[str]) -> Command:
    """Resolve the sub-command and parse its arguments as the CLI would (nothing runs):
    an unknown command or option, a missing required one, or a bad value raises."""
    command: Command = typer.main.get_command(app)
    ctx = command.make_context("mlopsctl", [], resilient_parsing=True)
    args = list(argv)
    assert isinstance(command, TyperGroup)
    while isinstance(command, TyperGroup):
        name = args.pop(0)
        sub = command.get_command(ctx, name)
        assert sub is not None, f"no command {name!r} in mlopsctl {' '.join(argv)}"
        command = sub
    command.make_context(command.name or "", args)
    return command


@pytest.fixture
def workflow(tmp_path, capsys) -> dict:
    code = main(["init", "ci-proj", "--dir", str(tmp_path / "p"), "--rows", "300"])
    assert code == 0, capsys.readouterr()
    path = tmp_path / "p" / WORKFLOW
    assert path.is_file()
    text = path.read_text()
    assert "{{ name }}" not in text and "ci-proj" in text
    return yaml.safe_load(text)


def test_the_workflow_trains_checks_publishes_and_deploys(workflow):
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads `on` as True
    assert set(triggers) == {"pull_request", "push"}
    assert triggers["push"]["branches"] == ["main"]
    runs = {
        job: [
            args for step in spec["steps"] if "run" in step for args in _mlopsctl_lines(step["run"])
        ]
        for job, spec in workflow["jobs"].items()
    }
    commands = {job: [" ".join(a[:2]) if a[0] == "gates" else a[0] for a in r]
                for job, r in runs.items()}  # fmt: skip
    assert commands["check"] == ["train", "gates check"]
    assert commands["release"] == ["train", "gates check", "publish", "deploy"]
    assert "pull_request" in workflow["jobs"]["check"]["if"]
    assert "push" in workflow["jobs"]["release"]["if"]


def test_every_mlopsctl_line_parses_with_the_real_cli(workflow):
    lines = [
        args
        for spec in workflow["jobs"].values()
        for step in spec["steps"]
        if "run" in step
        for args in _mlopsctl_lines(step["run"])
    ]
    assert len(lines) == 6
    for argv in lines:
        _parse(argv)


def test_the_parser_check_would_catch_a_flag_that_does_not_exist():
    with pytest.raises(NoSuchOption):
        _parse(["deploy", "--env", "prod", "--newest"])
    with pytest.raises(MissingParameter):
        _parse(["gates", "check", "--artifacts", "artifacts"])  # --env is required
    with pytest.raises(AssertionError, match="no command"):
        _parse(["gates", "verify"])
