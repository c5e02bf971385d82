"""``mlopsctl dev up | down | env``: the embedded local AWS endpoint and its data plane.

``dev up`` starts, in the background, moto's server with the local data plane
(:mod:`mlopsctl.dataplane`: ECS services and tasks run as local processes, load balancers
answer on loopback ports, task output goes to CloudWatch Logs, schedules fire), bootstraps
the base resources under the names Terraform uses, and prints the environment to export,
so that ``eval "$(mlopsctl dev up)"`` points this shell (and every boto3 client and the
controller in it) at it. State (pid, port, task folders) lives in ``$MLOPS_STATE_DIR``
(default ``~/.local/state/mlopsctl``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

import typer

from mlops_core.config import PlatformSettings
from mlops_core.errors import MlopsError
from mlopsctl import context, local_aws
from mlopsctl.context import err

app = typer.Typer(help="The local AWS endpoint and data plane: no account, no Docker.")

#: What the controller needs locally, besides the endpoint and the network: services get
#: load balancers the platform creates, rollouts (seconds here) are polled often, and its
#: metrics listen on the loopback interface only.
LOCAL_CONTROLLER_ENV = {
    "MLOPS_LOAD_BALANCERS": "managed",
    "MLOPS_CONTROLLER_METRICS_HOST": "127.0.0.1",
    "MLOPS_ROLLOUT_POLL_SECONDS": "0.5",
    "MLOPS_AFTER_ACTION_SECONDS": "0.5",
}
STOP_TIMEOUT = 60.0  # the data plane stops its tasks first (each within its stop timeout)


def state_dir() -> Path:
    return context.settings().dev_state_dir or Path.home() / ".local" / "state" / "mlopsctl"


def _state_file(port: int) -> Path:
    return state_dir() / f"dev-{port}.json"


def _plane_dir(port: int) -> Path:
    return state_dir() / f"dev-{port}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _exports(port: int, resources: dict[str, str]) -> str:
    """Shell exports: the endpoint, the network and role the controller runs services
    with, and its local settings."""
    env = {
        **local_aws.local_env(port),
        "MLOPS_SUBNETS": resources["subnets"],
        "MLOPS_SECURITY_GROUPS": resources["security_groups"],
        "MLOPS_EXECUTION_ROLE_ARN": resources["execution_role_arn"],
        **LOCAL_CONTROLLER_ENV,
    }
    return "\n".join(f"export {k}={v}" for k, v in env.items())


@app.command()
def up(
    port: int = typer.Option(local_aws.DEFAULT_PORT, envvar="MLOPS_DEV_PORT", help="Port."),
    time_scale: float = typer.Option(
        None,
        min=0.001,
        max=1.0,
        help="AWS timings (health checks, draining, schedules) times this; default 0.05.",
    ),
) -> None:
    """Start the local AWS endpoint and data plane, bootstrap it, print the exports."""
    from mlopsctl.dataplane.agent import reap_orphans

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
    plane = _plane_dir(port)
    orphans = reap_orphans(plane) if plane.is_dir() else []
    if orphans:
        err.print(f"stopped {len(orphans)} task process(es) left by a previous data plane")
    plane.mkdir(parents=True, exist_ok=True)
    log = state.with_suffix(".log")
    env = {"MLOPS_DATAPLANE_TIME_SCALE": str(time_scale)} if time_scale else {}
    proc = local_aws.start_dataplane(port, plane, log_path=log, env=env)
    state.write_text(
        json.dumps({"pid": proc.pid, "port": port, "log": str(log), "state": str(plane)})
    )
    resources = _bootstrap(port)
    err.print(f"local AWS and data plane on 127.0.0.1:{port} (pid {proc.pid}, log {log})")
    for k, v in resources.items():
        err.print(f"  {k:24} {v}")
    err.print('point a shell at it with: eval "$(mlopsctl dev env)"')
    typer.echo(_exports(port, resources))


def _bootstrap(port: int) -> dict[str, str]:
    saved = dict(os.environ)
    os.environ.update(local_aws.local_env(port))
    try:
        # Read again: the local endpoint's environment (its region) is in force here.
        return local_aws.bootstrap(PlatformSettings.load().names())
    finally:
        os.environ.clear()
        os.environ.update(saved)


@app.command()
def env(
    port: int = typer.Option(local_aws.DEFAULT_PORT, envvar="MLOPS_DEV_PORT", help="Port."),
) -> None:
    """Print the environment that points boto3 and the controller at the local endpoint."""
    if not local_aws.is_up(port):
        raise MlopsError(
            f"no local AWS endpoint answers on port {port}", hint="start it: mlopsctl dev up"
        )
    typer.echo(_exports(port, _bootstrap(port)))


@app.command()
def down(
    port: int = typer.Option(local_aws.DEFAULT_PORT, envvar="MLOPS_DEV_PORT", help="Port."),
) -> None:
    """Stop the local AWS endpoint, its data plane and every task it runs (state is lost)."""
    from mlopsctl.dataplane.agent import reap_orphans

    state = _state_file(port)
    if not state.is_file():
        err.print(f"no local AWS started by mlopsctl on port {port}; nothing to stop")
        return
    info = json.loads(state.read_text())
    pid = info["pid"]
    if _pid_alive(pid):
        os.killpg(pid, signal.SIGTERM)  # start_dataplane gives it its own session
        deadline = time.monotonic() + STOP_TIMEOUT
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        if _pid_alive(pid):
            os.killpg(pid, signal.SIGKILL)
    # Whatever the data plane could not stop itself (it was killed): its task processes.
    plane = Path(info.get("state") or _plane_dir(port))
    orphans = reap_orphans(plane) if plane.is_dir() else []
    state.unlink()
    extra = f" and {len(orphans)} task process(es) it had left" if orphans else ""
    err.print(f"stopped local AWS on port {port}{extra}")
