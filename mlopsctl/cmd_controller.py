"""``mlopsctl controller run``: the reconciler daemon over a folder, S3 or Kubernetes.

    mlopsctl controller run --source ./deployments            watch a folder
    mlopsctl controller run --source s3://bucket/deployments/ watch an S3 prefix
    mlopsctl controller run --source s3                       the platform's default prefix
    mlopsctl controller run --source kube                     the Kubernetes operator
    mlopsctl controller run --source DIR --once               one pass; exit 1 if any Degraded

Runs until SIGTERM or SIGINT, then finishes in-flight reconciles, releases its leases and
exits 0.
"""

from __future__ import annotations

import importlib
import inspect
import signal
import threading
from collections.abc import Sequence

import typer
from rich.table import Table

from controller.daemon import Controller, Outcome
from controller.sources import open_source
from mlops_core import logs
from mlops_core.errors import InvalidInput, MlopsError
from mlopsctl.context import console

app = typer.Typer(
    name="controller",
    help="Run the controller that converges AWS onto ModelDeployment manifests.",
    no_args_is_help=True,
)


class DeploymentsDegraded(MlopsError):
    """``--once`` found a deployment it could not converge (exit code 1, for CI)."""

    reason = "Degraded"
    exit_code = 1


SOURCE_HELP = (
    "Where the ModelDeployments are: a folder, s3://BUCKET/PREFIX, 's3' (the artifact "
    "bucket's deployments/ prefix) or 'kube' (the Kubernetes operator)."
)


@app.callback()
def _group() -> None:
    """Run the controller that converges AWS onto ModelDeployment manifests."""


def outcome_table(outcomes: Sequence[Outcome]) -> Table:
    table = Table("KEY", "GENERATION", "VERSION", "READY", "REASON", "ACTIONS", box=None)
    for o in outcomes:
        status = o.status
        ready = status.condition("Ready") if status else None
        degraded = status.condition("Degraded") if status else None
        if o.error:
            reason = f"Error: {o.error.splitlines()[0]}"
        elif degraded is not None and degraded.status == "True":
            reason = degraded.reason
        else:
            reason = ready.reason if ready else "-"
        table.add_row(
            o.key,
            str(o.generation) if o.generation is not None else "-",
            (status.current_version if status else None) or "-",
            ready.status if ready else "Unknown",
            reason,
            str(len(o.actions)),
        )
    return table


def _run_kube(**options) -> None:
    try:
        module = importlib.import_module("controller.kube")
    except ModuleNotFoundError as exc:
        if exc.name not in ("controller.kube",):
            raise
        raise MlopsError(
            "the Kubernetes source is not available in this installation (no controller.kube)",
            hint="use --source DIR or --source s3://BUCKET/PREFIX, or install the full package",
        ) from None
    run_operator = module.run_operator
    accepted = inspect.signature(run_operator).parameters
    if options.get("once") and "once" not in accepted:
        raise InvalidInput(
            "--once is not available with --source kube: the operator runs until stopped",
            hint="use 'kubectl get mdep' for status, or --once with a folder or s3:// source",
        )
    run_operator(**{k: v for k, v in options.items() if k in accepted and v is not None})


@app.command("run")
def run(
    source: str = typer.Option(..., "--source", "-s", help=SOURCE_HELP),
    resync: float = typer.Option(
        60.0, min=1.0, help="Seconds between full passes that revert drift."
    ),
    workers: int = typer.Option(4, min=1, max=64, help="Deployments reconciled in parallel."),
    once: bool = typer.Option(
        False, "--once", help="One full pass, print a table, exit 1 if any deployment is Degraded."
    ),
    poll: float = typer.Option(
        None, min=0.05, help="Seconds between change checks (default: 0.5 folder, 5 S3)."
    ),
    lease_ttl: float = typer.Option(
        30.0, min=3.0, help="S3 lease lifetime; a standby takes over after it expires."
    ),
) -> None:
    """Converge AWS onto the ModelDeployments of a source, until SIGTERM/SIGINT."""
    logs.configure()
    if source == "kube":
        _run_kube(resync=resync, workers=workers, once=once)
        return
    src = open_source(source, lease_ttl=lease_ttl)
    if hasattr(src, "check"):
        src.check()
    if poll is None:
        poll = 5.0 if src.uri.startswith("s3://") else 0.5
    controller = Controller(src, workers=workers, resync=resync, poll=poll)
    if once:
        outcomes = controller.run_once()
        console.print(outcome_table(outcomes))
        failed = [o for o in outcomes if o.failed]
        if failed:
            raise DeploymentsDegraded(
                f"{len(failed)} of {len(outcomes)} deployment(s) Degraded or failed: "
                + ", ".join(o.key for o in failed),
                where=src.uri,
                hint="see the REASON column above and each deployment's status",
            )
        return
    stop = threading.Event()

    def _stop(signum: int, _frame) -> None:
        logs.get_logger("controller").info("signal received", signal=signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, _stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        controller.run(stop)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
