"""``mlopsctl``: the golden path from a CSV to a production endpoint.

    mlopsctl init NAME          scaffold a project
    mlopsctl train              train -> artifacts/
    mlopsctl publish            immutable, digest-verified version in S3
    mlopsctl promote VERSION --env prod
    mlopsctl rollback --env prod
    mlopsctl history --env prod the promotion log: every pointer change, newest first
    mlopsctl status
    mlopsctl policy show|set|history   the envs and gates in force, versioned
    mlopsctl gates check VERSION --env prod   would it pass? exit 0, or 6 (for CI)
    mlopsctl logs --env prod    the service's task output, from CloudWatch Logs
    mlopsctl cost               per deployment: estimate, billed cost, cost per 1k requests
    mlopsctl serve --env prod
    mlopsctl deploy --env prod  declare the desired state (default: the live version
                                again; --version V, --latest); the controller converges AWS
    mlopsctl drift --env prod   compare captured inferences with the baseline
    mlopsctl dev up|down        the embedded local AWS endpoint

Expected failures are :class:`~mlops_core.errors.MlopsError`: printed as ``error: ...``
with a hint, no traceback, and a non-zero exit code specific to the kind of error.
"""

from __future__ import annotations

import sys

import typer

from mlopsctl import (
    cmd_cost,
    cmd_dev,
    cmd_drift,
    cmd_gates,
    cmd_logs,
    cmd_models,
    cmd_policy,
    cmd_project,
    cmd_serve,
)

app = typer.Typer(
    name="mlopsctl",
    help="Train, publish, promote and serve models; declare deployments for the controller.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"mlopsctl {version('mlops-platform')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Train, publish, promote and serve models; declare deployments for the controller."""


app.command("init")(cmd_project.init)
app.command("train")(cmd_project.train)
app.command("publish")(cmd_models.publish)
app.command("sign")(cmd_models.sign)
app.command("models")(cmd_models.models)
app.command("promote")(cmd_models.promote)
app.command("rollback")(cmd_models.rollback)
app.command("history")(cmd_models.history)
app.command("status")(cmd_models.status)
app.command("serve")(cmd_serve.serve)
app.command("logs")(cmd_logs.logs)
app.command("cost")(cmd_cost.cost)
app.command("prices")(cmd_cost.prices)
app.command("drift")(cmd_drift.drift)
app.add_typer(cmd_dev.app, name="dev")
app.add_typer(cmd_policy.app, name="policy")
app.add_typer(cmd_gates.app, name="gates")


@app.command("crd")
def crd() -> None:
    """Print the ModelDeployment CRD, for 'mlopsctl crd | kubectl apply -f -'."""
    from controller.crd import render

    typer.echo(render(), nl=False)


# Distributions the controller commands need that a slim (serving) image may leave out.
OPTIONAL_DEPENDENCIES = ("kopf",)


def _mount_optional() -> None:
    """Sub-commands whose dependencies may be absent in slim images (e.g. serving). Only
    a missing optional dependency drops them; any other import error (a typo, a broken
    module) fails loudly rather than hiding the commands."""
    try:
        from mlopsctl import cmd_controller
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in OPTIONAL_DEPENDENCIES:
            raise
        return
    from mlopsctl import cmd_approve, cmd_deploy

    app.add_typer(cmd_controller.app, name="controller")
    app.command("deploy")(cmd_deploy.deploy)
    app.command("approve")(cmd_approve.approve)
    app.command("reject")(cmd_approve.reject)


_mount_optional()


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: run the app, turning expected errors into messages."""
    from mlops_core import exits, logs
    from mlops_core.config import PlatformSettings
    from mlops_core.errors import InvalidInput

    try:
        s: PlatformSettings | None = PlatformSettings.load()
    except InvalidInput:
        s = None  # reported, with the variable's name, by the command that needs it
    logs.configure(s.log_level if s else None, s.log_json if s else None)

    def work() -> int:
        try:
            # Standalone mode: click prints usage errors itself (exit 2) and exits through
            # SystemExit; our own errors propagate to exits.run's handlers.
            app(args=argv, prog_name="mlopsctl", standalone_mode=True)
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        return 0

    return exits.run(work)


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
