"""``mlopsctl publish | models | promote | rollback | status``: the registry and pointer."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from mlops_core.errors import NotFound
from mlops_core.gates import metric
from mlops_core.pointer import PointerStore
from mlops_core.project import ARTIFACTS_DIR
from mlops_core.registry import Registry
from mlopsctl.context import PROJECT_DIR_HELP, PROJECT_HELP, console, project_dir, project_name

ENV_OPTION = typer.Option(..., "--env", "-e", help="Environment, e.g. prod.")


def _r2(metrics: dict) -> str:
    value = metric(metrics, "r2")
    return "-" if value is None else f"{value:.4f}"


def publish(
    project_dir_: Path = typer.Option(None, "--project-dir", help=PROJECT_DIR_HELP),
    artifacts: Path = typer.Option(
        None, help="Artifacts folder to publish (default: PROJECT/artifacts)."
    ),
) -> None:
    """Publish the trained artifacts as an immutable, digest-verified version in S3."""
    from mlops_core.project import load_project

    pdir = project_dir(project_dir_)
    config = load_project(pdir)
    folder = artifacts or pdir / ARTIFACTS_DIR
    registry = Registry()
    registry.register_project(config)
    result = registry.publish(folder)
    console.print(f"published [bold]{result.project}[/] version [bold]{result.version}[/]")
    console.print(f"  {result.uri}")


def models(
    project: str = typer.Option(None, "--project", "-p", help=PROJECT_HELP),
    project_dir_: Path = typer.Option(None, "--project-dir", help=PROJECT_DIR_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only version ids, oldest first."),
) -> None:
    """List a project's published versions with their metrics."""
    name = project_name(project, project_dir_)
    registry = Registry()
    if quiet:
        registry.get_project(name)
        for m in registry.list_versions(name):
            typer.echo(m.version)
        return
    store = PointerStore(registry.platform)
    config = registry.get_project(name)
    live = {}
    for env in config.envs:
        pointer = store.get(name, env)
        if pointer:
            live.setdefault(pointer.version, []).append(env)
    table = Table("version", "created", "R²", "baseline R²", "MAE", "rows", "size", "live in")
    for m in registry.list_versions(name):
        mae = metric(m.metrics, "mae")
        table.add_row(
            m.version,
            f"{m.created_at:%Y-%m-%d %H:%M}",
            _r2(m.metrics),
            f"{metric(m.metrics, 'r2', of='baseline') or 0:.4f}",
            "-" if mae is None else f"{mae:,.1f}",
            f"{m.data.rows:,}",
            f"{m.files[m.model_file].size / 1e6:.1f} MB",
            ", ".join(live.get(m.version, [])),
        )
    console.print(table)


def promote(
    version: str = typer.Argument(..., help="A published version (see 'mlopsctl models')."),
    env: str = ENV_OPTION,
    project: str = typer.Option(None, "--project", "-p", help=PROJECT_HELP),
    project_dir_: Path = typer.Option(None, "--project-dir", help=PROJECT_DIR_HELP),
    force: bool = typer.Option(False, help="Promote although gates fail (needs --reason)."),
    reason: str = typer.Option("", help="Why; recorded in the pointer."),
) -> None:
    """Point ENV at VERSION, if the project's quality gates pass."""
    from mlops_core.promotion import promote as do_promote

    name = project_name(project, project_dir_)
    pointer, results = do_promote(name, env, version, reason=reason, force=force)
    for r in results:
        console.print(f"  {r}")
    console.print(f"[bold]{name}/{env}[/] -> {pointer.version} (by {pointer.promoted_by})")


def rollback(
    env: str = ENV_OPTION,
    project: str = typer.Option(None, "--project", "-p", help=PROJECT_HELP),
    project_dir_: Path = typer.Option(None, "--project-dir", help=PROJECT_DIR_HELP),
    reason: str = typer.Option("", help="Why; recorded in the pointer."),
) -> None:
    """Reset ENV's pointer to the version it had before the last promotion."""
    from mlops_core.promotion import rollback as do_rollback

    name = project_name(project, project_dir_)
    before, after = do_rollback(name, env, reason=reason)
    console.print(f"[bold]{name}/{env}[/] rolled back: {before.version} -> {after.version}")


def status(
    project: str = typer.Option(None, "--project", "-p", help=PROJECT_HELP),
    project_dir_: Path = typer.Option(None, "--project-dir", help=PROJECT_DIR_HELP),
) -> None:
    """Each env's live version, its metrics, and when and by whom it was promoted."""
    name = project_name(project, project_dir_)
    registry = Registry()
    config = registry.get_project(name)
    store = PointerStore(registry.platform)
    table = Table("env", "version", "R²", "promoted at", "by", "reason", title=name)
    for env in config.envs:
        pointer = store.get(name, env)
        if pointer is None:
            table.add_row(env, "-", "-", "-", "-", "")
            continue
        try:
            r2 = _r2(registry.get_manifest(name, pointer.version).metrics)
        except NotFound:
            r2 = "(unpublished!)"
        table.add_row(
            env,
            pointer.version,
            r2,
            f"{pointer.promoted_at:%Y-%m-%d %H:%M:%S}",
            pointer.promoted_by,
            pointer.reason,
        )
    console.print(table)
