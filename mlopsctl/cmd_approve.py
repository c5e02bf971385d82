"""``mlopsctl approve`` and ``mlopsctl reject``: the decision on a progressive rollout.

A ModelDeployment that needs approval (``spec.approval``, or the project's
``approval_required`` envs) holds each new revision before production traffic shifts,
with ``Progressing=True AwaitingApproval``. These commands find the rollout in progress
(ECS's service deployment of the env's service), check that it is of the version the
caller means, and record the decision, sealed, for that rollout only
(:mod:`mlops_core.approvals`); the controller then continues it, or rolls it back. A
decision may be recorded as soon as the rollout starts: the controller acts on it when
the rollout reaches its pause.

Kubernetes users can annotate instead (``kubectl annotate mdep NAME
mlops.platform.io/approve=VERSION``); who may do that is Kubernetes RBAC's decision.
"""

from __future__ import annotations

from typing import Literal

import typer

from controller import shifts
from controller.observe import parse_task_definition
from controller.plan import approval
from controller.sources import open_source
from mlops_core import aws
from mlops_core.approvals import PAST, Approvals, rollout_id
from mlops_core.artifacts import VERSION_RE
from mlops_core.errors import Conflict, InvalidInput, NotFound
from mlops_core.naming import Platform
from mlops_core.project import ProjectConfig
from mlops_core.registry import Registry
from mlopsctl import context
from mlopsctl.context import Output, console, output_option, print_document

#: The longest reason a decision records (ApprovalDecision.reason).
MAX_REASON = 500
NAME_HELP = "The ModelDeployment, e.g. demo-prod ('mlopsctl deploy' names it PROJECT-ENV)."


def _project(platform: Platform, project: str) -> ProjectConfig | None:
    """The project's registered configuration (its approval_required), None if unregistered."""
    try:
        return Registry(platform).get_project(project)
    except NotFound:
        return None


def _decide(
    decision: Literal["approve", "reject"],
    name: str,
    version: str | None,
    reason: str,
    source: str | None,
    output: Output,
) -> None:
    reason = context.check_reason(reason)
    if not reason:
        raise InvalidInput(
            f"{decision} needs --reason TEXT", hint="the reason is recorded with who decided"
        )
    if len(reason.strip()) > MAX_REASON:
        raise InvalidInput(
            f"--reason is {len(reason.strip())} characters, more than the {MAX_REASON} "
            "a decision records",
            hint="say why in a sentence; link to the longer text (a ticket, a review)",
        )
    if version is not None and not VERSION_RE.fullmatch(version):
        raise InvalidInput(
            f"--version {version[:80]!r} is not a model version",
            hint="versions look like 20260101T000000Z-abc1234 ('mlopsctl models')",
        )
    settings = context.settings()
    platform = settings.names()
    uri = source or settings.deploy_source
    doc = open_source(uri, platform=platform, create=False).read(name)
    if doc is None or doc.deployment is None:
        raise NotFound(
            f"no ModelDeployment {name!r} in {uri}",
            hint="'mlopsctl controller run --once' lists the deployments of a source; "
            "pass --source if it is not the default",
        )
    spec = doc.deployment.spec
    if approval(doc.deployment, _project(platform, spec.project)) is None:
        why = (
            f"its strategy is {spec.strategy.type}: only Canary, Linear and BlueGreen "
            "rollouts pause for a decision"
            if not spec.strategy.shifts_traffic
            else "neither spec.approval nor the project's approval_required "
            f"({spec.env}) asks for one"
        )
        raise Conflict(
            f"{name} needs no approval, so nothing waits for this {decision}: {why}",
            where=f"ModelDeployment {name} in {uri}",
            hint="set spec.approval.required: true (or add the env to approval_required "
            "in project.yaml) for rollouts to wait for a decision",
        )
    service = platform.service_name(spec.project, spec.env)
    ecs = aws.client("ecs")
    found = ecs.describe_services(cluster=platform.ecs_cluster, services=[service])["services"]
    live = next((s for s in found if s.get("status") == "ACTIVE"), None)
    sd = (
        shifts.service_deployment(platform, live["serviceArn"], live["taskDefinition"])
        if live
        else None
    )
    if live is None or sd is None:
        raise NotFound(
            f"{name} has no rollout in progress to {decision}",
            where=f"ECS service {service}",
            hint=f"'mlopsctl status --env {spec.env} --project {spec.project}' shows what runs",
        )
    td = ecs.describe_task_definition(taskDefinition=live["taskDefinition"])["taskDefinition"]
    parsed = parse_task_definition(td).spec
    rolling = parsed.version if parsed is not None else None
    if rolling is None:
        raise NotFound(f"the rollout of {name} is not of a model version this platform serves")
    if version is not None and version != rolling:
        raise Conflict(
            f"the rollout in progress for {name} is of {rolling}, not {version}",
            hint="decisions apply to one rollout; check the version with 'mlopsctl status'",
        )
    record = Approvals(platform).record(
        spec.project,
        spec.env,
        service_deployment=sd["serviceDeploymentArn"],
        decision=decision,
        version=rolling,
        by=platform.actor,
        reason=reason,
    )
    doc_out = record.model_dump(mode="json")
    if print_document(doc_out, output):
        return
    then = "continues it at its pause" if decision == "approve" else "rolls it back"
    rollout = rollout_id(sd["serviceDeploymentArn"])
    console.print(
        f"{PAST[decision]} {rolling} for {name} (rollout {rollout}), by {record.by}: "
        f"the controller {then}"
    )


def approve(
    name: str = typer.Argument(..., help=NAME_HELP),
    version: str = typer.Option(None, help="The version you approve (checked against ECS)."),
    reason: str = typer.Option("", "--reason", help="Why (recorded with who and when)."),
    source: str = typer.Option(None, help="Where the manifest is (default: $MLOPS_DEPLOY_SOURCE)."),
    output: Output = output_option(),
) -> None:
    """Let a held rollout shift production traffic to its new version."""
    _decide("approve", name, version, reason, source, output)


def reject(
    name: str = typer.Argument(..., help=NAME_HELP),
    version: str = typer.Option(None, help="The version you reject (checked against ECS)."),
    reason: str = typer.Option("", "--reason", help="Why (recorded with who and when)."),
    source: str = typer.Option(None, help="Where the manifest is (default: $MLOPS_DEPLOY_SOURCE)."),
    output: Output = output_option(),
) -> None:
    """Roll back a held rollout: its new version never takes production traffic."""
    _decide("reject", name, version, reason, source, output)
