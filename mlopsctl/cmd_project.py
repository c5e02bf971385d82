"""``mlopsctl init`` and ``mlopsctl train``."""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

import typer

from mlops_core.errors import InvalidInput
from mlops_core.naming import check_project
from mlopsctl.context import PROJECT_DIR_HELP, console, err, project_dir

TEMPLATE = "templates/project"


def init(
    name: str = typer.Argument(..., help="Project name: lowercase letters, digits and '-'."),
    directory: Path = typer.Option(None, "--dir", help="Where to create it (default: ./NAME)."),
    rows: int = typer.Option(2000, help="Rows of synthetic sample data to write."),
) -> None:
    """Scaffold a project: project.yaml, data/ with sample data, Makefile, README."""
    check_project(name)
    target = (directory or Path(name)).resolve()
    if target.exists() and any(target.iterdir()):
        raise InvalidInput(
            f"{target} exists and is not empty",
            hint="choose another --dir or remove it; init never overwrites files",
        )
    from training import sample_data

    template = resources.files("mlopsctl").joinpath(TEMPLATE)
    staging = target.with_name(f".{target.name}.init-tmp")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with resources.as_file(template) as src:
            shutil.copytree(src, staging)
        for path in staging.rglob("*"):
            if path.is_file() and path.suffix in {".yaml", ".md", ""}:
                path.write_text(path.read_text().replace("{{ name }}", name))
        # Packaging drops dotfiles, so the template ships it under another name.
        (staging / "gitignore.txt").rename(staging / ".gitignore")
        (staging / "data").mkdir(exist_ok=True)
        sample_data.write(rows, 0, staging / "data" / "usedcars.csv")
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            target.rmdir()
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    console.print(f"created project [bold]{name}[/] in {target}")
    console.print(f"next: cd {target} && mlopsctl train && mlopsctl publish")


def train(
    project_dir_: Path = typer.Option(None, "--project-dir", help=PROJECT_DIR_HELP),
    data: str = typer.Option(
        None, help="CSV path or s3:// URI (default: data.source in project.yaml)."
    ),
    out: Path = typer.Option(None, help="Artifacts folder (default: PROJECT/artifacts)."),
) -> None:
    """Train the project's model on its CSV; write artifacts/ (model, metrics, ...)."""
    import training

    manifest = training.train(project_dir(project_dir_), data=data, out_dir=out)
    from mlops_core.gates import summary
    from mlops_core.modelformat import parity_report

    console.print(
        f"trained [bold]{manifest.project}[/] ({manifest.task}) version [bold]{manifest.version}[/]"
    )
    console.print(f"  {summary(manifest.task, manifest.metrics)}")
    served = f"{manifest.model_file} ({manifest.files[manifest.model_file].size:,} bytes)"
    parity = parity_report(manifest)
    if parity is None:
        console.print(f"  {served}: no ONNX export, served with skops")
    elif parity.passed:
        console.print(f"  {served}, parity with scikit-learn: PASS")
    else:
        err.print(
            f"[red]parity gate FAILED[/]: {parity.describe()}\n"
            "  publish will refuse this version (see metrics.json's parity report)"
        )
