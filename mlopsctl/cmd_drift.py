"""``mlopsctl drift``: check an env's live version for drift, as the scheduled job does."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import typer

from mlops_core.errors import InvalidInput
from mlopsctl.context import (
    PROJECT_DIR_HELP,
    PROJECT_HELP,
    Output,
    console,
    output_option,
    print_document,
    project_name,
)


def _time(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            f"{option} {value!r} is not a time",
            hint="use ISO 8601, e.g. 2026-11-28T06:00:00Z (no zone means UTC)",
        ) from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def drift(
    env: str = typer.Option(..., "--env", "-e", help="Environment, e.g. prod."),
    since: str = typer.Option(
        None, "--since", help="Window ending now, e.g. 30m, 24h, 7d (default 24h)."
    ),
    from_: str = typer.Option(None, "--from", help="Window start (ISO 8601, UTC by default)."),
    to: str = typer.Option(None, "--to", help="Window end (default: now)."),
    version: str = typer.Option(None, "--version", help="Version to check (default: live)."),
    project: str = typer.Option(None, "--project", "-p", help=PROJECT_HELP),
    project_dir_: Path = typer.Option(None, "--project-dir", help=PROJECT_DIR_HELP),
    correction: str = typer.Option(None, help="bonferroni or bh (Benjamini-Hochberg)."),
    alpha: float = typer.Option(None, help="Significance after correction (default 0.05)."),
    drift_share: float = typer.Option(
        None, help="Share of drifted features that makes dataset drift (default 0.5)."
    ),
    min_rows: int = typer.Option(None, help="Values a column needs to be tested (default 100)."),
    output: Output = output_option(),
) -> None:
    """Compare the captured window with the version's baseline; write drift.json and
    report.html, publish CloudWatch metrics. Exit 0 no drift, 1 drift, 7 too few rows.
    json and yaml print the drift result (drift.json's layout); table and wide the summary."""
    from monitoring import job
    from monitoring.settings import load_settings
    from monitoring.summary import print_summary

    if since is not None and from_ is not None:
        raise InvalidInput("--since and --from both give the window start", hint="use one")
    settings = load_settings(
        project=project_name(project, project_dir_),
        env=env,
        version=version,
        window=since,
        correction=correction,
        alpha=alpha,
        drift_share=drift_share,
        min_rows=min_rows,
    )
    outcome = job.run(settings, start=_time(from_, "--from"), end=_time(to, "--to"))
    if not print_document(outcome.result.model_dump(mode="json"), output):
        print_summary(outcome.result, console, report_uri=outcome.report_uri)
    raise typer.Exit(job.exit_code(outcome.result))
