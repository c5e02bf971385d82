"""What a command acts on: the project (by name or from project.yaml) and the console."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

from rich.console import Console

from mlops_core.errors import InvalidInput
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


_DURATION_RE = re.compile(r"^([1-9][0-9]{0,5})([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
OUTPUT_FORMATS = ("table", "json")


def parse_duration(text: str, option: str = "--since") -> timedelta:
    """``90s``, ``10m``, ``12h``, ``30d`` -> a timedelta (a bad one is exit 2)."""
    m = _DURATION_RE.fullmatch(text.strip())
    if m is None:
        raise InvalidInput(
            f"{option} {text!r} is not a duration",
            hint="use a number and a unit: 90s, 10m, 12h or 30d",
        )
    return timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})


def check_output(output: str, formats: tuple[str, ...] = OUTPUT_FORMATS) -> str:
    if output not in formats:
        raise InvalidInput(f"-o/--output must be one of {', '.join(formats)}, not {output!r}")
    return output
