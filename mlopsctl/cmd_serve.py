"""``mlopsctl serve``: run the inference service locally with uvicorn."""

from __future__ import annotations

from pathlib import Path

import typer

from mlops_core.errors import InvalidInput
from mlopsctl.context import PROJECT_DIR_HELP, PROJECT_HELP, err, project_name


def serve(
    env: str = typer.Option(None, "--env", "-e", help="Serve the env's pointer (follows it)."),
    model_dir: Path = typer.Option(None, help="Serve a local artifacts folder instead."),
    project: str = typer.Option(None, "--project", "-p", help=PROJECT_HELP),
    project_dir_: Path = typer.Option(None, "--project-dir", help=PROJECT_DIR_HELP),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8080, help="Port to listen on."),
    poll: float = typer.Option(
        2.0, help="With --env: seconds between pointer checks (0: load once)."
    ),
) -> None:
    """Serve predictions: /health, /ready, /predict, /metrics."""
    from serving.capture_settings import check_settings
    from serving.server import run

    if (env is None) == (model_dir is None):
        raise InvalidInput("give exactly one of --env ENV or --model-dir DIR")
    check_settings()  # MLOPS_CAPTURE_*: a clear error here, not a worker's traceback
    if model_dir is not None:
        err.print(f"serving {model_dir} on http://{host}:{port}")
        run(host, port, model_dir=model_dir.resolve())
        return
    name = project_name(project, project_dir_)
    err.print(f"serving {name}/{env} (following its pointer) on http://{host}:{port}")
    run(host, port, project=name, env=env, poll_seconds=poll)
