"""The summary a drift run prints: a table of columns, most drifted first, and a verdict."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mlops_core.drift_result import ColumnDrift, DriftResult

_STYLE = {"drift": "bold red", "ok": "green", "too_few_rows": "yellow"}


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value != 0 and abs(value) < 1e-3:
        return f"{value:.1e}"
    return f"{value:.3g}"


def _cells(col: ColumnDrift) -> list[str]:
    test, effect = col.test, col.effect
    missing = col.missing
    return [
        escape(col.name),
        f"[{_STYLE[col.status]}]{col.status.replace('_', ' ')}[/]",
        test.name if test else "-",
        _fmt(test.statistic if test else None),
        _fmt(test.p_adjusted if test else None),
        f"{effect.metric} {_fmt(effect.value)} / {effect.threshold:g}" if effect else "-",
        "-" if missing is None else f"{missing.reference_rate:.1%} -> {missing.current_rate:.1%}",
        f"{col.rows:,}",
    ]


def table(result: DriftResult) -> Table:
    t = Table(
        "column", "status", "test", "statistic", "p (corrected)", "effect / threshold",
        "missing", "rows",
        title=f"{result.project}/{result.env} {result.version}",
    )  # fmt: skip
    for col in result.features:
        t.add_row(*_cells(col))
    if result.prediction is not None:
        t.add_section()
        t.add_row(*_cells(result.prediction))
    return t


def verdict_line(result: DriftResult) -> str:
    style = {"drift": "bold red", "no_drift": "bold green"}.get(result.verdict, "bold yellow")
    return f"[{style}]{result.verdict.replace('_', ' ')}[/]: {escape(result.summary())}"


def print_summary(result: DriftResult, console: Console, *, report_uri: str | None) -> None:
    console.print(table(result))
    console.print(verdict_line(result))
    if report_uri:
        console.print(f"report: {escape(report_uri)}")
