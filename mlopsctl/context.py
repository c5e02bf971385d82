"""What a command acts on: the project (by name or from project.yaml) and the console."""

from __future__ import annotations

import json
import os
import unicodedata
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import click
import typer
import yaml
from rich.console import Console

from mlops_core import durations
from mlops_core.config import PlatformSettings
from mlops_core.errors import InvalidInput
from mlops_core.naming import Platform, check_project
from mlops_core.project import ProjectConfig, find_project_dir, load_project


def _console(stderr: bool = False) -> Console:
    """Rich's console. Piped, Rich would wrap tables at 80 columns: a width given in
    ``COLUMNS`` is honoured (Rich reads it), else 200, so that logs and CI get them whole."""
    # COLUMNS is the terminal's convention, not a platform setting: read as Rich reads it,
    # except COLUMNS=0, with which Rich prints nothing at all (every table, rc 0).
    environ = dict(os.environ)
    columns = environ.get("COLUMNS", "").strip()
    if not columns.isdigit() or int(columns) < 1:
        environ.pop("COLUMNS", None)
    c = Console(stderr=stderr, highlight=False, _environ=environ)
    if not c.is_terminal and "COLUMNS" not in environ:
        c = Console(stderr=stderr, highlight=False, width=200, _environ=environ)
    return c


console = _console()
err = _console(stderr=True)


def settings() -> PlatformSettings:
    """This invocation's settings (``MLOPS_*``): read once, on first use, and shared by
    the command and everything it calls; nothing below the CLI reads the environment."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:  # called outside a command (a test calling a command function)
        return PlatformSettings.load()
    found = ctx.meta.get(_SETTINGS)
    if not isinstance(found, PlatformSettings):
        found = ctx.meta[_SETTINGS] = PlatformSettings.load()
    return found


def platform() -> Platform:
    """The platform's names and keys, from :func:`settings`."""
    return settings().names()


_SETTINGS = "mlops.settings"

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


#: Bidirectional overrides and isolates: text that displays in another order than it reads.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def check_reason(reason: str, option: str = "--reason") -> str:
    """A reason a person typed, as it is recorded (stripped): one line of printable text.
    Records are shown in terminals (status, history, describe): a newline, an escape
    sequence or a bidi override in one would rewrite what the next reader sees."""
    text = reason.strip()
    bad = next((c for c in text if unicodedata.category(c) == "Cc" or c in _BIDI_CONTROLS), None)
    if bad is not None:
        raise InvalidInput(
            f"{option} holds the control character U+{ord(bad):04X}",
            hint="give the reason as one line of plain text (no newlines, tabs or escapes)",
        )
    return text


def parse_duration(text: str, option: str = "--since") -> timedelta:
    """``90s``, ``10m``, ``12h``, ``30d`` -> a timedelta (a bad one is exit 2); the grammar
    is :mod:`mlops_core.durations`'."""
    try:
        return durations.parse_duration(text)
    except ValueError as exc:
        raise InvalidInput(
            f"{option} {exc}", hint="use a number and a unit: 90s, 10m, 12h, 30d or 2w"
        ) from None
