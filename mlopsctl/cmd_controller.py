"""``mlopsctl controller run``: the reconciler over a folder, S3 or Kubernetes.

    mlopsctl controller run --source ./deployments            watch a folder
    mlopsctl controller run --source s3://bucket/deployments/ watch an S3 prefix
    mlopsctl controller run --source s3                       the platform's default prefix
    mlopsctl controller run --source kube                     the Kubernetes operator
    mlopsctl controller run --source DIR --once               one pass; exit 1 if any Degraded
                                                              (6 if every one is refused by its
                                                              gates or budget; 4 if none failed
                                                              but another controller held some
                                                              past the wait)
    mlopsctl controller run --source DIR --once -o json       the pass's outcomes as a document

The same runtime serves every source (``controller.runtime``). Runs until SIGTERM or
SIGINT, then finishes in-flight reconciles, releases its lease and exits 0.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Sequence
from typing import Any

import typer
from rich.table import Table

from controller.launch import (
    check_once_source,
    make_controller,
    open_any_source,
    run_kube,
    serve_metrics,
)
from controller.runtime import Outcome
from controller.settings import ControllerSettings
from mlops_core import aws, logs
from mlops_core.cost.estimate import BudgetExceeded
from mlops_core.errors import Conflict, GateFailed, InvalidInput, MlopsError
from mlopsctl.context import Output, console, output_option, print_document

app = typer.Typer(
    name="controller",
    help="Run the controller that converges AWS onto ModelDeployment manifests.",
    no_args_is_help=True,
)


class DeploymentsDegraded(MlopsError):
    """``--once`` found a deployment it could not converge (exit code 1, for CI)."""

    reason = "Degraded"
    exit_code = 1


class DeploymentsHeld(Conflict):
    """``--once`` found deployments that another live controller held for longer than
    the pass waited (exit 4): not failed, that controller is converging them."""


class DeploymentsRefused(GateFailed):
    """``--once`` found deployments refused by their gates or budget, and nothing else
    wrong: a gate failure, exit 6, as ``deploy --dry-run`` and ``deploy --wait`` exit."""


#: The Degraded reasons that are gate refusals (a spec judged and refused, nothing broken).
GATE_REASONS = frozenset({GateFailed.reason, BudgetExceeded.reason})


def _degraded_reason(o: Outcome) -> str | None:
    degraded = o.status.condition("Degraded") if o.status else None
    return degraded.reason if degraded is not None and degraded.status == "True" else None


def once_failure(outcomes: Sequence[Outcome], where: str) -> MlopsError | None:
    """What ``--once`` exits with: None when nothing failed; DeploymentsRefused (6) when
    every failure is a gate refusal (GateFailed, BudgetExceeded); else
    DeploymentsDegraded (1). With no failure, DeploymentsHeld (4) when another
    controller held some deployment for longer than the pass waited for it."""
    failed = [o for o in outcomes if o.failed]
    if not failed:
        held = [o for o in outcomes if o.held_by is not None]
        if not held:
            return None
        return DeploymentsHeld(
            f"{len(held)} of {len(outcomes)} deployment(s) held by another controller "
            "for longer than this pass waited: "
            + ", ".join(f"{o.key} (held by {o.held_by})" for o in held),
            where=where,
            hint="nothing failed: that controller is converging them; run --once again "
            "when it is done (or stop it first)",
        )
    what = f"{len(failed)} of {len(outcomes)} deployment(s) Degraded or failed: " + ", ".join(
        o.key for o in failed
    )
    hint = "see each deployment's reason above and its status"
    if all(o.error is None and _degraded_reason(o) in GATE_REASONS for o in failed):
        return DeploymentsRefused(what, where=where, hint=hint)
    return DeploymentsDegraded(what, where=where, hint=hint)


SOURCE_HELP = (
    "Where the ModelDeployments are: a folder, s3://BUCKET/PREFIX, 's3' (the artifact "
    "bucket's deployments/ prefix) or 'kube' (the Kubernetes operator)."
)


@app.callback()
def _group() -> None:
    """Run the controller that converges AWS onto ModelDeployment manifests."""


def _reason(o: Outcome) -> str:
    status = o.status
    ready = status.condition("Ready") if status else None
    degraded = status.condition("Degraded") if status else None
    if o.error:
        return f"Error: {o.error.splitlines()[0]}"
    if o.held_by is not None:
        return f"HeldByAnotherController: {o.held_by}"
    if degraded is not None and degraded.status == "True":
        return degraded.reason
    return ready.reason if ready else "-"


def outcome_table(outcomes: Sequence[Outcome], *, wide: bool = False) -> Table:
    columns = ["KEY", "GENERATION", "VERSION", "READY", "REASON", "ACTIONS"]
    table = Table(*columns, *(["MESSAGE", "TAKEN"] if wide else []), box=None)
    for column in (table.columns[0], table.columns[2]):  # key, version: copied, kept whole
        column.no_wrap = True
    for o in outcomes:
        status = o.status
        ready = status.condition("Ready") if status else None
        row = [
            o.key,
            str(o.generation) if o.generation is not None else "-",
            (status.current_version if status else None) or "-",
            ready.status if ready else "Unknown",
            _reason(o),
            str(len(o.actions)),
        ]
        if wide:
            shown = next(
                (c for c in (status.conditions if status else ()) if c.status == "True"
                 and c.type == "Degraded"), ready)  # fmt: skip
            row += [(shown.message if shown else None) or "-", "; ".join(o.actions) or "-"]
        table.add_row(*row)
    return table


def outcome_document(outcomes: Sequence[Outcome], where: str) -> dict[str, Any]:
    """``--once -o json|yaml``: each deployment's outcome and its whole status."""
    return {
        "source": where,
        "deployments": [
            {
                "name": o.name,
                "key": o.key,
                "generation": o.generation,
                "version": o.status.current_version if o.status else None,
                "reason": _reason(o),
                "failed": o.failed,
                "error": o.error,
                "held_by": o.held_by,
                "actions": list(o.actions),
                "status": (
                    o.status.model_dump(mode="json", by_alias=True, exclude_none=True)
                    if o.status
                    else None
                ),
            }
            for o in outcomes
        ],
    }


@app.command("run")
def run(
    source: str = typer.Option(..., "--source", "-s", help=SOURCE_HELP),
    resync: float = typer.Option(
        None, min=1.0, help="Seconds between full passes that revert drift (default 60)."
    ),
    workers: int = typer.Option(
        None, min=1, max=64, help="Deployments reconciled in parallel (default 4)."
    ),
    once: bool = typer.Option(
        False,
        "--once",
        help="One full pass, print its outcome (-o), exit 1 if any deployment is Degraded "
        "(6 if every Degraded one is refused by its gates or budget; 4 if none is but "
        "another controller held one for longer than --lease-ttl).",
    ),
    poll: float = typer.Option(
        None, min=0.05, help="Seconds between change checks (default: 0.5 folder, 5 S3)."
    ),
    lease_ttl: float = typer.Option(
        None,
        min=3.0,
        help="Lease lifetime (default 30); a standby takes over after it expires. --once "
        "waits this long for a deployment another controller holds.",
    ),
    metrics_port: int = typer.Option(
        None, min=0, max=65535, help="Port of /metrics and /readyz (default 9090; 0: any)."
    ),
    output: Output = output_option(),
) -> None:
    """Converge AWS onto the ModelDeployments of a source, until SIGTERM/SIGINT."""
    flags: dict[str, Any] = {
        "resync": resync,
        "workers": workers,
        "poll": poll,
        "lease_ttl": lease_ttl,
        "metrics_port": metrics_port,
    }
    settings = ControllerSettings.load(**flags)
    # Every AWS call of the controller ends well within its lease (see controller.leases).
    aws.configure(aws.CONTROLLER)
    if output is not Output.table and not once:
        raise InvalidInput(
            f"-o {output.value} shows the outcome of one pass: it needs --once",
            hint="add --once, or drop -o (a running controller reports through its logs, "
            "/metrics and each deployment's status)",
        )
    if once:
        check_once_source(source)
        settings = settings.model_copy(update={"metrics": False})
    if source == "kube":
        run_kube(settings)
        return
    src = open_any_source(source, settings)
    if hasattr(src, "check"):
        src.check()
    controller = make_controller(settings, src)
    if once:
        outcomes = controller.run_once()
        if not print_document(outcome_document(outcomes, src.uri), output):
            console.print(outcome_table(outcomes, wide=output is Output.wide))
        failure = once_failure(outcomes, src.uri)
        if failure is not None:
            raise failure
        return
    serve_metrics(settings, controller.metrics, controller.poll)
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
