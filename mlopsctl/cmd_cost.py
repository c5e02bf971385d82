"""``mlopsctl cost`` and ``mlopsctl prices``: what each deployment costs.

``cost`` shows, per deployment (one per project and env), what ECS runs now priced per
month (``mlops_core.cost.estimate``, with the traffic measured over the window), what
Cost Explorer billed over the window grouped by the ``mlops:deployment`` tag, and the
cost per 1,000 requests: the billed cost when Cost Explorer has it, else the estimate for
the window, over the load balancer's ``RequestCount`` (``mlops_core.cost.requests``).
The estimate's share and the measured request rate are over the part of the window the
service existed (``served_since``), so a service made an hour ago is not charged a month.
Every figure says where it came from; nothing here writes anything.

``-o json`` prints one document::

    {"window": {"since", "start", "end"},
     "prices": {"source", "as_of", "region", "note", "table"} | null,
     "deployments": [{"project", "env", "deployment", "service": {...} | null,
                      "served_since": str (the window's start, or the service's creation),
                      "estimate": {"monthly_usd", "items", ...} | null,
                      "actual_usd": float | null, "requests": float | null,
                      "usd_per_1k_requests": float | null, "per_1k_basis": "actual" | "estimate",
                      "notes": [str]}],
     "actual": {project: {"available", "estimated", "shared_usd", "reason"}}}
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import typer
from botocore.exceptions import BotoCoreError, ClientError
from rich.markup import escape
from rich.table import Table

from mlops_core import aws
from mlops_core.cost.actual import ActualCost, actual_costs
from mlops_core.cost.estimate import HOURS_PER_MONTH, Workload, estimate, per_thousand
from mlops_core.cost.prices import (
    ARCHITECTURES,
    SOURCE_API,
    SOURCE_FILE,
    PriceBook,
    PriceListIncomplete,
    PriceResolver,
    PricesUnavailable,
    PriceTable,
    fetch_region_prices,
    shipped_table,
)
from mlops_core.cost.requests import request_count
from mlops_core.errors import InvalidInput, NotFound
from mlops_core.naming import Platform, check_env, check_project, deployment_name
from mlops_core.pointer import PointerStore
from mlops_core.registry import Registry
from mlopsctl import context
from mlopsctl.context import (
    PROJECT_DIR_HELP,
    PROJECT_HELP,
    Output,
    console,
    err,
    output_option,
    parse_duration,
    print_document,
    project_config,
)
from mlopsctl.live import LiveService, live_service


def _projects(project: str | None, project_dir_: Path | None, registry: Registry) -> list[str]:
    """The project named, else the current folder's, else every registered one."""
    if project:
        return [check_project(project)]
    try:
        return [project_config(project_dir_).name]
    except InvalidInput:
        if project_dir_ is not None:
            raise
    return registry.list_projects()


def _prefix_bytes(bucket: str, prefix: str) -> int:
    total = 0
    paginator = aws.client("s3").get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        total += sum(o["Size"] for o in page.get("Contents", []))
    return total


def _artifact_bytes(registry: Registry, project: str, version: str | None) -> int:
    if not version:
        return 0
    try:
        manifest = registry.get_manifest(project, version)
    except (NotFound, InvalidInput):
        return 0
    return sum(f.size for f in manifest.files.values())


def _service_doc(live: LiveService) -> dict[str, Any]:
    return {
        "name": live.name,
        "revision": live.task_definition.get("taskDefinitionArn", "").rpartition("/")[2],
        "tasks": live.desired_count,
        "running": live.running_count,
        "cpu": live.cpu,
        "memory": live.memory,
        "architecture": live.architecture,
    }


def deployment_cost(
    platform: Platform,
    registry: Registry,
    book: PriceBook | None,
    actual: ActualCost,
    project: str,
    env: str,
    start: datetime,
    end: datetime,
) -> dict[str, Any]:
    """One deployment's row: estimate, billed cost, requests, cost per 1,000."""
    # Imported here: the controller's modules are not needed by the other commands.
    from controller.actions import ENV_MODEL_VERSION

    name = deployment_name(project, env)
    notes: list[str] = []
    doc: dict[str, Any] = {
        "project": project,
        "env": env,
        "deployment": name,
        "service": None,
        "estimate": None,
        "actual_usd": actual.by_deployment.get(name, 0.0) if actual.available else None,
        "requests": None,
        "usd_per_1k_requests": None,
        "per_1k_basis": None,
        "notes": notes,
    }
    live = live_service(platform, project, env)
    if live is None:
        notes.append(f"no ECS service {platform.service_name(project, env)}: nothing runs")
        return doc
    doc["service"] = _service_doc(live)
    counted = request_count(platform, project, env, start, end)
    if counted.reason:
        notes.append(f"requests: {counted.reason}")
    doc["requests"] = counted.requests
    # The traffic rate and the estimate's share of the window are over the part of the
    # window the service existed: a service created an hour ago has not cost a month.
    served_from = start
    served = counted
    if live.created_at is not None and live.created_at > start:
        served_from = min(live.created_at.astimezone(UTC).replace(microsecond=0), end)
        served = request_count(platform, project, env, served_from, end)
        notes.append(
            f"the service exists since {served_from.isoformat(timespec='seconds')}: its "
            "request rate and the estimate for the window are over that time"
        )
    doc["served_since"] = served_from.isoformat()
    if live.architecture not in ARCHITECTURES:
        notes.append(f"CPU architecture {live.architecture} has no prices here: priced as X86_64")
    seconds = max((end - served_from).total_seconds(), 1.0)
    pointer = PointerStore(platform).get(project, env)
    version = live.environment(ENV_MODEL_VERSION) or (pointer.version if pointer else None)
    capture = platform.capture_env_prefix(project, env)
    workload = Workload(
        cpu=live.cpu,
        memory=live.memory,
        tasks=live.desired_count,
        architecture=live.architecture if live.architecture in ARCHITECTURES else "X86_64",
        requests_per_second=(served.requests or 0.0) / seconds,
        artifact_bytes=_artifact_bytes(registry, project, version),
        capture_bytes=_prefix_bytes(platform.artifact_bucket, capture),
        # The env's load balancer is billed by the hour while it exists; with none (and
        # no target group) there is nothing to share.
        load_balanced=counted.load_balancer or live.load_balanced,
    )
    if book is None:
        return doc
    if workload.cpu <= 0 or workload.memory <= 0:
        # A revision gone (deregistered and deleted) or without a task-level size.
        notes.append(
            f"the task size of {doc['service']['revision'] or 'its revision'} is unknown: "
            "not estimated"
        )
        return doc
    est = estimate(workload, book)
    doc["estimate"] = est.to_dict()
    if doc["actual_usd"] is not None and doc["actual_usd"] > 0:
        # The bill covers the deployment over the window (earlier services too).
        basis, usd, requests = "actual", doc["actual_usd"], counted.requests
    else:
        basis, usd = "estimate", est.total * seconds / 3600 / HOURS_PER_MONTH
        requests = served.requests
    doc["per_1k_basis"] = basis
    doc["usd_per_1k_requests"] = per_thousand(usd, requests or 0.0)
    return doc


def _money(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"${value:,.{digits}f}"


def cost(
    env: str = typer.Option(None, "--env", "-e", help="Only this env (default: every env)."),
    since: str = typer.Option("30d", help="Window of the billed cost and request counts."),
    project: str = typer.Option(None, "--project", "-p", help=PROJECT_HELP),
    project_dir_: Path = typer.Option(None, "--project-dir", help=PROJECT_DIR_HELP),
    output: Output = output_option(),
) -> None:
    """Per deployment: monthly estimate, billed cost (Cost Explorer), cost per 1k requests."""
    window = parse_duration(since)
    if window > timedelta(days=365):
        raise InvalidInput(f"--since {since} is longer than Cost Explorer's year")
    end = datetime.now(UTC).replace(microsecond=0)
    start = end - window
    platform = context.platform()
    registry = Registry(platform)
    resolver = PriceResolver.from_settings(context.settings())
    book: PriceBook | None = None
    prices_error = ""
    try:
        book = resolver.get(platform.region)
    except PricesUnavailable as exc:
        prices_error = exc.render()
    rows: list[dict[str, Any]] = []
    actuals: dict[str, ActualCost] = {}
    names = _projects(project, project_dir_, registry)
    configs = [registry.get_project(name) for name in names]
    if env:
        check_env(env)
        # Across every project, those with the env; one project named must have it.
        having = [c for c in configs if env in c.envs]
        if not having and configs:
            configs[0].check_env(env)  # the unknown-env error, with the envs it has
        configs = having
    for config in configs:
        name = config.name
        envs = [env] if env else list(config.envs)
        # Cost Explorer's days are UTC dates, the end exclusive: through today.
        actual = actual_costs(platform.platform, name, start.date(), end.date() + timedelta(days=1))
        actuals[name] = actual
        rows += [
            deployment_cost(platform, registry, book, actual, name, e, start, end) for e in envs
        ]
    doc = {
        "window": {"since": since, "start": start.isoformat(), "end": end.isoformat()},
        "prices": None
        if book is None
        else {
            "source": book.source,
            "as_of": book.as_of.isoformat(),
            "region": book.region,
            "note": book.note,
            "table": book.origin or None,
        },
        "prices_error": prices_error or None,
        "deployments": rows,
        "actual": {
            p: {
                "available": a.available,
                "estimated": a.estimated,
                "shared_usd": a.shared if a.available else None,
                "reason": a.reason,
            }
            for p, a in actuals.items()
        },
    }
    if print_document(doc, output):
        return
    _print_table(doc, since, wide=output is Output.wide)


def _print_table(doc: dict[str, Any], since: str, *, wide: bool = False) -> None:
    columns = [
        "deployment", "tasks", "size", "estimate/month", f"billed ({since})",
        f"requests ({since})", "per 1k requests",
    ]  # fmt: skip
    table = Table(*columns, *(["estimate parts"] if wide else []), title="cost")
    for row in doc["deployments"]:
        svc = row["service"]
        size = "-" if svc is None else f"{svc['cpu'] / 1024:g} vCPU / {svc['memory'] / 1024:g} GB"
        if svc is not None and svc["architecture"] != "X86_64":
            size += f" {svc['architecture'].lower()}"
        est = row["estimate"]
        per_1k = _money(row["usd_per_1k_requests"], 4)
        if row["usd_per_1k_requests"] is not None:
            per_1k += f" ({row['per_1k_basis']})"
        cells = [
            row["deployment"],
            "-" if svc is None else str(svc["tasks"]),
            size,
            _money(est["monthly_usd"] if est else None),
            _money(row["actual_usd"]),
            "-" if row["requests"] is None else f"{row['requests']:,.0f}",
            per_1k,
        ]
        if wide:
            parts = [f"{i['name']} {_money(i['usd'])}" for i in (est or {}).get("items", [])]
            cells.append(", ".join(p for p in parts if not p.endswith("$0.00")) or "-")
        table.add_row(*cells)
    console.print(table)
    if not doc["deployments"]:
        console.print(
            "no deployments: no project is registered yet ('mlopsctl publish' registers one)"
            if not doc["actual"]
            else "no deployments"
        )
    prices = doc["prices"]
    if prices is None:
        err.print(f"prices: none: {escape(doc['prices_error'] or '')}")
    else:
        where = (
            f"AWS Price List API, published {prices['as_of']}"
            if prices["source"] == SOURCE_API
            else f"price table {escape(prices['table'])} taken {prices['as_of']}"
            if prices["source"] == SOURCE_FILE
            else f"shipped price table taken {prices['as_of']}"
        )
        note = f" ({escape(prices['note'])})" if prices["note"] else ""
        console.print(f"prices: {where}, {prices['region']}{note}")
    for project, actual in doc["actual"].items():
        if actual["available"]:
            state = "estimated, month not closed" if actual["estimated"] else "final"
            console.print(
                f"billed: Cost Explorer, {project} ({state}); shared by its deployments: "
                f"{_money(actual['shared_usd'])}"
            )
        else:
            console.print(f"billed: {project}: {escape(actual['reason'])}")
    for row in doc["deployments"]:
        for note in row["notes"]:
            console.print(f"  {row['deployment']}: {escape(note)}")


# -- prices ---------------------------------------------------------------------------
def prices(
    region: str = typer.Option(None, help="Region (default: the platform's)."),
    output: Output = output_option(),
    write_table: Path = typer.Option(
        None,
        "--write-table",
        help="Fetch the shipped table's regions from the Price List API and write a new "
        "table, dated today, to this file.",
    ),
) -> None:
    """The prices estimates use, and where they come from (MLOPS_PRICES: auto, api, table)."""
    if write_table is not None:
        _write_table(write_table)
        return
    region = region or context.platform().region
    book = PriceResolver.from_settings(context.settings()).get(region)
    doc = {
        "region": book.region,
        "source": book.source,
        "as_of": book.as_of.isoformat(),
        "note": book.note,
        "prices": book.prices.model_dump(),
    }
    if print_document(doc, output):
        return
    p = book.prices
    table = Table("item", "USD", "per", title=f"prices in {region}")
    for arch, rates in p.fargate.items():
        table.add_row(f"Fargate vCPU ({arch.lower()})", f"{rates.vcpu_hour:g}", "vCPU-hour")
        table.add_row(f"Fargate memory ({arch.lower()})", f"{rates.gb_hour:g}", "GB-hour")
    table.add_row("Application Load Balancer", f"{p.alb_hour:g}", "hour")
    table.add_row("Load Balancer Capacity Unit", f"{p.lcu_hour:g}", "LCU-hour")
    table.add_row("S3 Standard storage", f"{p.s3_gb_month:g}", "GB-month")
    table.add_row("CloudWatch Logs ingestion", f"{p.logs_ingested_gb:g}", "GB")
    console.print(table)
    console.print(f"source: {escape(book.describe())}")


def _write_table(path: Path) -> None:
    current = shipped_table()
    regions = {}
    for region in sorted(current.regions):
        try:
            regions[region], _ = fetch_region_prices(region)
        except (ClientError, BotoCoreError, PriceListIncomplete, KeyError, ValueError) as exc:
            raise PricesUnavailable(
                f"cannot refresh {region} from the Price List API: {exc}",
                hint="run it with credentials allowed pricing:GetProducts",
            ) from None
    table = PriceTable(taken=datetime.now(UTC).date(), source=current.source, regions=regions)
    path.write_text(json.dumps(table.model_dump(mode="json"), indent=2) + "\n")
    console.print(f"wrote {len(regions)} regions' prices, taken {table.taken}, to {path}")
