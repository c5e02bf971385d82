"""Schedules that run ECS tasks, fired as AWS fires them (moto stores them, never fires).

Two sources, both read through the endpoint:

- EventBridge Scheduler schedules (``scheduler:ListSchedules``/``GetSchedule``) whose
  target is an ECS cluster with ``EcsParameters``, ENABLED and inside their start/end
  dates; retried per ``RetryPolicy.MaximumRetryAttempts`` and sent to the
  ``DeadLetterConfig`` queue when RunTask fails; one-time ``at()`` schedules with
  ``ActionAfterCompletion: DELETE`` are deleted once fired;
- EventBridge rules with a ``ScheduleExpression`` (``events:ListRules``) and their ECS
  targets (``ListTargetsByRule``).

``rate(N unit)`` runs at the data plane's time scale (``rate(1 hour)`` at 0.05 fires every
3 minutes), counted from when the schedule is first seen; ``cron(...)`` and ``at(...)``
fire on the wall clock. Each firing is an ordinary ``RunTask`` call to the endpoint,
``startedBy`` naming the rule or schedule.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from croniter import croniter

from mlops_core.logs import get_logger
from mlopsctl.dataplane.clients import Clients
from mlopsctl.dataplane.settings import DataPlaneSettings

log = get_logger("dataplane.schedules")

RATE_RE = re.compile(r"^rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)$")
CRON_RE = re.compile(r"^cron\((.+)\)$")
AT_RE = re.compile(r"^at\((\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\)$")
UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]


def aws_cron_to_croniter(fields: str) -> str:
    """AWS's six-field cron (minutes hours day-of-month month day-of-week year) as a
    five-field expression: ``?`` is ``*``, days of the week 1-7 are SUN-SAT, ``L`` and
    ``W`` are not supported (ValueError), and a year other than ``*`` is refused."""
    parts = fields.split()
    if len(parts) != 6:
        raise ValueError(f"cron({fields}) needs 6 fields")
    minutes, hours, dom, month, dow, year = parts
    if year not in ("*", "?"):
        raise ValueError("a cron year other than * is not supported locally")
    if any(c in f for f in (dom, dow) for c in "LW#"):
        raise ValueError("L, W and # in cron expressions are not supported locally")

    def day(token: str) -> str:
        if not token.isdigit():
            return token
        if not 1 <= int(token) <= 7:
            raise ValueError(f"cron day of week {token} is not 1-7 (SUN-SAT)")
        return DAYS[int(token) - 1]

    dow = "*" if dow == "?" else re.sub(r"\d+", lambda m: day(m.group()), dow)
    dom = "*" if dom == "?" else dom
    return f"{minutes} {hours} {dom} {month} {dow}"


@dataclass
class _Armed:
    expression: str
    next_at: datetime | None
    attempts: int = 0


class Schedules:
    def __init__(self, settings: DataPlaneSettings, clients: Clients):
        self.settings = settings
        self.clients = clients
        self._armed: dict[str, _Armed] = {}

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self.settings.schedules_seconds):
            try:
                self.step()
            except Exception as exc:  # noqa: BLE001 - one bad pass must not stop the others
                log.warning("cannot read schedules", error=str(exc))

    # -- when --------------------------------------------------------------------------
    def _next(self, expression: str, after: datetime, first: bool) -> datetime | None:
        if m := RATE_RE.match(expression):
            unit = m.group(2).rstrip("s")
            period = timedelta(seconds=self.settings.scaled(int(m.group(1)) * UNIT_SECONDS[unit]))
            return after + period
        if m := CRON_RE.match(expression):
            return croniter(aws_cron_to_croniter(m.group(1)), after).get_next(datetime)
        if m := AT_RE.match(expression):
            at = datetime.fromisoformat(m.group(1)).replace(tzinfo=UTC)
            return at if first else None
        raise ValueError(f"unsupported schedule expression {expression!r}")

    def _due(self, key: str, expression: str, now: datetime) -> bool:
        armed = self._armed.get(key)
        if armed is None or armed.expression != expression:
            armed = self._armed[key] = _Armed(expression, self._next(expression, now, True))
        if armed.next_at is None or armed.next_at > now:
            return False
        armed.next_at = self._next(expression, now, False)
        return True

    # -- firing ------------------------------------------------------------------------
    def step(self) -> None:
        now = datetime.now(UTC)
        seen: set[str] = set()
        for key, expression, fire in self._schedules(now) + self._rules():
            seen.add(key)
            try:
                if self._due(key, expression, now):
                    fire()
            except Exception as exc:  # noqa: BLE001 - one bad schedule must not starve the rest
                log.warning("schedule not fired", schedule=key, error=str(exc))
        for gone in set(self._armed) - seen:
            del self._armed[gone]

    def _run_task(self, target: dict[str, Any], started_by: str) -> list[str]:
        """RunTask for an EventBridge/Scheduler ECS target (either's field spelling)."""
        params = target.get("EcsParameters") or {}
        network = params.get("NetworkConfiguration") or {}
        vpc = network.get("awsvpcConfiguration") or network.get("AwsvpcConfiguration") or {}
        kwargs: dict[str, Any] = {
            "cluster": target["Arn"],
            "taskDefinition": params["TaskDefinitionArn"],
            "count": int(params.get("TaskCount") or 1),
            "startedBy": started_by[:128],
        }
        if params.get("LaunchType"):
            kwargs["launchType"] = params["LaunchType"]
        if vpc:
            kwargs["networkConfiguration"] = {
                "awsvpcConfiguration": {
                    "subnets": vpc.get("Subnets") or [],
                    "securityGroups": vpc.get("SecurityGroups") or [],
                    "assignPublicIp": vpc.get("AssignPublicIp") or "DISABLED",
                }
            }
        if params.get("Group"):
            kwargs["group"] = params["Group"]
        if params.get("Tags"):
            tags = params["Tags"]
            kwargs["tags"] = [
                {"key": k, "value": v}
                for t in tags
                for k, v in (t.items() if "Key" not in t else [(t["Key"], t["Value"])])
            ]
        if target.get("Input"):
            overrides = json.loads(target["Input"])
            if isinstance(overrides, dict) and (
                "containerOverrides" in overrides or "taskRoleArn" in overrides
            ):
                kwargs["overrides"] = overrides
        result = self.clients("ecs").run_task(**kwargs)
        if result.get("failures"):
            raise RuntimeError(f"RunTask failures: {result['failures']}")
        arns = [t["taskArn"] for t in result.get("tasks", [])]
        log.info("schedule fired", started_by=started_by, tasks=arns)
        return arns

    def _schedules(self, now: datetime) -> list[tuple[str, str, Any]]:
        scheduler = self.clients("scheduler")
        out = []
        for page in scheduler.get_paginator("list_schedules").paginate():
            for brief in page.get("Schedules", []):
                if brief.get("State") != "ENABLED" or ":ecs:" not in (
                    brief.get("Target") or {}
                ).get("Arn", ""):
                    continue
                schedule = scheduler.get_schedule(
                    Name=brief["Name"], GroupName=brief.get("GroupName", "default")
                )
                start, end = schedule.get("StartDate"), schedule.get("EndDate")
                if (start and _aware(start) > now) or (end and _aware(end) < now):
                    continue
                key = schedule["Arn"]
                out.append(
                    (key, schedule["ScheduleExpression"], lambda s=schedule: self._fire_schedule(s))
                )
        return out

    def _fire_schedule(self, schedule: dict[str, Any]) -> None:
        target = schedule["Target"]
        name = f"{schedule.get('GroupName', 'default')}/{schedule['Name']}"
        attempts = 1 + int((target.get("RetryPolicy") or {}).get("MaximumRetryAttempts", 185))
        error: Exception | None = None
        for _ in range(min(attempts, 3)):  # a local endpoint either works or does not
            try:
                self._run_task(target, f"scheduler/{name}")
                error = None
                break
            except Exception as exc:  # noqa: BLE001 - retried, then dead-lettered
                error = exc
        if error is not None:
            log.warning("schedule failed", schedule=name, error=str(error))
            self._dead_letter(target, schedule["Arn"], error)
        if schedule.get("ActionAfterCompletion") == "DELETE" and AT_RE.match(
            schedule["ScheduleExpression"]
        ):
            self.clients("scheduler").delete_schedule(
                Name=schedule["Name"], GroupName=schedule.get("GroupName", "default")
            )

    def _dead_letter(self, target: dict[str, Any], source: str, error: Exception) -> None:
        arn = (target.get("DeadLetterConfig") or {}).get("Arn")
        if not arn:
            return
        sqs = self.clients("sqs", arn.split(":")[3])
        url = sqs.get_queue_url(QueueName=arn.rpartition(":")[2])["QueueUrl"]
        sqs.send_message(
            QueueUrl=url,
            MessageBody=json.dumps(
                {"source": source, "error": str(error), "target": target["Arn"]}
            ),
        )

    def _rules(self) -> list[tuple[str, str, Any]]:
        events = self.clients("events")
        out = []
        for page in events.get_paginator("list_rules").paginate():
            for rule in page.get("Rules", []):
                if rule.get("State") != "ENABLED" or not rule.get("ScheduleExpression"):
                    continue
                bus = rule.get("EventBusName", "default")
                targets = events.list_targets_by_rule(Rule=rule["Name"], EventBusName=bus)[
                    "Targets"
                ]
                ecs_targets = [
                    t for t in targets if ":ecs:" in t.get("Arn", "") and t.get("EcsParameters")
                ]
                if not ecs_targets:
                    continue

                def fire(rule=rule, ecs_targets=ecs_targets) -> None:
                    for target in ecs_targets:
                        try:
                            self._run_task(target, f"events-rule/{rule['Name']}")
                        except Exception as exc:  # noqa: BLE001 - other targets still fire
                            log.warning("rule target failed", rule=rule["Name"], error=str(exc))
                            self._dead_letter(target, rule["Arn"], exc)

                out.append((rule["Arn"], rule["ScheduleExpression"], fire))
        return out


def _aware(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromtimestamp(float(value), tz=UTC)
