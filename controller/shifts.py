"""What the controller reads about a traffic-shifting rollout in progress.

Only for a service whose ECS deployment shifts traffic (Canary, Linear, BlueGreen) and is
in progress, so a converged fleet costs nothing more:

- ECS: the service deployment (``ListServiceDeployments`` + ``DescribeServiceDeployments``):
  its lifecycle stage and the PAUSE hook awaiting action, if any, and once per revision
  (``DescribeServiceRevisions``) the task definition it deploys, so a rollback ECS started
  between two reads is never taken for the rollout the service was read with;
- ELB: the production listener rule's weights (``DescribeRules``): the share of traffic
  each revision gets;
- at an analysis pause: CloudWatch (``GetMetricData``, one call) for both target groups'
  ``RequestCount``, 5xx counts and p99 ``TargetResponseTime`` over the step, and both
  versions' captured predictions when ``spec.analysis.maxPredictionShift`` is set;
- at an approval pause: the approval recorded for this service deployment.

Everything a verdict rests on comes from AWS, never from this process' memory, so a
controller restarted mid-shift measures the same step again (:mod:`controller.progressive`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from controller.analysis import prediction_shift
from controller.api import Analysis, RevisionValues
from mlops_core import aws
from mlops_core.capture import read_window, schema_for
from mlops_core.cost.requests import NAMESPACE, load_balancer_dimension, target_group_dimension
from mlops_core.logs import get_logger
from mlops_core.naming import Platform

log = get_logger("controller.shifts")

ACTIVE_STATUSES = ["PENDING", "IN_PROGRESS", "ROLLBACK_REQUESTED", "ROLLBACK_IN_PROGRESS"]
#: GetMetricData's period is a multiple of 60 s for standard-resolution metrics.
PERIOD_UNIT = 60


@dataclass(frozen=True)
class Hook:
    """A PAUSE hook holding the deployment."""

    id: str
    stage: str
    expires_at: datetime | None


@dataclass(frozen=True)
class Measurement:
    """One step's traffic, per revision (None: could not be read; the step waits)."""

    canary: RevisionValues
    stable: RevisionValues
    prediction_shift: float | None = None
    error: str = ""


@dataclass(frozen=True)
class ShiftState:
    service_deployment: str
    status: str
    stage: str | None
    hook: Hook | None
    #: Target group ARN -> weight of the production listener rule (empty: not read).
    weights: Mapping[str, int] = field(default_factory=dict)
    measurement: Measurement | None = None

    def percent(self, target_group: str) -> float | None:
        total = sum(self.weights.values())
        return 100.0 * self.weights.get(target_group, 0) / total if total else None


def service_deployment(
    platform: Platform, service_arn: str, task_definition: str
) -> dict[str, Any] | None:
    """The service's newest active service deployment, described, if it deploys
    ``task_definition``, the one the service was read with (None: none active, or the
    newest deploys another: ECS started a rollback after the service was read, and this
    pass must not take the rollback for the rollout it knows; the next pass reads both
    again)."""
    ecs = aws.client("ecs")
    listed = ecs.list_service_deployments(
        cluster=platform.ecs_cluster, service=service_arn, status=ACTIVE_STATUSES
    ).get("serviceDeployments", [])
    if not listed:
        return None
    newest = max(listed, key=lambda d: d.get("createdAt") or datetime.min)
    found = ecs.describe_service_deployments(
        serviceDeploymentArns=[newest["serviceDeploymentArn"]]
    ).get("serviceDeployments", [])
    if not found:
        return None
    target = (found[0].get("targetServiceRevision") or {}).get("arn")
    if target and _revision_task_definition(target) != task_definition:
        log.info(
            "rollout read mid-change: waiting for the next pass",
            service_deployment=newest["serviceDeploymentArn"],
            task_definition=task_definition,
        )
        return None
    return found[0]


#: Service revision ARN -> the task definition it runs. Revisions never change.
_revision_task_definitions: dict[str, str] = {}


def _revision_task_definition(revision_arn: str) -> str | None:
    """The task definition a service revision runs, read once per process
    (DescribeServiceRevisions); None while ECS does not describe it."""
    if revision_arn not in _revision_task_definitions:
        ecs = aws.client("ecs")
        found = ecs.describe_service_revisions(serviceRevisionArns=[revision_arn]).get(
            "serviceRevisions"
        )
        if not found or not found[0].get("taskDefinition"):
            return None
        if len(_revision_task_definitions) >= 1024:  # bounded: a long-lived controller
            _revision_task_definitions.clear()
        _revision_task_definitions[revision_arn] = found[0]["taskDefinition"]
    return _revision_task_definitions[revision_arn]


def parse(sd: Mapping[str, Any], weights: Mapping[str, int]) -> ShiftState:
    hook = next(
        (
            Hook(h["hookId"], sd.get("lifecycleStage") or "", h.get("expiresAt"))
            for h in sd.get("lifecycleHookDetails") or []
            if h.get("status") == "AWAITING_ACTION" and h.get("hookId")
        ),
        None,
    )
    return ShiftState(
        service_deployment=sd["serviceDeploymentArn"],
        status=sd.get("status", ""),
        stage=sd.get("lifecycleStage"),
        hook=hook,
        weights=dict(weights),
    )


def rule_weights(rule_arn: str) -> dict[str, int]:
    (rule,) = aws.client("elbv2").describe_rules(RuleArns=[rule_arn])["Rules"]
    out: dict[str, int] = {}
    for action in rule.get("Actions") or []:
        if action.get("Type") != "forward":
            continue
        groups = (action.get("ForwardConfig") or {}).get("TargetGroups") or []
        if groups:
            out.update({g["TargetGroupArn"]: int(g.get("Weight", 1)) for g in groups})
        elif action.get("TargetGroupArn"):
            out[action["TargetGroupArn"]] = 1
    return out


# -- metrics ---------------------------------------------------------------------------
_COUNTS = ("RequestCount", "HTTPCode_Target_5XX_Count", "HTTPCode_ELB_5XX_Count")


def _queries(lb: str, groups: Mapping[str, str], period: int) -> list[dict[str, Any]]:
    out = []
    for label, arn in groups.items():
        dims = [
            {"Name": "TargetGroup", "Value": target_group_dimension(arn)},
            {"Name": "LoadBalancer", "Value": lb},
        ]
        metrics = [(m, "Sum") for m in _COUNTS] + [("TargetResponseTime", "p99")]
        for i, (name, stat) in enumerate(metrics):
            out.append(
                {
                    "Id": f"{label}{i}",
                    "MetricStat": {
                        "Metric": {"Namespace": NAMESPACE, "MetricName": name, "Dimensions": dims},
                        "Period": period,
                        "Stat": stat,
                    },
                    "ReturnData": True,
                }
            )
    return out


def traffic(
    rule_arn: str, groups: Mapping[str, str], start: datetime, end: datetime
) -> dict[str, RevisionValues]:
    """Each target group's requests, 5xx and p99 latency over [start, end), by label."""
    period = max(PERIOD_UNIT, math.ceil((end - start).total_seconds() / PERIOD_UNIT) * PERIOD_UNIT)
    lb = load_balancer_dimension(rule_arn)
    found: dict[str, list[float]] = {}
    token = None
    cw = aws.client("cloudwatch")
    while True:
        kwargs: dict[str, Any] = {
            "MetricDataQueries": _queries(lb, groups, period),
            "StartTime": start,
            "EndTime": end,
        }
        if token:
            kwargs["NextToken"] = token
        page = cw.get_metric_data(**kwargs)
        for r in page.get("MetricDataResults", []):
            found.setdefault(r["Id"], []).extend(float(v) for v in r.get("Values") or [])
        token = page.get("NextToken")
        if not token:
            break
    out = {}
    for label in groups:
        requests = int(sum(found.get(f"{label}0", [])))
        errors = int(sum(found.get(f"{label}1", [])) + sum(found.get(f"{label}2", [])))
        p99 = found.get(f"{label}3") or []
        out[label] = RevisionValues(
            requests=requests,
            errors=errors,
            error_rate=errors / requests if requests else None,
            # One period covers the window: its p99 (the largest, if CloudWatch split it).
            latency_p99_ms=1000.0 * max(p99) if p99 else None,
            window_start=start,
            window_end=end,
        )
    return out


def predictions(
    platform: Platform, manifest: Any, env: str, start: datetime, end: datetime
) -> list[Any]:
    window = read_window(platform, schema_for(manifest), env, start, end, columns=["output"])
    return window.prediction_column().to_pylist() if window.rows else []


def measure(
    platform: Platform,
    analysis: Analysis,
    *,
    rule_arn: str,
    canary_group: str,
    stable_group: str,
    since: datetime,
    now: datetime,
    env: str,
    canary_manifest: Any,
    stable_manifest: Any | None,
) -> Measurement:
    """The step since ``since``. The stable revision is read over the same window; when
    it served too little there (blue/green: all traffic is on the new one), over the
    window of the same length just before, its traffic before the shift."""
    try:
        values = traffic(rule_arn, {"c": canary_group, "s": stable_group}, since, now)
        canary, stable = values["c"], values["s"]
        stable_start, stable_end = since, now
        if stable.requests < analysis.min_requests:
            stable_start, stable_end = since - (now - since), since
            stable = traffic(rule_arn, {"s": stable_group}, stable_start, stable_end)["s"]
        canary = canary.model_copy(update={"version": canary_manifest.version})
        if stable_manifest is not None:
            stable = stable.model_copy(update={"version": stable_manifest.version})
        shift = None
        if analysis.max_prediction_shift is not None and stable_manifest is not None:
            shift = prediction_shift(
                predictions(platform, canary_manifest, env, since, now + timedelta(seconds=1)),
                predictions(platform, stable_manifest, env, stable_start, stable_end),
                schema_for(canary_manifest).task,
            )
        return Measurement(canary=canary, stable=stable, prediction_shift=shift)
    except (ClientError, BotoCoreError) as exc:
        log.warning("cannot measure the rollout step", error=str(exc)[:300])
        return Measurement(canary=RevisionValues(), stable=RevisionValues(), error=str(exc)[:300])


def shift_view(platform: Platform, svc: Any) -> dict[str, Any] | None:
    """A traffic-shifting rollout in progress as read-only views show it (``mlopsctl
    status``): ECS's stage, the hook it waits at, and each version's share of production
    traffic (None: no such rollout)."""
    from controller.observe import IN_PROGRESS, parse_task_definition

    strategy = svc.deployment_strategy
    if (
        strategy is None
        or not strategy.shifts_traffic
        or svc.production_rule is None
        or svc.rollout is None
        or svc.rollout.rollout_state != IN_PROGRESS
    ):
        return None
    sd = service_deployment(platform, svc.arn, svc.task_definition)
    if sd is None:
        return None
    state = parse(sd, rule_weights(svc.production_rule))
    ecs = aws.client("ecs")

    def version(arn: str) -> str | None:
        td = ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]
        spec = parse_task_definition(td).spec
        return spec.version if spec is not None else None

    new = version(svc.task_definition)
    old = next(
        (
            version(d.task_definition)
            for d in svc.deployments
            if d.task_definition != svc.task_definition
        ),
        None,
    )
    groups = [g for g in (*svc.load_balancers[:1], svc.alternate_target_group) if g]
    shares = {g: state.percent(g) for g in groups}
    # The new revision is in the group that gained traffic: the lighter one until the
    # shift passes half (a BlueGreen switch is all or nothing, and then it is the heavier).
    light = min(groups, key=lambda g: shares[g] or 0.0) if groups else None
    heavy = next((g for g in groups if g != light), None)
    stage = state.stage or ""
    switched = strategy.strategy == "BLUE_GREEN" and stage in (
        "PRODUCTION_TRAFFIC_SHIFT",
        "POST_PRODUCTION_TRAFFIC_SHIFT",
        "BAKE_TIME",
        "CLEAN_UP",
    )
    canary, stable = (heavy, light) if switched else (light, heavy)
    return {
        "strategy": strategy.strategy,
        "stage": state.stage,
        "status": state.status,
        "paused_at_hook": state.hook.id if state.hook else None,
        "new": {"version": new, "percent": shares.get(canary) if canary else None},
        "stable": {"version": old, "percent": shares.get(stable) if stable else None},
    }
