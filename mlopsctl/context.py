"""What a command acts on: the project (by name or from project.yaml) and the console."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
import yaml
from rich.console import Console

from mlops_core.naming import check_project
from mlops_core.project import ProjectConfig, find_project_dir, load_project


def _console(stderr: bool = False) -> Console:
    # Rich wraps tables at 80 columns when not on a terminal; logs and CI want them whole.
    c = Console(stderr=stderr, highlight=False)
    if not c.is_terminal:
        c = Console(stderr=stderr, highlight=False, width=200)
    return c


console = _console()
err = _console(stderr=True)

PROJECT_DIR_HELP = "Project folder (default: the nearest folder with project.yaml)."
PROJECT_HELP = "Project name (default: the name in project.yaml)."


def project_dir(path: Path | None) -> Path:
    return path.resolve() if path else find_project_dir()


def project_config(path: Path | None) -> ProjectConfig:
    return load_project(project_dir(path))


def project_name(name: str | None, path: Path | None) -> str:
    """The project named on the command line, else the one of the current folder."""
    if name:
        return check_project(name)
    return project_config(path).name


class Output(StrEnum):
    """``-o``: how a command that shows state prints it (kubectl's convention)."""

    table = "table"
    wide = "wide"  # the table with every column
    json = "json"
    yaml = "yaml"


OUTPUT_HELP = "Output format: table (default), wide (every column), json or yaml."


def output_option(default: Output = Output.table) -> Any:
    return typer.Option(default, "--output", "-o", help=OUTPUT_HELP, case_sensitive=False)


def print_document(doc: Any, output: Output) -> bool:
    """Print ``doc`` as JSON or YAML if that is what ``output`` asks; False for tables."""
    if output is Output.json:
        typer.echo(json.dumps(doc, indent=2, default=str))
        return True
    if output is Output.yaml:
        typer.echo(
            yaml.safe_dump(json.loads(json.dumps(doc, default=str)), sort_keys=False), nl=False
        )
        return True
    return False
