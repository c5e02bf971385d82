"""The ECS service scheduler: keeps each service's deployments running, as ECS does.

Each pass reads the cluster through the endpoint (DescribeServices, DescribeTasks,
DescribeTargetHealth), lets the agent move tasks through their lifecycle, and for every
ACTIVE service does what ECS's scheduler does for all deployment strategies:

- registers a task's address into the target groups of the service's ``loadBalancers``
  once it is RUNNING, and on stop deregisters it and waits until the target has drained
  (the target group's deregistration delay) before the task is stopped;
- a task is healthy when it is RUNNING and healthy in every one of its target groups; a
  task unhealthy there after ``healthCheckGracePeriodSeconds`` is stopped ("Task failed
  ELB health checks in (target-group ...)");
- counts the failed tasks of each deployment (failed to start, exited, failed health
  checks) and runs the deployment circuit breaker: a threshold of ``thresholdConfiguration``
  (by default 50 % of the desired count, at least 3, at most 200; reset when a task turns
  healthy unless ``resetOnHealthyTask`` is false) turns the rollout FAILED and, with
  ``rollback``, starts a deployment of the last COMPLETED one;
- honours StopServiceDeployment (ROLLBACK and ABORT).

Which tasks to start and stop, and when a deployment is complete, is the strategy's
(:mod:`.strategies`; ROLLING in :mod:`.rolling`). A DRAINING (deleted) service has all
its tasks stopped, then turns INACTIVE.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mlops_core.logs import get_logger
from mlopsctl.dataplane import moto_bridge as bridge
from mlopsctl.dataplane.agent import Agent, private_ip, task_id
from mlopsctl.dataplane.clients import Clients
from mlopsctl.dataplane.settings import DataPlaneSettings
from mlopsctl.dataplane.strategies import strategy_for

log = get_logger("dataplane.scheduler")

SCHEDULER = "ServiceSchedulerInitiated"
FAILED_STOP_CODES = ("TaskFailedToStart", "EssentialContainerExited")
BREAKER_MIN, BREAKER_MAX = 3, 200


def _chunks(items: list, n: int) -> Iterable[list]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def breaker_threshold(config: dict[str, Any], desired: int) -> int:
    """ECS's failure threshold for ``deploymentCircuitBreaker`` at ``desired`` tasks."""
    threshold = (config.get("deploymentCircuitBreaker") or {}).get("thresholdConfiguration") or {}
    kind = threshold.get("type", "BOUNDED_PERCENT")
    value = int(threshold.get("value", 50))
    if kind == "COUNT":
        return max(1, value)
    computed = math.ceil(desired * value / 100)
    if kind == "UNBOUNDED_PERCENT":
        return max(1, computed)
    return min(max(computed, BREAKER_MIN), BREAKER_MAX)


@dataclass
class Snapshot:
    services: list[dict[str, Any]] = field(default_factory=list)
    tasks: list[dict[str, Any]] = field(default_factory=list)
    #: (target group ARN, target id) -> TargetHealth state
    health: dict[tuple[str, str], str] = field(default_factory=dict)
    reasons: dict[tuple[str, str], str] = field(default_factory=dict)
    #: Targets whose health checks got an HTTP answer (a wrong status code): their
    #: process is up, its start is over.
    answering: set[tuple[str, str]] = field(default_factory=set)


class EcsScheduler:
    def __init__(self, settings: DataPlaneSettings, clients: Clients, agent: Agent):
        self.settings = settings
        self.clients = clients
        self.agent = agent
        # The scheduler's own bookkeeping (ECS keeps it too; it is lost with moto's state).
        self._finished: set[str] = set()  # STOPPED tasks already handled
        self._counted: set[str] = set()  # failed tasks already counted
        self._was_healthy: set[str] = set()
        self._answered: dict[str, datetime] = {}  # task -> when its checks first got an answer
        self._registered: set[tuple[str, str]] = set()  # (target group, task)
        self._breaker: dict[str, int] = {}  # deployment id -> failures
        self._rollbacks: dict[str, str] = {}  # rollback deployment -> the failed one
        self._reported: dict[str, tuple[int, int]] = {}
        # Traffic shifting (.shifting): each deployment's progress, and the target group
        # each deployment's tasks register in (blue or green).
        self._shifts: dict[str, Any] = {}
        self._colors: dict[str, str] = {}

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                busy = self.step()
            except Exception as exc:  # noqa: BLE001 - one bad pass must not end the data plane
                log.exception("scheduler pass failed", error=str(exc))
                busy = False
            if not busy:
                stop.wait(self.settings.loop_seconds)

    # -- reading -----------------------------------------------------------------------
    def read(self) -> Snapshot:
        ecs = self.clients("ecs")
        snap = Snapshot()
        clusters = [
            a for p in ecs.get_paginator("list_clusters").paginate() for a in p["clusterArns"]
        ]
        for cluster in clusters:
            arns = [
                a
                for p in ecs.get_paginator("list_services").paginate(cluster=cluster)
                for a in p["serviceArns"]
            ]
            for chunk in _chunks(arns, 10):
                snap.services += ecs.describe_services(cluster=cluster, services=chunk)["services"]
            task_arns = [
                a
                for status in ("RUNNING", "STOPPED")
                for p in ecs.get_paginator("list_tasks").paginate(
                    cluster=cluster, desiredStatus=status
                )
                for a in p["taskArns"]
                if a not in self._finished
            ]
            for chunk in _chunks(task_arns, 100):
                snap.tasks += ecs.describe_tasks(cluster=cluster, tasks=chunk)["tasks"]
        groups = {
            group
            for s in snap.services
            for lb in s.get("loadBalancers") or []
            for group in (
                lb.get("targetGroupArn"),
                (lb.get("advancedConfiguration") or {}).get("alternateTargetGroupArn"),
            )
            if group
        }
        elb = self.clients("elbv2")
        for group in groups:
            try:
                found = elb.describe_target_health(TargetGroupArn=group)["TargetHealthDescriptions"]
            except elb.exceptions.TargetGroupNotFoundException:
                continue
            for d in found:
                key = (group, d["Target"]["Id"])
                snap.health[key] = d["TargetHealth"]["State"]
                snap.reasons[key] = d["TargetHealth"].get("Description", "")
                if d["TargetHealth"].get("Reason") == "Target.ResponseCodeMismatch":
                    snap.answering.add(key)
        return snap

    # -- one pass ----------------------------------------------------------------------
    def step(self) -> bool:
        """One pass; True if it started tasks (the agent should launch them soon)."""
        snap = self.read()
        self.agent.step(snap.tasks)
        by_service: dict[str, list[dict[str, Any]]] = {}
        for t in snap.tasks:
            group = t.get("group", "")
            if group.startswith("service:"):
                by_service.setdefault(f"{t['clusterArn']}|{group[8:]}", []).append(t)
        busy = False
        for svc in snap.services:
            tasks = by_service.get(f"{svc['clusterArn']}|{svc['serviceName']}", [])
            ctx = ServiceContext(self, svc, tasks, snap)
            try:
                ctx.run()
            except Exception as exc:  # noqa: BLE001 - one service must not stop the others
                log.exception("service pass failed", service=svc["serviceName"], error=str(exc))
            busy = busy or ctx.started
        for t in snap.tasks:
            if t.get("lastStatus") == "STOPPED" and not t.get("group", "").startswith("service:"):
                self._finished.add(t["taskArn"])
        return busy


class ServiceContext:
    """One service in one pass: its deployments and tasks, and the actions on them."""

    def __init__(
        self, scheduler: EcsScheduler, service: dict[str, Any], tasks: list[dict], snap: Snapshot
    ):
        self.s = scheduler
        self.service = service
        self.arn = service["serviceArn"]
        self.name = service["serviceName"]
        self.snap = snap
        self.config = service.get("deploymentConfiguration") or {}
        self.deployments = service.get("deployments") or []
        self.primary: dict[str, Any] | None = next(
            (d for d in self.deployments if d["status"] == "PRIMARY"), None
        )
        self.load_balancers = [
            lb for lb in service.get("loadBalancers") or [] if lb.get("targetGroupArn")
        ]
        self.active = [t for t in tasks if t.get("lastStatus") != "STOPPED"]
        self.stopped = [t for t in tasks if t.get("lastStatus") == "STOPPED"]
        self.started = False
        self._stopped_now: list[str] = []

    # -- views -------------------------------------------------------------------------
    def live(self, deployment_id: str | None = None) -> list[dict[str, Any]]:
        """Tasks meant to run (desiredStatus RUNNING), of one deployment or all."""
        return [
            t
            for t in self.active
            if t.get("desiredStatus") == "RUNNING"
            and (deployment_id is None or t.get("startedBy") == deployment_id)
        ]

    def occupied(self) -> list[dict[str, Any]]:
        """Every task not STOPPED yet (stopping ones still hold their resources)."""
        return self.active

    def target_groups(self, task: dict[str, Any]) -> list[dict[str, Any]]:
        """The load balancers a task registers in: every one of the service's, except
        that a traffic-shifting deployment's tasks register in its colour's group only."""
        color = self.s._colors.get(task.get("startedBy", ""))
        out = []
        for lb in self.load_balancers:
            adv = lb.get("advancedConfiguration")
            pair = (lb["targetGroupArn"], adv.get("alternateTargetGroupArn")) if adv else ()
            if color is None and pair:
                # A task from before the service shifted traffic (a Rolling one, which
                # may serve from green) stays where it is registered until a shift
                # colours it, as ECS leaves running tasks alone on UpdateService.
                address = private_ip(task) or ""
                color = next((g for g in pair if (g, address) in self.snap.health), None)
            if adv and color in pair:
                out.append({**lb, "targetGroupArn": color})
            else:
                out.append(lb)
        return out

    def states(self, task: dict[str, Any]) -> list[tuple[str, str | None]]:
        address = private_ip(task)
        return [
            (lb["targetGroupArn"], self.snap.health.get((lb["targetGroupArn"], address or "")))
            for lb in self.target_groups(task)
        ]

    def healthy(self, task: dict[str, Any]) -> bool:
        if task.get("lastStatus") != "RUNNING" or task.get("desiredStatus") != "RUNNING":
            return False
        return all(state == "healthy" for _, state in self.states(task))

    def require_primary(self) -> dict[str, Any]:
        """The primary deployment, for steps that only run while there is one."""
        if self.primary is None:
            raise RuntimeError(f"service {self.name} has no primary deployment")
        return self.primary

    @property
    def desired(self) -> int:
        return int(self.primary["desiredCount"]) if self.primary else 0

    # -- the pass ----------------------------------------------------------------------
    def run(self) -> None:
        status = self.service.get("status")
        if (
            status == "INACTIVE"
            or (self.service.get("deploymentController") or {}).get("type", "ECS") != "ECS"
        ):
            return
        self._registration()
        self._failures()
        if status == "DRAINING":
            for t in self.live():
                self.stop(t, "Scaling activity initiated by (service deletion)")
            if not self.active:
                bridge.set_service(self.arn, status="INACTIVE")
            self._report_stops()
            return
        if self.primary is None:
            return
        self._requests()
        if self.primary is not None:
            self._circuit_breaker()
        if self.primary is not None:  # None: rolled back; the new primary runs next pass
            strategy_for(self.config.get("strategy", "ROLLING")).step(self)
        self._report_stops()

    def _registration(self) -> None:
        """Targets in, targets out: the part of ECS that drives the load balancer."""
        elb = self.s.clients("elbv2")
        for t in self.active + self.stopped:
            address = private_ip(t)
            arn = t["taskArn"]
            if address is None:
                continue
            running = t.get("lastStatus") == "RUNNING" and t.get("desiredStatus") == "RUNNING"
            draining_done = True
            for lb in self.target_groups(t):
                group = lb["targetGroupArn"]
                state = self.snap.health.get((group, address))
                registered = state not in (None, "unused", "draining")
                if running and not registered and (group, arn) not in self.s._registered:
                    elb.register_targets(
                        TargetGroupArn=group,
                        Targets=[{"Id": address, "Port": int(lb["containerPort"])}],
                    )
                    self.s._registered.add((group, arn))
                    self.event(f"registered 1 targets in (target-group {group})")
                elif not running and (registered or (group, arn) in self.s._registered):
                    if registered:
                        elb.deregister_targets(
                            TargetGroupArn=group,
                            Targets=[{"Id": address, "Port": int(lb["containerPort"])}],
                        )
                        self.event("has begun draining connections on 1 tasks.")
                        self.event(f"deregistered 1 targets in (target-group {group})")
                    self.s._registered.discard((group, arn))
                    draining_done = False
                elif state == "draining":
                    draining_done = False
            if t.get("lastStatus") == "DEACTIVATING" and draining_done:
                bridge.update_task(arn, lastStatus="STOPPING")

    def _failures(self) -> None:
        """Count failed tasks per deployment; stop tasks failing their health checks.

        The service's grace period is floored for a local process's start (imports, the
        model's download) until its health checks get an HTTP answer; from then on the
        scaled period counts, as on ECS, plus ``answered_grace_seconds`` of answers."""
        settings = self.s.settings
        scaled = settings.scaled(float(self.service.get("healthCheckGracePeriodSeconds") or 0))
        grace = max(scaled, settings.min_grace_seconds)
        now = bridge.utcnow()
        for t in self.stopped:
            arn = t["taskArn"]
            if t.get("stopCode") in FAILED_STOP_CODES:
                self._count_failure(t)
            self.s._finished.add(arn)
            self.s._answered.pop(arn, None)
        for t in self.live():
            if self.healthy(t):
                if t["taskArn"] not in self.s._was_healthy:
                    self.s._was_healthy.add(t["taskArn"])
                    breaker = self.config.get("deploymentCircuitBreaker") or {}
                    if breaker.get("resetOnHealthyTask", True):
                        self.s._breaker[t["startedBy"]] = 0
                continue
            started = t.get("startedAt")
            if t.get("lastStatus") != "RUNNING" or started is None:
                continue
            up = (now - _as_datetime(started)).total_seconds()
            address = private_ip(t) or ""
            groups = [lb["targetGroupArn"] for lb in self.target_groups(t)]
            if any((group, address) in self.snap.answering for group in groups):
                answered = self.s._answered.setdefault(t["taskArn"], now)
                since_answer = (now - answered).total_seconds()
                if up < scaled or since_answer < settings.answered_grace_seconds:
                    continue
            elif up < grace:
                continue
            for group, state in self.states(t):
                if state == "unhealthy":
                    reason = self.snap.reasons.get((group, private_ip(t) or ""), "")
                    self.event(
                        f"(task {task_id(t['taskArn'])}) "
                        f"(port {self.load_balancers[0]['containerPort']}) "
                        f"is unhealthy in (target-group {group}) due to (reason {reason})."
                    )
                    self.stop(t, f"Task failed ELB health checks in (target-group {group})")
                    self._count_failure(t)
                    break

    def _count_failure(self, task: dict[str, Any]) -> None:
        arn = task["taskArn"]
        if arn in self.s._counted:
            return
        self.s._counted.add(arn)
        dep_id = task.get("startedBy", "")
        dep = next((d for d in self.deployments if d["id"] == dep_id), None)
        if dep is None:
            return
        dep["failedTasks"] = int(dep.get("failedTasks") or 0) + 1
        bridge.set_deployment(self.arn, dep_id, failedTasks=dep["failedTasks"])
        self.s._breaker[dep_id] = self.s._breaker.get(dep_id, 0) + 1
        log.info(
            "task failed",
            service=self.name,
            deployment=dep_id,
            task=task_id(arn),
            reason=task.get("stoppedReason"),
        )

    def _requests(self) -> None:
        """StopServiceDeployment on the primary deployment."""
        if self.primary is None or self.primary.get("rolloutState") != "IN_PROGRESS":
            return
        sd_arn = bridge.service_deployment_arn(self.primary["id"])
        if sd_arn is None:
            return
        found = self.s.clients("ecs").describe_service_deployments(serviceDeploymentArns=[sd_arn])
        for sd in found.get("serviceDeployments", []):
            if sd["status"] == "ROLLBACK_REQUESTED":
                self.fail("ECS deployment stopped by request: rolling back.", rollback=True)
            elif sd["status"] == "STOP_REQUESTED":
                self.fail("ECS deployment stopped by request.", rollback=False)
            return

    def _circuit_breaker(self) -> None:
        p = self.require_primary()
        breaker = self.config.get("deploymentCircuitBreaker") or {}
        if not breaker.get("enable") or p.get("rolloutState") != "IN_PROGRESS":
            return
        failures = self.s._breaker.get(p["id"], 0)
        threshold = breaker_threshold(self.config, self.desired)
        if self.s._reported.get(p["id"]) != (failures, threshold):
            self.s._reported[p["id"]] = (failures, threshold)
            bridge.update_service_deployment(
                p["id"], deploymentCircuitBreaker={"failureCount": failures, "threshold": threshold}
            )
        if failures >= threshold:
            bridge.update_service_deployment(
                p["id"], deploymentCircuitBreaker={"status": "TRIGGERED"}
            )
            self.fail(
                "ECS deployment circuit breaker: tasks failed to start.",
                rollback=bool(breaker.get("rollback")),
            )

    # -- actions -----------------------------------------------------------------------
    def event(self, message: str) -> None:
        bridge.add_event(self.arn, message)

    def start(self, deployment_id: str, count: int) -> None:
        ids = [task_id(bridge.start_service_task(self.arn, deployment_id)) for _ in range(count)]
        if ids:
            self.started = True
            self.event(
                f"has started {len(ids)} tasks: " + " ".join(f"(task {i})" for i in ids) + "."
            )

    def stop(self, task: dict[str, Any], reason: str) -> None:
        if task.get("desiredStatus") == "STOPPED":
            return
        bridge.request_stop(task["taskArn"], reason, SCHEDULER)
        task["desiredStatus"] = "STOPPED"
        self._stopped_now.append(task_id(task["taskArn"]))

    def _report_stops(self) -> None:
        if self._stopped_now:
            ids = " ".join(f"(task {i})" for i in self._stopped_now)
            self.event(f"has stopped {len(self._stopped_now)} running tasks: {ids}.")

    def complete(self) -> None:
        """The primary deployment reached a steady state."""
        p = self.require_primary()
        bridge.set_deployment(
            self.arn,
            p["id"],
            rolloutState="COMPLETED",
            rolloutStateReason=f"ECS deployment {p['id']} completed.",
        )
        p["rolloutState"] = "COMPLETED"
        bridge.remove_deployments(self.arn, keep=p["id"])
        bridge.record_completed(self.arn, p["id"], p["taskDefinition"])
        now = bridge.utcnow()
        bridge.update_service_deployment(p["id"], status="SUCCESSFUL", finishedAt=now)
        failed = self.s._rollbacks.pop(p["id"], None)
        if failed is not None:
            bridge.update_service_deployment(failed, status="ROLLBACK_SUCCESSFUL", finishedAt=now)
        self.event("has reached a steady state.")
        log.info(
            "deployment completed",
            service=self.name,
            deployment=p["id"],
            task_definition=p["taskDefinition"],
        )

    def fail(self, reason: str, *, rollback: bool) -> None:
        """The primary deployment failed: it launches no more tasks; with ``rollback``,
        a deployment of the last completed one replaces it."""
        p = self.require_primary()
        bridge.set_deployment(self.arn, p["id"], rolloutState="FAILED", rolloutStateReason=reason)
        p["rolloutState"] = "FAILED"
        self.event(
            f"(deployment {p['id']}) deployment failed: {reason.rpartition(': ')[2].rstrip('.')}."
        )
        last = bridge.last_completed(self.arn)
        now = bridge.utcnow()
        log.warning(
            "deployment failed",
            service=self.name,
            deployment=p["id"],
            reason=reason,
            rollback=rollback,
        )
        if rollback and last is not None and last[1] != p["taskDefinition"]:
            previous_id, task_definition = last
            new_id = bridge.new_deployment(
                self.arn,
                task_definition,
                reason="ECS deployment circuit breaker: rolling back to deploymentId "
                f"{previous_id}.",
            )
            self.s._rollbacks[new_id] = p["id"]
            new_sd = bridge.service_deployment(bridge.service_deployment_arn(new_id) or "") or {}
            bridge.update_service_deployment(
                p["id"],
                status="ROLLBACK_IN_PROGRESS",
                statusReason=reason,
                rollback={
                    "reason": reason,
                    "startedAt": now,
                    "serviceRevisionArn": (new_sd.get("targetServiceRevision") or {}).get("arn"),
                },
            )
            self.event(f"rolling back to deployment {previous_id}.")
            # The new primary is picked up on the next pass.
            self.primary = None
        else:
            bridge.update_service_deployment(
                p["id"], status="STOPPED", statusReason=reason, stoppedAt=now, finishedAt=now
            )


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.fromtimestamp(float(value), tz=bridge.utcnow().tzinfo)
