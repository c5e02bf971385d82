"""``mlopsctl init`` and ``mlopsctl train``."""

from __future__ import annotations

import shutil
import tempfile
from importlib import resources
from pathlib import Path

import typer

from mlops_core.errors import InvalidInput
from mlops_core.naming import check_project
from mlopsctl import context
from mlopsctl.context import PROJECT_DIR_HELP, console, err, project_dir

TEMPLATE = "templates/project"
#: The CI workflow init scaffolds (GitHub Actions): train + gates on a pull request;
#: train, gates, publish and deploy on a merge to main.
WORKFLOW = ".github/workflows/mlops.yaml"


def init(
    name: str = typer.Argument(..., help="Project name: lowercase letters, digits and '-'."),
    directory: Path = typer.Option(None, "--dir", help="Where to create it (default: ./NAME)."),
    rows: int = typer.Option(2000, help="Rows of synthetic sample data to write."),
) -> None:
    """Scaffold a project: project.yaml, data/ with sample data, Makefile, README and a
    GitHub Actions workflow (.github/workflows/mlops.yaml)."""
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
        # Packaging drops dotfiles, so the template ships them under other names.
        (staging / "gitignore.txt").rename(staging / ".gitignore")
        (staging / WORKFLOW).parent.mkdir(parents=True)
        (staging / "github-workflow.yaml").rename(staging / WORKFLOW)
        (staging / "data").mkdir(exist_ok=True)
        sample_data.write(rows, 0, staging / "data" / "usedcars.csv")
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            target.rmdir()
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    console.print(f"created project [bold]{name}[/] in {target}")
    console.print(f"  CI: {WORKFLOW} (set MLOPS_AWS_ROLE_ARN and AWS_REGION in the repo)")
    console.print(f"next: cd {target} && mlopsctl train && mlopsctl publish")


def train(
    project_dir_: Path = typer.Option(None, "--project-dir", help=PROJECT_DIR_HELP),
    data: str = typer.Option(
        None, help="CSV path or s3:// URI (default: data.source in project.yaml)."
    ),
    out: str = typer.Option(
        None,
        help="Artifacts folder, or an s3:// prefix for a candidate (default: PROJECT/artifacts).",
    ),
    config: str = typer.Option(
        None, help="project.yaml to train with (path or s3://), instead of a project folder."
    ),
    remote: bool = typer.Option(
        False, "--remote", help="Train as an ECS task of the training image; follow its logs."
    ),
    image: str = typer.Option(
        None, help="With --remote, when no task definition exists: the training image."
    ),
) -> None:
    """Train the project's model on its CSV; write artifacts/ (model, metrics, ...)."""
    if remote:
        _train_remote(project_dir(project_dir_), data, image)
        return
    import training
    from mlops_core.registry import upload_candidate

    with tempfile.TemporaryDirectory(prefix="mlops-train-") as tmp:
        pdir = (
            _config_folder(config, Path(tmp) / "project") if config else project_dir(project_dir_)
        )
        to_s3 = out is not None and out.startswith("s3://")
        out_dir = Path(tmp) / "artifacts" if to_s3 else (Path(out) if out else None)
        manifest = training.train(
            pdir, data=data, out_dir=out_dir, tracking_uri=context.settings().tracking_uri
        )
        if to_s3:
            assert out is not None and out_dir is not None
            console.print(f"candidate written to {upload_candidate(out_dir, out)}")
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


def _config_folder(uri: str, folder: Path) -> Path:
    """A project folder holding the project.yaml at ``uri`` (a path or s3://)."""
    from mlops_core import aws
    from mlops_core.errors import NotFound
    from mlops_core.project import PROJECT_FILE
    from mlops_core.registry import split_s3_uri

    folder.mkdir(parents=True)
    if uri.startswith("s3://"):
        bucket, key = split_s3_uri(uri)
        s3 = aws.client("s3")
        try:
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except s3.exceptions.NoSuchKey:
            raise NotFound(f"no project.yaml at {uri}", where="--config") from None
    else:
        path = Path(uri)
        if not path.is_file():
            raise NotFound(f"no project.yaml at {uri}", where="--config")
        body = path.read_bytes()
    (folder / PROJECT_FILE).write_bytes(body)
    return folder


def _train_remote(pdir: Path, data: str | None, image: str | None) -> None:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as package_version

    from controller.plan import NetworkConfig
    from training import remote

    settings = context.settings()
    net = NetworkConfig.from_settings(settings)
    try:
        release = package_version("mlops-platform")
    except PackageNotFoundError:
        release = "latest"
    result = remote.run(
        pdir,
        data,
        settings.names(),
        remote.Network(net.subnets, net.security_groups, net.execution_role_arn),
        image=image or settings.training_image,
        release=release,
        echo=typer.echo,
    )
    console.print(f"candidate: [bold]{result.candidate}[/]")
    console.print(f"next: mlopsctl deploy --env ENV --candidate {result.candidate}")
