"""``mlopsctl dev up | down | env``: the embedded local AWS endpoint.

``dev up`` starts moto's server on 127.0.0.1 in the background, bootstraps the base
resources under the names Terraform uses, and prints the environment to export, so that
``eval "$(mlopsctl dev up)"`` points this shell (and every boto3 client in it) at it.
State (pid, port) lives in ``$MLOPS_STATE_DIR`` (default ``~/.local/state/mlopsctl``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

import typer

from mlops_core.errors import MlopsError
from mlops_core.naming import Platform
from mlopsctl import local_aws
from mlopsctl.context import err

app = typer.Typer(help="The local AWS endpoint (moto's server): no account, no Docker.")


def state_dir() -> Path:
    base = os.environ.get("MLOPS_STATE_DIR") or Path.home() / ".local" / "state" / "mlopsctl"
    return Path(base)


def _state_file(port: int) -> Path:
    return state_dir() / f"dev-{port}.json"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _exports(port: int, resources: dict[str, str]) -> str:
    """Shell exports: the endpoint, and the network the controller runs services in."""
    env = {
        **local_aws.local_env(port),
        "MLOPS_SUBNETS": resources["subnets"],
        "MLOPS_SECURITY_GROUPS": resources["security_groups"],
    }
    return "\n".join(f"export {k}={v}" for k, v in env.items())


@app.command()
def up(
    port: int = typer.Option(local_aws.DEFAULT_PORT, envvar="MLOPS_DEV_PORT", help="Port."),
) -> None:
    """Start the local AWS endpoint, bootstrap it, print the environment to export."""
    state = _state_file(port)
    if state.is_file():
        info = json.loads(state.read_text())
        if _pid_alive(info["pid"]) and local_aws.is_up(port):
            err.print(f"local AWS already running on 127.0.0.1:{port} (pid {info['pid']})")
            typer.echo(_exports(port, _bootstrap(port)))
            return
        state.unlink()
    if local_aws.is_up(port):
        raise MlopsError(
            f"port {port} already answers but was not started by 'mlopsctl dev up'",
            hint="stop what runs there or choose another --port",
        )
    state.parent.mkdir(parents=True, exist_ok=True)
    log = state.with_suffix(".log")
    proc = local_aws.start_server(port, log_path=log)
    state.write_text(json.dumps({"pid": proc.pid, "port": port, "log": str(log)}))
    resources = _bootstrap(port)
    err.print(f"local AWS running on 127.0.0.1:{port} (pid {proc.pid}, log {log})")
    for k, v in resources.items():
        err.print(f"  {k:24} {v}")
    err.print('point a shell at it with: eval "$(mlopsctl dev env)"')
    typer.echo(_exports(port, resources))


def _bootstrap(port: int) -> dict[str, str]:
    saved = dict(os.environ)
    os.environ.update(local_aws.local_env(port))
    try:
        return local_aws.bootstrap(Platform.from_env())
    finally:
        os.environ.clear()
        os.environ.update(saved)


@app.command()
def env(
    port: int = typer.Option(local_aws.DEFAULT_PORT, envvar="MLOPS_DEV_PORT", help="Port."),
) -> None:
    """Print the environment that points boto3 at the local endpoint."""
    if not local_aws.is_up(port):
        raise MlopsError(
            f"no local AWS endpoint answers on port {port}", hint="start it: mlopsctl dev up"
        )
    typer.echo(_exports(port, _bootstrap(port)))


@app.command()
def down(
    port: int = typer.Option(local_aws.DEFAULT_PORT, envvar="MLOPS_DEV_PORT", help="Port."),
) -> None:
    """Stop the local AWS endpoint started by 'dev up' (its state is lost)."""
    state = _state_file(port)
    if not state.is_file():
        err.print(f"no local AWS started by mlopsctl on port {port}; nothing to stop")
        return
    pid = json.loads(state.read_text())["pid"]
    if _pid_alive(pid):
        os.killpg(pid, signal.SIGTERM)  # start_server gives it its own session
        deadline = time.monotonic() + 10
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        if _pid_alive(pid):
            os.killpg(pid, signal.SIGKILL)
    state.unlink()
    err.print(f"stopped local AWS on port {port}")
