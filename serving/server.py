"""Running the service under uvicorn: the container entry and ``mlopsctl serve``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import uvicorn

from mlops_core.errors import InvalidInput, MlopsError
from mlops_core.logs import configure
from serving.app import create_app
from serving.settings import ServingSettings, load_settings

#: Pointer poll interval when following an env from the CLI (promotions show up fast).
DEV_POLL_SECONDS = 2.0


def serve(settings: ServingSettings, *, log_level: str = "info") -> None:
    """Run the app for ``settings`` until interrupted (blocking)."""
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,  # structlog (mlops_core.logs) owns the output
        log_level=log_level,
        access_log=False,  # the app logs one structured line per request itself
        server_header=False,
        timeout_graceful_shutdown=10,
    )


def run_settings(
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    model_dir: Path | None = None,
    model_uri: str | None = None,
    model_sha256: str | None = None,
    project: str | None = None,
    env: str | None = None,
    poll_seconds: float | None = None,
) -> ServingSettings:
    """The settings :func:`run` serves with (arguments over environment variables)."""
    if model_dir is not None and model_uri is not None:
        raise InvalidInput(
            "give a model folder or a model URI, not both",
            hint="--model-dir serves a local folder; MODEL_URI also takes s3:// URIs",
        )
    uri = str(model_dir) if model_dir is not None else model_uri
    environ: dict[str, str] = dict(os.environ)
    if project is not None and env is not None and uri is None:
        # An explicit env means its pointer, whatever MODEL_URI a shell may still export.
        environ.pop("MODEL_URI", None)
        if poll_seconds is None:
            poll_seconds = DEV_POLL_SECONDS
    return load_settings(
        environ,
        host=host,
        port=port,
        model_uri=uri,
        model_sha256=model_sha256,
        project=project,
        env=env,
        pointer_poll_seconds=poll_seconds,
    )


def run(host: str = "127.0.0.1", port: int = 8080, *, log_level: str = "info", **source) -> None:
    """Serve a model until interrupted; what ``mlopsctl serve`` calls.

    ``source`` takes :func:`run_settings`' keywords: ``model_dir`` (a local version
    folder) or ``model_uri`` (s3:// or local) to serve one version, or ``project`` +
    ``env`` to serve the env's pointer and follow it (every ``poll_seconds``, default
    2 s; 0 turns following off). Arguments left out fall back to the environment
    variables of :mod:`serving.settings`. Raises :class:`~mlops_core.errors.InvalidInput`
    for bad settings, before binding the port. A model that fails verification does not
    raise: the service runs, not ready, and logs why (see :mod:`serving.app`).
    """
    settings = run_settings(host, port, **source)
    configure(level=log_level)
    serve(settings, log_level=log_level)


def main() -> None:
    """The container entry (``python -m serving``): everything from the environment."""
    configure()
    try:
        settings = load_settings()
    except MlopsError as exc:
        print(exc.render(), file=sys.stderr)
        sys.exit(exc.exit_code)
    serve(settings)
