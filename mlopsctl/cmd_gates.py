"""``mlopsctl gates check``: the gates' verdict on a version in an env, for pipelines.

The same check ``promote``, ``deploy`` and the controller apply
(:func:`mlops_core.promotion.judge`, i.e. :func:`mlops_core.gates.check`): the project's
registration in force, against the env's live version, a version live there before
being a rollback (max_regression SKIP). It reads only. Exit 0 when the version may go
live, 6 (GateFailed) when it may not; ``-o json`` lists each gate with its value,
threshold and verdict. ``--artifacts DIR`` judges a trained folder before it is
published (its digests are checked first). A project not registered yet (before its
first publish) is judged by its project.yaml, which that publish registers.

A ModelDeployment's ``spec.gates`` overrides are not read here: the verdict is the one
the registration gives, as ``promote`` judges.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from mlops_core.errors import GateFailed, IntegrityError, InvalidInput, NotFound
from mlops_core.registry import Registry
from mlopsctl import context
from mlopsctl.context import (
    PROJECT_DIR_HELP,
    PROJECT_HELP,
    Output,
    console,
    err,
    output_option,
    print_document,
    project_config,
    project_name,
)

app = typer.Typer(
    help="The promotion gates: check a version against an env's before it goes live.",
    no_args_is_help=True,
)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


@app.command("check")
def check(
    version: str = typer.Argument(
        None, help="A published version (omit with --artifacts: the folder's version)."
    ),
    env: str = typer.Option(..., "--env", "-e", help="Environment, e.g. prod."),
    artifacts: Path = typer.Option(
        None, "--artifacts", help="A trained artifacts folder, not yet published."
    ),
    project: str = typer.Option(None, "--project", "-p", help=PROJECT_HELP),
    project_dir_: Path = typer.Option(None, "--project-dir", help=PROJECT_DIR_HELP),
    output: Output = output_option(),
) -> None:
    """Would VERSION pass ENV's gates? Exit 0 if so, 6 if not (reads only)."""
    from mlops_core.artifacts import verify_folder
    from mlops_core.promotion import judge
    from mlops_core.promotion_log import PromotionLog

    if version is None and artifacts is None:
        raise InvalidInput("give a VERSION, or --artifacts DIR for an unpublished folder")
    name = project_name(project, project_dir_)
    registry = Registry(context.platform())
    try:
        config = registry.registration(name).config
    except NotFound:
        # Not registered yet (its first publish registers it): judged by project.yaml,
        # which that publish will register.
        local = project_config(project_dir_) if project is None else None
        if local is None or local.name != name:
            raise
        err.print(f"note: {name} is not registered yet; judged by its project.yaml")
        config = local
    config.check_env(env)
    if artifacts is not None:
        if not artifacts.is_dir():
            raise NotFound(f"no artifacts folder {artifacts}", hint="mlopsctl train")
        manifest = verify_folder(artifacts)
        if version is not None and version != manifest.version:
            raise InvalidInput(
                f"{artifacts} holds version {manifest.version}, not {version}",
                hint="omit VERSION with --artifacts",
            )
        if manifest.project != name:
            raise InvalidInput(
                f"{artifacts} holds a model of project {manifest.project!r}, not {name!r}"
            )
    else:
        manifest = registry.get_manifest(name, version)
    log = PromotionLog(registry.platform)
    head = log.latest(name, env)
    current = None
    if head is not None:
        try:
            current = registry.get_manifest(name, head.version)
        except (NotFound, IntegrityError):
            current = None  # judged as a first promotion, as promote would
    report = judge(registry, log, name, env, manifest, head, current, gates=config.gates)
    doc = {"project": name, **report.to_dict(), "passed": report.passed}
    if not print_document(doc, output):
        table = Table("gate", "verdict", "value", "threshold", "detail", title=f"{name}/{env}")
        colours = {"PASS": "green", "FAIL": "bold red", "SKIP": "yellow"}
        for r in report.results:
            table.add_row(
                r.name,
                f"[{colours[r.verdict]}]{r.verdict}[/]",
                _number(r.value),
                _number(r.threshold),
                escape(r.detail),
            )
        console.print(table)
        live = f" (live: {report.current})" if report.current else ""
        console.print(
            f"{manifest.version} {'passes' if report.passed else 'fails'} "
            f"the gates of {name}/{env}{live}"
        )
    if not report.passed:
        raise GateFailed(
            report.summary(),
            where=f"{name}/{env}",
            hint="train a better model, or change the gates ('mlopsctl policy set')",
        )
