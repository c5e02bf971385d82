"""``mlopsctl publish | models | promote | rollback | history | status``: the registry and
the pointer."""

from __future__ import annotations

import contextlib
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.table import Table

from mlops_core.errors import IntegrityError, NotFound
from mlops_core.gates import METRIC_LABELS, metric, primary
from mlops_core.pointer import PointerStore
from mlops_core.project import ARTIFACTS_DIR
from mlops_core.registry import Registry, sign_candidate
from mlopsctl import context
from mlopsctl.context import (
    PROJECT_DIR_HELP,
    PROJECT_HELP,
    Output,
    console,
    err,
    output_option,
    print_document,
    project_dir,
    project_name,
)

if TYPE_CHECKING:
    from controller.observe import ServiceState, TaskDefinitionState

ENV_OPTION = typer.Option(..., "--env", "-e", help="Environment, e.g. prod.")


def _r2(metrics: dict) -> str:
    value = metric(metrics, "r2")
    return "-" if value is None else f"{value:.4f}"


def publish(
    project_dir_: Path = typer.Option(None, "--project-dir", help=PROJECT_DIR_HELP),
    artifacts: Path = typer.Option(
        None, help="Artifacts folder to publish (default: PROJECT/artifacts)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the version id."),
) -> None:
    """Publish the trained artifacts as an immutable, digest-verified version in S3."""
    from mlops_core.project import load_project

    pdir = project_dir(project_dir_)
    config = load_project(pdir)
    folder = artifacts or pdir / ARTIFACTS_DIR
    # The first publish registers the project; later ones never change its registration.
    result = Registry(context.platform()).publish(folder, config=config)
    if result.policy_note is not None:
        err.print(f"[yellow]{escape(result.policy_note)}[/]")
    if quiet:
        typer.echo(result.version)
        return
    console.print(f"published [bold]{result.project}[/] version [bold]{result.version}[/]")
    console.print(f"  {result.uri}")
    if result.registered is not None:
        console.print(f"  registered {result.project} (registration revision {result.registered})")


def sign(
    uri: str = typer.Argument(
        ..., help="A trained artifacts folder: s3://bucket/prefix/ (a candidate) or a path."
    ),
) -> None:
    """Sign a trained artifacts folder with the publisher's key, so the controller may
    publish it (``deploy --candidate`` does this itself). Every file's digest is checked
    first; an existing valid signature is kept, another one refused."""
    where, created = sign_candidate(uri, Registry(context.platform()).signing_key)
    console.print(f"{'signed' if created else 'already signed'}: {where}")


def models(
    project: str = typer.Option(None, "--project", "-p", help=PROJECT_HELP),
    project_dir_: Path = typer.Option(None, "--project-dir", help=PROJECT_DIR_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only version ids, oldest first."),
    output: Output = output_option(),
) -> None:
    """List a project's published versions with their metrics."""
    name = project_name(project, project_dir_)
    registry = Registry(context.platform())
    if output in (Output.json, Output.yaml):
        registry.get_project(name)
        docs = [m.model_dump(mode="json") for m in registry.list_versions(name)]
        print_document({"project": name, "versions": docs}, output)
        return
    if quiet:
        registry.get_project(name)
        for m in registry.list_versions(name):
            typer.echo(m.version)
        return
    store = PointerStore(registry.platform)
    config = registry.get_project(name)
    live: dict[str, list[str]] = {}
    for env in config.envs:
        pointer = store.get(name, env)
        if pointer:
            live.setdefault(pointer.version, []).append(env)
    table = Table(
        "version", "created", "task", "metric", "value", "baseline", "rows", "size", "live in"
    )
    table.columns[0].no_wrap = True  # the id users copy into deploy --version: kept whole
    for m in registry.list_versions(name):
        key = primary(m.task)
        value, base = metric(m.metrics, key), metric(m.metrics, key, of="baseline")
        table.add_row(
            m.version,
            f"{m.created_at:%Y-%m-%d %H:%M}",
            m.task,
            METRIC_LABELS[key],
            "-" if value is None else f"{value:.4f}",
            "-" if base is None else f"{base:.4f}",
            f"{m.data.rows:,}",
            f"{m.files[m.model_file].size / 1e6:.1f} MB",
            ", ".join(live.get(m.version, [])),
        )
    console.print(table)


def promote(
    version: str = typer.Argument(..., help="A published version (see 'mlopsctl models')."),
    env: str = ENV_OPTION,
    project: str = typer.Option(None, "--project", "-p", help=PROJECT_HELP),
    project_dir_: Path = typer.Option(None, "--project-dir", help=PROJECT_DIR_HELP),
    force: bool = typer.Option(
        False,
        help="Promote although gates fail or a ModelDeployment owns ENV (needs --reason).",
    ),
    reason: str = typer.Option("", help="Why; recorded in the pointer."),
) -> None:
    """Point ENV at VERSION, if the project's quality gates pass and no ModelDeployment
    owns ENV."""
    from mlops_core.promotion import promote as do_promote

    reason = context.check_reason(reason)
    name = project_name(project, project_dir_)
    pointer, results = do_promote(
        name, env, version, reason=reason, force=force, registry=Registry(context.platform())
    )
    for r in results:
        console.print(f"  {r}")
    console.print(f"[bold]{name}/{env}[/] -> {pointer.version} (by {pointer.promoted_by})")


def rollback(
    env: str = ENV_OPTION,
    project: str = typer.Option(None, "--project", "-p", help=PROJECT_HELP),
    project_dir_: Path = typer.Option(None, "--project-dir", help=PROJECT_DIR_HELP),
    force: bool = typer.Option(
        False, help="Roll back although a ModelDeployment owns ENV (needs --reason)."
    ),
    reason: str = typer.Option("", help="Why; recorded in the pointer."),
) -> None:
    """Reset ENV's pointer to the version it had before the last promotion (refused
    while a ModelDeployment owns ENV, unless forced)."""
    from mlops_core.promotion import rollback as do_rollback

    reason = context.check_reason(reason)
    name = project_name(project, project_dir_)
    before, after = do_rollback(
        name, env, reason=reason, force=force, registry=Registry(context.platform())
    )
    console.print(f"[bold]{name}/{env}[/] rolled back: {before.version} -> {after.version}")


def history(
    env: str = ENV_OPTION,
    project: str = typer.Option(None, "--project", "-p", help=PROJECT_HELP),
    project_dir_: Path = typer.Option(None, "--project-dir", help=PROJECT_DIR_HELP),
    limit: int = typer.Option(20, "--limit", "-n", min=1, help="Show this many entries."),
    output: Output = output_option(),
) -> None:
    """ENV's promotion log, newest first: every promotion and rollback, who and why."""
    from mlops_core.promotion_log import PromotionLog

    name = project_name(project, project_dir_)
    registry = Registry(context.platform())
    registry.get_project(name).check_env(env)
    log = PromotionLog(registry.platform)
    entries = log.history(name, env, limit=limit)
    missing = log.missing(entries, limit)
    gap = (
        IntegrityError(
            f"{len(missing)} entr{'y' if len(missing) == 1 else 'ies'} of the promotion log "
            f"{'is' if len(missing) == 1 else 'are'} missing: "
            + ", ".join(str(s) for s in missing[:10])
            + (", ..." if len(missing) > 10 else ""),
            where=f"s3://{registry.bucket}/{registry.platform.promotions_prefix(name, env)}",
            hint="entries are never deleted by the platform: restore them from the bucket's "
            "object versions (an administrator) and find out who deleted them",
        )
        if missing
        else None
    )
    doc = {
        "project": name,
        "env": env,
        "entries": [e.model_dump(mode="json") for e in entries],
        "missing": missing,
    }
    if print_document(doc, output):
        if gap is not None:
            raise gap
        return
    if not entries:
        console.print(f"{name}/{env} has no promotions yet")
        return
    wide = output is Output.wide
    table = Table(
        "seq", "version", "action", "by", "at", "reason", *(["back", "sha256"] if wide else []),
        title=f"{name}/{env}",
    )  # fmt: skip
    table.columns[1].no_wrap = True  # the version id: kept whole, the reason wraps instead
    for e in entries:
        extra = ["-" if e.back is None else str(e.back), e.sha256[:12]] if wide else []
        table.add_row(
            str(e.seq),
            e.version,
            e.action,
            escape(e.promoted_by),
            f"{e.promoted_at:%Y-%m-%d %H:%M:%S}",
            escape(e.reason),
            *extra,
        )
    console.print(table)
    if gap is not None:
        raise gap  # after the table: what is left is still shown, never silently


def _revision(arn: str) -> str:
    """``family:revision`` of a task definition ARN (what ``aws ecs`` users recognise)."""
    return arn.rpartition("/")[2]


def _service_doc(service: ServiceState, td: TaskDefinitionState | None) -> dict[str, Any]:
    """The ECS side of one env, as plain JSON-ready values."""
    primary = service.primary
    return {
        "name": service.name,
        "status": service.status,
        "task_definition": service.task_definition,
        "revision": _revision(service.task_definition),
        # None: the revision is gone, or is not a serving revision the controller made.
        "version": td.spec.version if td is not None and td.spec is not None else None,
        "deployment": None
        if primary is None
        else {
            "revision": _revision(primary.task_definition),
            "rollout_state": primary.rollout_state,
            "rollout_reason": primary.rollout_reason,
            "running": primary.running,
            "desired": primary.desired,
            "failed_tasks": primary.failed_tasks,
        },
    }


def _env_doc(
    registry: Registry,
    store: PointerStore,
    project: str,
    env: str,
    view: tuple[ServiceState | None, TaskDefinitionState | None] | None,
) -> dict[str, Any]:
    """One env: the pointer, its version's primary metric (R² or macro F1; ``r2`` stays for
    regression, for older readers), the service, and whether they disagree.
    ``view`` None: ECS could not be read (``service`` and ``drift`` are then None)."""
    pointer = store.get(project, env)
    doc: dict[str, Any] = {
        "env": env,
        "pointer": None if pointer is None else pointer.model_dump(mode="json"),
        "r2": None,
        "metric": None,
        "published": None,
        "service": None,
        "drift": None,
    }
    if pointer is not None:
        try:
            manifest = registry.get_manifest(project, pointer.version)
        except NotFound:
            doc["published"] = False
        except IntegrityError as exc:
            doc["published"], doc["integrity_error"] = True, exc.render()
        else:
            key = primary(manifest.task)
            doc["r2"] = metric(manifest.metrics, "r2")
            doc["metric"] = {
                "name": key,
                "label": METRIC_LABELS[key],
                "value": metric(manifest.metrics, key),
            }
            doc["published"] = True
    if view is None:
        return doc
    service, td = view
    if service is not None:
        doc["service"] = _service_doc(service, td)
        # An unknown pin (revision gone or foreign) cannot be shown equal: flag it too.
        pinned = doc["service"]["version"]
        doc["drift"] = pinned is None or pointer is None or pinned != pointer.version
    else:
        doc["drift"] = False  # no service: nothing serves, so nothing disagrees
    return doc


def _ecs_cells(doc: dict[str, Any], ecs_error: str | None, *, short: bool = False) -> list[str]:
    """The service, serving, rollout and tasks cells of one env's row. ``short``: the
    serving cell is "= version" when the service pins the pointer's version, and
    "≠ VERSION" (the id whole) when it does not."""
    if ecs_error is not None:
        return ["?"] * 4
    service = doc["service"]
    if service is None:
        return ["-"] * 4
    revision = escape(service["revision"])
    if service["status"] != "ACTIVE":
        revision += f" ({service['status']})"
    serving = escape(service["version"] or "?")
    if short:
        serving = "= version" if not doc["drift"] else f"[bold red]≠[/] {serving}"
    elif doc["drift"]:
        serving += " [bold red]≠ pointer[/]"
    deployment = service["deployment"]
    if deployment is None:
        return [revision, serving, "-", "-"]
    rollout = deployment["rollout_state"] or "-"
    if deployment["revision"] != service["revision"]:
        rollout += f" (of {escape(deployment['revision'])})"
    return [revision, serving, rollout, f"{deployment['running']}/{deployment['desired']}"]


def status(
    project: str = typer.Option(None, "--project", "-p", help=PROJECT_HELP),
    project_dir_: Path = typer.Option(None, "--project-dir", help=PROJECT_DIR_HELP),
    output: Output = output_option(),
    as_json: bool = typer.Option(False, "--json", hidden=True, help="Same as -o json."),
) -> None:
    """Each env's live version, its metrics, when and by whom it was promoted, the ECS
    service serving it (revision, pinned version flagged when it differs, rollout) and
    the URL of its load balancer."""
    # Imported here: the controller's modules are not needed by the other commands.
    from botocore.exceptions import BotoCoreError, ClientError

    from controller import drifted
    from controller.loadbalancing import endpoint_url
    from controller.observe import service_views
    from controller.shifts import shift_view

    name = project_name(project, project_dir_)
    registry = Registry(context.platform())
    config = registry.get_project(name)
    store = PointerStore(registry.platform)
    views: dict[str, Any] = {}
    ecs_error = None
    try:
        views = service_views(registry.platform, name, config.envs)
    except (ClientError, BotoCoreError) as exc:
        # The pointers are still worth showing to someone who may not read ECS.
        ecs_error = f"cannot read the ECS services: {exc}"
    docs = [_env_doc(registry, store, name, env, views.get(env)) for env in config.envs]
    for doc in docs:
        # A progressive rollout under way: both versions and the share each one gets.
        doc["shift"] = None
        svc = (views.get(doc["env"]) or (None, None))[0]
        if svc is not None:
            with contextlib.suppress(ClientError, BotoCoreError):
                doc["shift"] = shift_view(registry.platform, svc)
        # Where the env answers: its load balancer's URL (the local data plane's loopback
        # port, or the DNS name on AWS); None without one.
        try:
            doc["endpoint"] = endpoint_url(registry.platform, name, doc["env"])
        except (ClientError, BotoCoreError):
            doc["endpoint"] = None
        # The newest drift check of the live version, as the controller's Drifted reads it.
        doc["drifted"] = None
        if doc["pointer"] is not None:
            obs = drifted.observe(registry.platform, name, doc["env"], doc["pointer"]["version"])
            if obs.result is not None or obs.error:
                value, reason, message = drifted.condition(obs)
                doc["drifted"] = {"status": value, "reason": reason, "message": message,
                                  "report": obs.report_uri or None}  # fmt: skip
    if as_json:
        output = Output.json
    if print_document({"project": name, "envs": docs, "ecs_error": ecs_error}, output):
        return
    if ecs_error is not None:
        err.print(f"[yellow]warning:[/] {escape(ecs_error)}; showing the pointers only")
    wide = output is Output.wide
    # Within 100 columns by default (kubectl's habit), version ids whole (they are copied
    # into approve/deploy --version): serving says "= version" when the service pins the
    # pointer's version. -o wide adds when, who, why, the service's revision and rollout.
    table = Table(title=name)
    table.add_column("env")
    table.add_column("version", no_wrap=True)
    table.add_column("metric")
    if wide:
        for column in ("promoted at", "by", "reason", "service"):
            table.add_column(column)
    table.add_column("serving", no_wrap=True)
    if wide:
        table.add_column("rollout")
    table.add_column("tasks", no_wrap=True)
    table.add_column("endpoint", overflow="fold")
    for doc in docs:
        pointer = doc["pointer"]
        service, serving, rollout, tasks = _ecs_cells(doc, ecs_error, short=not wide)
        if pointer is None:
            table.add_row(
                doc["env"], "-", "-", *(["-", "-", "", service] if wide else []), serving,
                *([rollout] if wide else []), tasks, doc["endpoint"] or "-",
            )  # fmt: skip
            continue
        if not doc["published"]:
            r2 = "(unpublished!)"
        elif doc.get("integrity_error"):
            r2 = "(integrity!)"
        elif doc["metric"] is None or doc["metric"]["value"] is None:
            r2 = "-"
        else:
            r2 = f"{doc['metric']['label']} {doc['metric']['value']:.4f}"
        promoted_at = datetime.fromisoformat(pointer["promoted_at"])
        more = [
            f"{promoted_at:%Y-%m-%d %H:%M}",
            escape(pointer["promoted_by"]),
            escape(pointer["reason"]),
            service,
        ]
        table.add_row(
            doc["env"],
            pointer["version"],
            r2,
            *(more if wide else []),
            serving,
            *([rollout] if wide else []),
            tasks,
            doc["endpoint"] or "-",
        )
    console.print(table)
    for doc in docs:
        shift = doc["shift"]
        if shift is not None:
            new, old = shift["new"], shift["stable"]
            paused = (
                f", paused at hook {shift['paused_at_hook']}" if shift["paused_at_hook"] else ""
            )
            console.print(
                f"{doc['env']}: {shift['strategy']} rollout: {new['version']} gets "
                f"{new['percent'] or 0:g}%, {old['version'] or '-'} {old['percent'] or 0:g}% "
                f"(ECS stage {shift['stage']}{paused})",
                soft_wrap=True,
            )
        if doc["drifted"] is not None:
            d = doc["drifted"]
            colour = {"True": "bold red", "False": "green"}.get(d["status"], "yellow")
            console.print(
                f"{doc['env']}: [{colour}]Drifted={d['status']}[/] ({d['reason']}) "
                f"{escape(d['message'])}",
                soft_wrap=True,
            )
