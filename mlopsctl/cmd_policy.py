"""``mlopsctl policy show | set | history``: the project's registration, versioned.

The registration (envs and the gates that judge promotions) changes only here, never by
publishing: ``policy set`` writes revision N+1 from project.yaml with who and why.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from mlops_core.policy import Registration, diff
from mlops_core.registry import Registry
from mlopsctl import context
from mlopsctl.context import (
    PROJECT_DIR_HELP,
    PROJECT_HELP,
    Output,
    console,
    output_option,
    print_document,
    project_config,
    project_name,
)

app = typer.Typer(
    help="The project's registration: its envs and the gates that judge promotions.",
    no_args_is_help=True,
)


def _when(reg: Registration) -> str:
    return f"{reg.created_at:%Y-%m-%d %H:%M:%S}"


@app.command("show")
def show(
    project: str = typer.Option(None, "--project", "-p", help=PROJECT_HELP),
    project_dir_: Path = typer.Option(None, "--project-dir", help=PROJECT_DIR_HELP),
    output: Output = output_option(),
) -> None:
    """The registration in force: its revision, who wrote it and why, envs and gates."""
    name = project_name(project, project_dir_)
    reg = Registry(context.platform()).registration(name)
    if print_document(reg.model_dump(mode="json"), output):
        return
    console.print(
        f"[bold]{name}[/] registration revision {reg.revision}, "
        f"by {escape(reg.author)} at {_when(reg)}: {escape(reg.reason)}"
    )
    console.print(f"envs: {', '.join(reg.config.envs)} (the gates apply to every env)")
    table = Table("gate", "value")
    for gate, value in reg.config.gates.model_dump(mode="json").items():
        table.add_row(gate, "-" if value is None else str(value))
    console.print(table)


@app.command("set")
def set_(
    reason: str = typer.Option(..., "--reason", help="Why the envs or gates change (recorded)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the change, write nothing."),
    project_dir_: Path = typer.Option(None, "--project-dir", help=PROJECT_DIR_HELP),
) -> None:
    """Make project.yaml's envs and gates the registration in force (revision N+1)."""
    reason = context.check_reason(reason)
    config = project_config(project_dir_)
    change = Registry(context.platform()).policy.set(config, reason=reason, dry_run=dry_run)
    head = change.head
    if not change.changed:
        assert head is not None
        console.print(
            f"{config.name}: project.yaml matches registration revision {head.revision}; "
            "nothing written"
        )
        return
    for line in change.lines:
        console.print(f"  {escape(line)}")
    if change.written is None:
        after = 1 if head is None else head.revision + 1
        console.print(f"dry run: would write registration revision {after}; nothing written")
        return
    new = change.written
    console.print(
        f"[bold]{config.name}[/] registration revision {new.revision} "
        f"(was {'none' if new.previous is None else new.previous}), "
        f"by {escape(new.author)}: {escape(new.reason)}"
    )


@app.command("history")
def history(
    project: str = typer.Option(None, "--project", "-p", help=PROJECT_HELP),
    project_dir_: Path = typer.Option(None, "--project-dir", help=PROJECT_DIR_HELP),
    output: Output = output_option(),
) -> None:
    """Every registration revision, newest first, with who, why and what changed."""
    name = project_name(project, project_dir_)
    registry = Registry(context.platform())
    registry.registration(name)  # NotFound, with its hint, for an unknown project
    revisions = registry.policy.history(name)
    if print_document(
        {"project": name, "revisions": [r.model_dump(mode="json") for r in revisions]}, output
    ):
        return
    table = Table("revision", "created", "by", "reason", "changes", title=name)
    for reg, older in zip(revisions, [*revisions[1:], None], strict=True):
        # The first revision changes nothing: it names what it registered.
        changes = (
            diff(older.config, reg.config)
            if older is not None
            else [f"registered envs {', '.join(reg.config.envs)}"]
        )
        table.add_row(
            str(reg.revision),
            _when(reg),
            escape(reg.author),
            escape(reg.reason),
            escape("; ".join(changes) or "-"),
        )
    console.print(table)
