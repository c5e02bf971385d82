"""The one module that reaches into moto's state.

moto stores ECS services and tasks but runs nothing, and has no API to start a task, move
a task through its lifecycle, finish a rollout or report a target's health. Those are the
writes of AWS's own control plane; here they are small functions over moto's backend
objects, and nothing else in the data plane touches moto's internals: everything else
reads and writes through the HTTP endpoint with boto3, like any client.

What this module relies on (``tests/dataplane/test_moto_bridge.py`` checks each one, so a
moto upgrade that changes them fails loudly there, not as a strange rollout):

- moto's server application (``DomainDispatcherApplication``, ``create_backend_app``,
  ``MotoRequestHandler``), run in this process so that this module can reach the state;
- ``ecs_backends[account][region]`` with ``services`` (``Service`` objects whose
  ``deployments`` are API-shaped dicts) and ``tasks`` (``Task`` objects); moto serialises
  any attribute named like a field of the API's shape, so fields set here (a task's
  ``stopped_reason``, a service's ``deployment_configuration``) come back in Describe*;
- ``ELBv2Backend.describe_target_health`` and ``FakeTargetGroup.register/deregister``,
  wrapped so that targets drain for the target group's deregistration delay (and until
  the local load balancer has seen them draining, with nothing in flight) and report
  the health the local load balancer measured.

Every change to ECS state happens under :data:`LOCK`, which the ECS front also holds
around each ECS request, so a client never sees half of a change.
"""

from __future__ import annotations

import copy
import ipaddress
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib.metadata import version as package_version
from typing import Any, Protocol

from mlops_core.errors import MlopsError

#: moto (major, minor) releases this module was written and tested against.
SUPPORTED_MOTO = ((5, 2),)

#: Serialises ECS state changes between the ECS front (API requests) and the data plane.
LOCK = threading.RLock()

ACCOUNT_ID = "123456789012"  # moto's default account

PENDING_STATES = ("PROVISIONING", "PENDING", "ACTIVATING")
MAX_EVENTS = 100


def check_moto_version() -> str:
    """The installed moto version; raises if this module was not written for it."""
    installed = package_version("moto")
    major_minor = tuple(int(p) for p in installed.split(".")[:2] if p.isdigit())
    if major_minor not in SUPPORTED_MOTO:
        supported = ", ".join(f"{a}.{b}.x" for a, b in SUPPORTED_MOTO)
        raise MlopsError(
            f"the local data plane was written for moto {supported}, but moto {installed} "
            "is installed; it reaches into moto's state and would misbehave",
            where="mlopsctl/dataplane/moto_bridge.py",
            hint=f"pip install 'moto[server]=={SUPPORTED_MOTO[-1][0]}.{SUPPORTED_MOTO[-1][1]}.*' "
            "(or port this module and its test to the new moto)",
        )
    return installed


def utcnow() -> datetime:
    return datetime.now(UTC)


# -- the server ------------------------------------------------------------------------
def wsgi_app() -> Any:
    """moto's server application (every service on one endpoint, as ``moto_server``)."""
    from mlopsctl.motoserver import dispatcher

    return dispatcher()


def request_handler() -> type:
    from moto.moto_server.werkzeug_app import MotoRequestHandler

    return MotoRequestHandler


def install(deregistration_delay: Callable[[float], float]) -> None:
    """Take over the parts of moto's behaviour that AWS's control plane owns.

    ``deregistration_delay`` turns a target group's delay (seconds, as configured) into
    the local one (the data plane's time scale).
    """
    from moto.moto_api import state_manager

    # Tasks move through their lifecycle when the data plane says so, not on every
    # DescribeTasks (moto's default advances one state per call).
    state_manager.set_transition("ecs::task", {"progression": "manual", "times": 1 << 62})
    _install_elb_hooks(deregistration_delay)
    _install_cloudwatch_hooks()


def reset() -> None:
    """moto was reset: forget the records kept beside its state."""
    with LOCK:
        _service_deployments.clear()
        _revisions.clear()
        _deployment_arns.clear()
        _last_completed.clear()
        _health.clear()
        _draining.clear()


def api_error(exc: BaseException) -> tuple[int, str, str] | None:
    """(HTTP status, error code, message) of an error moto raises in the API's terms."""
    from moto.core.exceptions import ServiceException

    if isinstance(exc, ServiceException):
        return 400, str(exc.code), str(exc.message)
    error_type = getattr(exc, "error_type", None)
    if error_type is not None:  # moto's older JsonRESTError
        message = getattr(exc, "message", str(exc))
        return int(getattr(exc, "code", 400) or 400), str(error_type), str(message)
    return None


# -- ECS -------------------------------------------------------------------------------
def region_account(arn: str) -> tuple[str, str]:
    parts = arn.split(":")
    return parts[3], parts[4]


def _backend(region: str, account: str = ACCOUNT_ID) -> Any:
    from moto.ecs.models import ecs_backends

    return ecs_backends[account][region]


def _service(service_arn: str) -> Any:
    region, account = region_account(service_arn)
    backend = _backend(region, account)
    for svc in backend.services.values():
        if svc.arn == service_arn:
            return svc
    raise KeyError(service_arn)


def _task(task_arn: str) -> Any:
    region, account = region_account(task_arn)
    for tasks in _backend(region, account).tasks.values():
        task = tasks.get(task_arn)
        if task is not None:
            return task
    raise KeyError(task_arn)


def find_service(region: str, account: str, cluster: str, name: str) -> Any | None:
    backend = _backend(region, account)
    try:
        return backend._get_service(cluster, name)
    except Exception:  # noqa: BLE001 - moto raises its own not-found types
        return None


def resolve_task_definition(region: str, account: str, ref: str) -> str:
    """The ARN of a family, family:revision or ARN (what UpdateService accepts)."""
    return _backend(region, account).describe_task_definition(ref).arn


def _deployment_id() -> str:
    return f"ecs-svc/{random.randrange(10**18, 10**19)}"


def _short_id() -> str:
    return uuid.uuid4().hex[:22]


# Service deployments and revisions (APIs moto lacks), kept beside moto's state.
_service_deployments: dict[str, dict[str, Any]] = {}
_revisions: dict[str, dict[str, Any]] = {}
_deployment_arns: dict[str, str] = {}  # ECS deployment id -> service deployment ARN
_last_completed: dict[str, tuple[str, str]] = {}  # service ARN -> (deployment id, td ARN)


def _revision(svc: Any, task_definition: str) -> str:
    region, account = region_account(svc.arn)
    td = _backend(region, account).describe_task_definition(task_definition)
    arn = (
        f"arn:aws:ecs:{region}:{account}:service-revision/{svc.cluster_name}/{svc.name}/"
        f"{random.randrange(10**18, 10**19)}"
    )
    _revisions[arn] = {
        "serviceRevisionArn": arn,
        "serviceArn": svc.arn,
        "clusterArn": svc.cluster_arn,
        "taskDefinition": td.arn,
        "launchType": svc.launch_type,
        "platformVersion": "1.4.0",
        "platformFamily": "Linux",
        "loadBalancers": copy.deepcopy(svc.load_balancers or []),
        "networkConfiguration": copy.deepcopy(svc.network_configuration or {}),
        "containerImages": [
            {"containerName": c.get("name"), "image": c.get("image")}
            for c in td.container_definitions
        ],
        "createdAt": utcnow(),
    }
    return arn


def new_deployment(service_arn: str, task_definition: str, *, reason: str | None = None) -> str:
    """Start an ECS deployment of ``task_definition``: it becomes PRIMARY (IN_PROGRESS),
    the previous primary ACTIVE. Records its service deployment and revision. Returns
    the deployment id."""
    with LOCK:
        svc = _service(service_arn)
        return _new_deployment(svc, task_definition, reason=reason)


def _new_deployment(svc: Any, task_definition: str, *, reason: str | None = None) -> str:
    now = utcnow()
    dep_id = _deployment_id()
    sources = []
    for d in svc.deployments:
        if d["status"] == "PRIMARY":
            d["status"] = "ACTIVE"
            d["updatedAt"] = now
        sd = _service_deployments.get(_deployment_arns.get(d["id"], ""))
        if sd is not None:
            sources.append(sd["targetServiceRevision"]["arn"])
    svc.deployments.insert(
        0,
        {
            "id": dep_id,
            "status": "PRIMARY",
            "taskDefinition": task_definition,
            "desiredCount": svc.desired_count,
            "pendingCount": 0,
            "runningCount": 0,
            "failedTasks": 0,
            "createdAt": now,
            "updatedAt": now,
            "launchType": svc.launch_type,
            "platformVersion": "1.4.0",
            "platformFamily": "Linux",
            "networkConfiguration": copy.deepcopy(svc.network_configuration) or None,
            "rolloutState": "IN_PROGRESS",
            "rolloutStateReason": reason or f"ECS deployment {dep_id} in progress.",
        },
    )
    svc.task_definition = task_definition
    region, account = region_account(svc.arn)
    sd_arn = (
        f"arn:aws:ecs:{region}:{account}:service-deployment/{svc.cluster_name}/{svc.name}/"
        f"{_short_id()}"
    )
    breaker = (svc.deployment_configuration or {}).get("deploymentCircuitBreaker") or {}
    _service_deployments[sd_arn] = {
        "serviceDeploymentArn": sd_arn,
        "serviceArn": svc.arn,
        "clusterArn": svc.cluster_arn,
        "createdAt": now,
        "startedAt": now,
        "updatedAt": now,
        "sourceServiceRevisions": [{"arn": a} for a in sources],
        "targetServiceRevision": {"arn": _revision(svc, task_definition)},
        "status": "IN_PROGRESS",
        "deploymentConfiguration": copy.deepcopy(svc.deployment_configuration),
        "deploymentCircuitBreaker": {
            "status": "MONITORING" if breaker.get("enable") else "DISABLED",
            "failureCount": 0,
            "threshold": 0,
        },
        "alarms": {"status": "DISABLED"},
        "_deployment_id": dep_id,
    }
    _deployment_arns[dep_id] = sd_arn
    svc.current_service_deployment = sd_arn
    _recount(svc)
    return dep_id


def service_created(svc: Any, request: dict[str, Any]) -> None:
    """CreateService went through moto: make the service what ECS reports (fields moto
    drops, one IN_PROGRESS deployment with no task yet)."""
    with LOCK:
        svc.deployment_configuration = request_deployment_configuration(
            request.get("deploymentConfiguration"), None
        )
        if "healthCheckGracePeriodSeconds" in request:
            svc.health_check_grace_period_seconds = request["healthCheckGracePeriodSeconds"]
        svc.enable_ecs_managed_tags = bool(request.get("enableECSManagedTags"))
        svc.created_at = utcnow()
        svc.created_by = f"arn:aws:iam::{region_account(svc.arn)[1]}:root"
        svc.events = []
        svc.deployments = []
        if svc.task_definition:
            _new_deployment(svc, svc.task_definition)


def service_updated(svc: Any, before: dict[str, Any], request: dict[str, Any]) -> None:
    """UpdateService went through moto (which only stores what it is given): start a new
    deployment where ECS would, keep the counts true."""
    with LOCK:
        region, account = region_account(svc.arn)
        if svc.task_definition:
            svc.task_definition = resolve_task_definition(region, account, svc.task_definition)
        svc.deployment_configuration = request_deployment_configuration(
            request.get("deploymentConfiguration"), before["deployment_configuration"]
        )
        changed = (
            svc.task_definition != before["task_definition"]
            or bool(request.get("forceNewDeployment"))
            or ("loadBalancers" in request and request["loadBalancers"] != before["load_balancers"])
            or (
                "networkConfiguration" in request
                and request["networkConfiguration"] != before["network_configuration"]
            )
        )
        if changed and svc.task_definition:
            _new_deployment(svc, svc.task_definition)
        else:
            for d in svc.deployments:
                if d["status"] == "PRIMARY":
                    d["desiredCount"] = svc.desired_count
                    d["updatedAt"] = utcnow()
        _recount(svc)


def snapshot(svc: Any) -> dict[str, Any]:
    """What UpdateService may change, taken before moto applies it."""
    return {
        "task_definition": svc.task_definition,
        "load_balancers": copy.deepcopy(svc.load_balancers),
        "network_configuration": copy.deepcopy(svc.network_configuration),
        "deployment_configuration": copy.deepcopy(getattr(svc, "deployment_configuration", None)),
    }


def service_deleted(svc: Any) -> None:
    """DeleteService: ECS drains the service (its tasks stop) before it is INACTIVE."""
    with LOCK:
        svc.status = "DRAINING"
        svc.desired_count = 0
        for d in svc.deployments:
            d["desiredCount"] = 0
        _recount(svc)


def request_deployment_configuration(
    given: dict[str, Any] | None, previous: dict[str, Any] | None
) -> dict[str, Any]:
    """ECS's defaults for what the request leaves out (or what the service had)."""
    base = (
        copy.deepcopy(previous)
        if previous
        else {
            "deploymentCircuitBreaker": {"enable": False, "rollback": False},
            "maximumPercent": 200,
            "minimumHealthyPercent": 100,
            "strategy": "ROLLING",
        }
    )
    for key, value in (given or {}).items():
        base[key] = copy.deepcopy(value)
    base.setdefault("strategy", "ROLLING")
    return base


def set_service(service_arn: str, **fields: Any) -> None:
    """Set service attributes the data plane owns (``status``, ``task_definition``)."""
    with LOCK:
        svc = _service(service_arn)
        for key, value in fields.items():
            setattr(svc, key, value)


def set_deployment(service_arn: str, deployment_id: str, **fields: Any) -> None:
    """Set fields of one entry of the service's ``deployments`` (API names)."""
    with LOCK:
        svc = _service(service_arn)
        for d in svc.deployments:
            if d["id"] == deployment_id:
                d.update(fields)
                d["updatedAt"] = utcnow()


def remove_deployments(service_arn: str, keep: str) -> None:
    """A rollout completed: only its deployment stays in the service's list."""
    with LOCK:
        svc = _service(service_arn)
        svc.deployments = [d for d in svc.deployments if d["id"] == keep]


def add_event(service_arn: str, message: str) -> None:
    """A service event, ``(service NAME) message``, newest first as ECS lists them."""
    with LOCK:
        svc = _service(service_arn)
        svc.events.insert(
            0,
            {
                "id": str(uuid.uuid4()),
                "createdAt": utcnow(),
                "message": f"(service {svc.name}) {message}",
            },
        )
        del svc.events[MAX_EVENTS:]


def update_service_deployment(deployment_id: str, **fields: Any) -> None:
    """Set fields of the service deployment of ECS deployment ``deployment_id``."""
    with LOCK:
        sd = _service_deployments.get(_deployment_arns.get(deployment_id, ""))
        if sd is None:
            return
        for key, value in fields.items():
            if isinstance(value, dict) and isinstance(sd.get(key), dict):
                sd[key].update(value)
            else:
                sd[key] = value
        sd["updatedAt"] = utcnow()


def continue_hook(arn: str, hook_id: str, action: str) -> str | None:
    """ContinueServiceDeployment: record ``action`` on the AWAITING_ACTION hook
    ``hook_id`` of service deployment ``arn``; the problem, if it cannot be taken."""
    with LOCK:
        sd = _service_deployments.get(arn)
        if sd is None:
            return "missing"
        waiting = [
            h
            for h in sd.get("lifecycleHookDetails") or []
            if h.get("hookId") == hook_id and h.get("status") == "AWAITING_ACTION"
        ]
        if not waiting:
            return "not-waiting"
        # As ECS does, the hook leaves AWAITING_ACTION as soon as it is answered (before
        # the deployment moves on): a second answer, say from a controller restarted
        # right after the first, is refused rather than taken twice.
        waiting[0]["status"] = "IN_PROGRESS"
        sd.setdefault("_hook_actions", {})[hook_id] = action
        sd["updatedAt"] = utcnow()
        return None


def hook_action(deployment_id: str, hook_id: str) -> str | None:
    """The action ContinueServiceDeployment recorded on a hook, if any."""
    with LOCK:
        sd = _service_deployments.get(_deployment_arns.get(deployment_id, ""))
        return None if sd is None else (sd.get("_hook_actions") or {}).get(hook_id)


def service_deployment_arn(deployment_id: str) -> str | None:
    return _deployment_arns.get(deployment_id)


def record_completed(service_arn: str, deployment_id: str, task_definition: str) -> None:
    with LOCK:
        _last_completed[service_arn] = (deployment_id, task_definition)


def last_completed(service_arn: str) -> tuple[str, str] | None:
    """(deployment id, task definition) of the service's last completed deployment."""
    return _last_completed.get(service_arn)


def service_deployments(service_arn: str) -> list[dict[str, Any]]:
    """The service's deployments (newest first), API-shaped, counts filled in."""
    with LOCK:
        try:
            svc = _service(service_arn)
        except KeyError:
            return []
        counts = {d["id"]: d for d in svc.deployments}
        out = []
        for sd in _service_deployments.values():
            if sd["serviceArn"] != service_arn:
                continue
            doc = {k: copy.deepcopy(v) for k, v in sd.items() if not k.startswith("_")}
            d = counts.get(sd["_deployment_id"])
            target = doc["targetServiceRevision"]
            target["requestedTaskCount"] = d["desiredCount"] if d else 0
            target["runningTaskCount"] = d["runningCount"] if d else 0
            target["pendingTaskCount"] = d["pendingCount"] if d else 0
            out.append(doc)
        out.sort(key=lambda doc: doc["createdAt"], reverse=True)
        return out


def service_deployment(arn: str) -> dict[str, Any] | None:
    sd = _service_deployments.get(arn)
    if sd is None:
        return None
    return next(
        (d for d in service_deployments(sd["serviceArn"]) if d["serviceDeploymentArn"] == arn), None
    )


def service_revision(arn: str) -> dict[str, Any] | None:
    rev = _revisions.get(arn)
    return copy.deepcopy(rev) if rev is not None else None


def _recount(svc: Any) -> None:
    """Deployment and service task counts, always derived from the tasks themselves."""
    region, account = region_account(svc.arn)
    tasks = _backend(region, account).tasks.get(svc.cluster_name, {})
    running: dict[str, int] = {}
    pending: dict[str, int] = {}
    for task in tasks.values():
        if task.group != f"service:{svc.name}" or task.desired_status != "RUNNING":
            continue
        status = task.last_status
        if status == "RUNNING":
            running[task.started_by] = running.get(task.started_by, 0) + 1
        elif status in PENDING_STATES:
            pending[task.started_by] = pending.get(task.started_by, 0) + 1
    for d in svc.deployments:
        d["runningCount"] = running.get(d["id"], 0)
        d["pendingCount"] = pending.get(d["id"], 0)
    svc.running_count = sum(d["runningCount"] for d in svc.deployments)
    svc.pending_count = sum(d["pendingCount"] for d in svc.deployments)


def _service_of_task(task: Any) -> Any | None:
    if not task.group.startswith("service:"):
        return None
    return find_service(task.region_name, task._account_id, task.cluster_name, task.group[8:])


def _init_task(task: Any, task_definition: Any) -> None:
    """A task ECS just accepted: PROVISIONING, nothing started, nothing known yet."""
    now = utcnow()
    task.last_status = "PROVISIONING"
    task.desired_status = "RUNNING"
    task.created_at = now
    task.health_status = "UNKNOWN"
    task.connectivity = "CONNECTED"
    task.connectivity_at = now
    task.version = 1
    task.cpu = task_definition.cpu
    task.memory = task_definition.memory
    task.platform_family = "Linux"
    task.platform_version = task.platform_version or "1.4.0"
    for c in task.containers:
        c.last_status = "PENDING"
        c.exitCode = None
        c.health_status = "UNKNOWN"
        c.task_arn = task.task_arn
        c.network_bindings = []


def run_task(
    region: str,
    account: str,
    cluster: str,
    task_definition: str,
    count: int = 1,
    *,
    overrides: dict[str, Any] | None = None,
    started_by: str = "",
    tags: list[dict[str, str]] | None = None,
    network_configuration: dict[str, Any] | None = None,
    group: str | None = None,
) -> list[str]:
    """Place ``count`` Fargate tasks, PROVISIONING. (moto's own RunTask needs container
    level memory, which Fargate task definitions usually leave out, and starts tasks
    RUNNING.) Raises moto's errors for an unknown cluster or task definition and for an
    awsvpc task without a network configuration."""
    from moto.ecs.exceptions import InvalidParameterException
    from moto.ecs.models import Task

    with LOCK:
        backend = _backend(region, account)
        found = backend._get_cluster(cluster)
        td = backend.describe_task_definition(task_definition)
        awsvpc = td.network_mode == "awsvpc"
        if awsvpc and not (network_configuration or {}).get("awsvpcConfiguration", {}).get(
            "subnets"
        ):
            raise InvalidParameterException(
                "Network Configuration must be provided when networkMode 'awsvpc' is specified."
            )
        # moto's own awsvpc set-up fails (moto 5.2: NetworkInterface has no
        # private_dns_name); the task is built without it and given its interface here.
        plain = copy.copy(td)
        plain.network_mode = "bridge"
        arns = []
        for _ in range(count):
            task = Task(
                cluster=found,
                task_definition=plain,
                container_instance_arn=None,
                resource_requirements=None,
                backend=backend,
                group=group or f"family:{td.family}",
                launch_type="FARGATE",
                overrides=overrides or {},
                started_by=started_by or "",
                tags=tags or [],
                networking_configuration=network_configuration,
                platform_version="1.4.0",
            )
            if awsvpc and network_configuration is not None:  # checked above
                task.network_configuration = network_configuration
                task.attachments = [_network_interface(region, account, network_configuration)]
            backend.tasks.setdefault(found.name, {})[task.task_arn] = task
            _init_task(task, td)
            arns.append(task.task_arn)
        return arns


def _network_interface(region: str, account: str, network: dict[str, Any]) -> dict[str, Any]:
    """An ENI in the task's first subnet, on an address no other interface holds (the
    local network maps addresses to loopback ports, so they must be unique)."""
    from moto.ec2.models import ec2_backends

    config = network["awsvpcConfiguration"]
    ec2 = ec2_backends[account][region]
    subnet = ec2.get_subnet(config["subnets"][0])
    used = {e.private_ip_address for e in ec2.enis.values()}
    hosts = ipaddress.ip_network(subnet.cidr_block).hosts()
    address = next((str(h) for i, h in enumerate(hosts) if i >= 3 and str(h) not in used), None)
    if address is None:
        from moto.ecs.exceptions import InvalidParameterException

        raise InvalidParameterException(f"subnet {subnet.id} has no free address left")
    eni = ec2.create_network_interface(
        subnet=subnet,
        private_ip_address=address,
        group_ids=config.get("securityGroups") or [],
        description="ECS task",
    )
    eni.status = "in-use"
    eni.device_index = 0
    return {
        "id": str(uuid.uuid4()),
        "type": "ElasticNetworkInterface",
        "status": "ATTACHED",
        "details": [
            {"name": "subnetId", "value": subnet.id},
            {"name": "networkInterfaceId", "value": eni.id},
            {"name": "macAddress", "value": eni.mac_address},
            {"name": "privateDnsName", "value": f"ip-{address.replace('.', '-')}.ec2.internal"},
            {"name": "privateIPv4Address", "value": address},
        ],
    }


def _release_network_interface(task: Any) -> None:
    """A stopped task's interface is deleted (its address free again), as on Fargate."""
    from moto.ec2.models import ec2_backends

    ec2 = ec2_backends[task._account_id][task.region_name]
    for attachment in task.attachments:
        for detail in attachment.get("details", []):
            if detail["name"] == "networkInterfaceId":
                ec2.enis.pop(detail["value"], None)
        attachment["status"] = "DELETED"


def start_service_task(service_arn: str, deployment_id: str) -> str:
    """Place one task of a service's deployment (``startedBy`` = the deployment id, as
    ECS does). Returns its ARN."""
    with LOCK:
        svc = _service(service_arn)
        dep = next(d for d in svc.deployments if d["id"] == deployment_id)
        region, account = region_account(service_arn)
        tags = list(svc.tags) if svc.propagate_tags == "SERVICE" else []
        if getattr(svc, "enable_ecs_managed_tags", False):
            tags += [
                {"key": "aws:ecs:serviceName", "value": svc.name},
                {"key": "aws:ecs:clusterName", "value": svc.cluster_name},
            ]
        (arn,) = run_task(
            region,
            account,
            svc.cluster_name,
            dep["taskDefinition"],
            started_by=deployment_id,
            tags=tags,
            network_configuration=svc.network_configuration or None,
            group=f"service:{svc.name}",
        )
        _recount(svc)
        return arn


TASK_FIELDS = {
    "lastStatus": "last_status",
    "desiredStatus": "desired_status",
    "healthStatus": "health_status",
    "stoppedReason": "stopped_reason",
    "stopCode": "stop_code",
    "startedAt": "started_at",
    "stoppingAt": "stopping_at",
    "stoppedAt": "stopped_at",
    "pullStartedAt": "pull_started_at",
    "pullStoppedAt": "pull_stopped_at",
    "executionStoppedAt": "execution_stopped_at",
    # A traffic-shifting rollback: the rollback deployment adopts blue's running tasks.
    "startedBy": "started_by",
}
CONTAINER_FIELDS = {
    "lastStatus": "last_status",
    "exitCode": "exitCode",
    "reason": "reason",
    "healthStatus": "health_status",
    "networkBindings": "network_bindings",
    "runtimeId": "runtime_id",
}


def update_task(task_arn: str, *, container: dict[str, Any] | None = None, **fields: Any) -> None:
    """Set a task's lifecycle fields (API names) and its container's."""
    with LOCK:
        try:
            task = _task(task_arn)
        except KeyError:
            return  # reset or gone: nothing to record
        for key, value in fields.items():
            setattr(task, TASK_FIELDS[key], value)
        if fields.get("lastStatus") == "STOPPED":
            _release_network_interface(task)
        for key, value in (container or {}).items():
            for c in task.containers:
                setattr(c, CONTAINER_FIELDS[key], value)
        task.version = getattr(task, "version", 1) + 1
        svc = _service_of_task(task)
        if svc is not None:
            _recount(svc)


def task_exited(task_arn: str, exit_code: int) -> None:
    """The task's essential container exited: STOPPED, with ECS's reason unless the stop
    was asked for (then the reason given when it was asked stays)."""
    with LOCK:
        try:
            task = _task(task_arn)
        except KeyError:
            return
        now = utcnow()
        fields: dict[str, Any] = {
            "lastStatus": "STOPPED",
            "stoppedAt": now,
            "executionStoppedAt": now,
        }
        if task.desired_status != "STOPPED":
            fields.update(
                desiredStatus="STOPPED",
                stoppedReason="Essential container in task exited",
                stopCode="EssentialContainerExited",
                stoppingAt=now,
            )
        update_task(task_arn, container={"lastStatus": "STOPPED", "exitCode": exit_code}, **fields)


def request_stop(task_arn: str, reason: str, stop_code: str) -> Any:
    """Ask a task to stop (StopTask, or the scheduler): desiredStatus STOPPED; a running
    one is DEACTIVATING until its targets have drained. Returns the task."""
    with LOCK:
        task = _task(task_arn)
        if task.desired_status != "STOPPED":
            task.desired_status = "STOPPED"
            task.stopped_reason = reason
            task.stop_code = stop_code
            task.stopping_at = utcnow()
            if task.last_status == "RUNNING":
                task.last_status = "DEACTIVATING"
            task.version = getattr(task, "version", 1) + 1
            svc = _service_of_task(task)
            if svc is not None:
                _recount(svc)
        return task


def list_tasks(
    region: str,
    account: str,
    cluster: str,
    *,
    family: str | None = None,
    started_by: str | None = None,
    service_name: str | None = None,
    desired_status: str | None = None,
) -> list[str]:
    """ListTasks as ECS filters it (moto ignores ``serviceName``)."""
    with LOCK:
        backend = _backend(region, account)
        name = backend._get_cluster(cluster).name
        out = []
        for task in backend.tasks.get(name, {}).values():
            if family and task.task_definition_arn.rpartition("/")[2].rpartition(":")[0] != family:
                continue
            if started_by and task.started_by != started_by:
                continue
            if service_name and task.group != f"service:{service_name.rpartition('/')[2]}":
                continue
            if (desired_status or "RUNNING") != task.desired_status:
                continue
            out.append(task.task_arn)
        return out


@contextmanager
def locked() -> Iterator[None]:
    with LOCK:
        yield


# -- ELBv2 -----------------------------------------------------------------------------
# Health the local load balancer measured, and targets draining, by (target group, id).
_health: dict[tuple[str, str], tuple[str, str | None, str | None]] = {}
# Each draining target: (its registration, when the delay ends, when it began).
_draining: dict[tuple[str, str], tuple[dict[str, Any], float, float]] = {}
_hooks_installed = False
_cloudwatch_hooked = False

INITIAL = ("initial", "Elb.RegistrationInProgress", "Target registration is in progress")

# A draining target is done once its delay is over and the local load balancer has seen it
# draining with nothing in flight to it. The load balancer reads the endpoint between
# requests, so a busy machine can make it see a deregistration late; without this, ECS
# would stop a task (its drain over) that the load balancer still sends requests to.
# Bounded, so a load balancer that cannot read the endpoint holds no task forever.
DRAIN_VIEW_BOUND_SECONDS = 30.0


class LoadBalancerView(Protocol):
    """What the local load balancer tells the drain: when the read it applied last began,
    and its requests in flight to a target."""

    viewed_at: float

    def in_flight(self, target_group_arn: str, target_id: str) -> int: ...


_view: LoadBalancerView | None = None


def watch_load_balancers(view: LoadBalancerView | None) -> None:
    """Drains wait for ``view`` (the data plane's load balancers); None: for the delay only."""
    global _view
    _view = view


def _drained(key: tuple[str, str], deadline: float, since: float, now: float) -> bool:
    if now < deadline:
        return False
    view = _view
    if view is None or now >= deadline + DRAIN_VIEW_BOUND_SECONDS:
        return True
    return view.viewed_at > since and view.in_flight(*key) == 0


def set_target_health(
    target_group_arn: str, target_id: str, state: str, reason: str | None, description: str | None
) -> None:
    """What DescribeTargetHealth reports for a registered target."""
    with LOCK:
        _health[(target_group_arn, target_id)] = (state, reason, description)


class _ExactDimensions:
    """A view of a CloudWatch backend holding only the metrics whose dimension set is
    exactly ``wanted``."""

    def __init__(self, backend: Any, wanted: set[tuple[str | None, str | None]]):
        self._backend = backend
        self._wanted = wanted

    def get_all_metrics(self) -> list[Any]:
        return [
            md
            for md in self._backend.get_all_metrics()
            if {(d.name, d.value) for d in md.dimensions} == self._wanted
        ]


def _install_cloudwatch_hooks() -> None:
    """GetMetricStatistics matches a metric's exact dimension set, as CloudWatch does
    (moto matches every metric that has at least those dimensions, so an ALB's
    LoadBalancer total would also count its per-target-group series)."""
    global _cloudwatch_hooked
    if _cloudwatch_hooked:
        return
    from moto.cloudwatch.models import CloudWatchBackend

    original = CloudWatchBackend.get_metric_statistics

    def get_metric_statistics(
        self: Any,
        namespace: str,
        metric_name: str,
        start_time: Any,
        end_time: Any,
        period: int,
        stats: list[str],
        dimensions: list[dict[str, str]],
        unit: str | None = None,
    ) -> Any:
        backend = self
        if dimensions:
            backend = _ExactDimensions(self, {(d["Name"], d.get("Value")) for d in dimensions})
        return original(
            backend, namespace, metric_name, start_time, end_time, period, stats, dimensions, unit
        )

    CloudWatchBackend.get_metric_statistics = get_metric_statistics  # type: ignore[method-assign]
    _install_percentiles()
    _cloudwatch_hooked = True


PERCENTILE_RE = re.compile(r"^p(\d{1,2}(\.\d{1,2})?|100)$")


def _install_percentiles() -> None:
    """Percentile statistics (``p99``, ``p99.9``...) of GetMetricData, which moto lacks.

    CloudWatch computes them from the values a metric received; an ALB's
    TargetResponseTime has them. Values sent as ``Values``/``Counts`` are kept as one
    weighted datum per call (moto would store one object per count, which grows without
    bound under load), and a percentile is the nearest-rank value over a period's data."""
    from moto.cloudwatch.models import (
        CloudWatchBackend,
        MetricAggregatedDatum,
        MetricDatum,
        Statistics,
    )

    class Distribution(MetricAggregatedDatum):
        def __init__(self, namespace: str, member: dict[str, Any]):
            values = [float(v) for v in member["Values"]]
            counts = [float(c) for c in member.get("Counts") or [1.0] * len(values)]
            super().__init__(
                namespace,
                member["MetricName"],
                min_stat=min(values),
                max_stat=max(values),
                sample_count=sum(counts),
                sum_stat=sum(v * c for v, c in zip(values, counts, strict=True)),
                dimensions=member.get("Dimensions") or [],
                timestamp=member.get("Timestamp"),
                unit=member.get("Unit"),
            )
            self.weighted = list(zip(values, counts, strict=True))

    original_put = CloudWatchBackend.put_metric_data

    def put_metric_data(self: Any, namespace: str, metric_data: list[dict[str, Any]]) -> None:
        plain = [m for m in metric_data if not m.get("Values")]
        weighted = [m for m in metric_data if m.get("Values")]
        if weighted:
            for i, member in enumerate(metric_data):
                self._validate_parameters_put_metric_data(member, i + 1)
            self.metric_data.extend(Distribution(namespace, m) for m in weighted)
        if plain:
            original_put(self, namespace, plain)

    original_stat = Statistics.get_statistics_for_type

    def get_statistics_for_type(self: Any, stat: str) -> Any:
        found = PERCENTILE_RE.fullmatch(stat)
        if found is None:
            return original_stat(self, stat)
        pairs: list[tuple[float, float]] = []
        for m in self.metric_data or []:
            if isinstance(m, Distribution):
                pairs.extend(m.weighted)
            elif isinstance(m, MetricDatum):
                pairs.append((float(m.value), 1.0))
        if not pairs:
            return None
        pairs.sort()
        rank = float(found.group(1)) / 100.0 * sum(c for _, c in pairs)
        seen = 0.0
        for value, count in pairs:
            seen += count
            if seen >= rank - 1e-9:
                return value
        return pairs[-1][0]

    CloudWatchBackend.put_metric_data = put_metric_data  # type: ignore[method-assign]
    Statistics.get_statistics_for_type = get_statistics_for_type  # type: ignore[method-assign]


def _install_elb_hooks(deregistration_delay: Callable[[float], float]) -> None:
    global _hooks_installed
    if _hooks_installed:
        return
    from moto.elbv2.models import ELBv2Backend, FakeHealthStatus, FakeTargetGroup

    original_register = FakeTargetGroup.register
    original_deregister = FakeTargetGroup.deregister
    original_health = ELBv2Backend.describe_target_health

    def register(self: Any, targets: list[dict[str, Any]]) -> None:
        original_register(self, targets)
        with LOCK:
            for t in targets:
                _draining.pop((self.arn, t["Id"]), None)
                _health[(self.arn, t["Id"])] = INITIAL

    def deregister(self: Any, targets: list[dict[str, Any]]) -> None:
        delay = float(self.attributes.get("deregistration_delay.timeout_seconds", 300))
        with LOCK:
            for t in targets:
                registered = self.targets.get(t["Id"])
                if registered is not None:
                    now = time.monotonic()
                    deadline = now + deregistration_delay(delay)
                    _draining[(self.arn, t["Id"])] = (dict(registered), deadline, now)
                    _health.pop((self.arn, t["Id"]), None)
        original_deregister(self, targets)

    def describe_target_health(self: Any, target_group_arn: str, targets: list[dict[str, Any]]):
        group = self.target_groups.get(target_group_arn)
        if group is None:
            return original_health(self, target_group_arn, targets)  # raises not-found
        with LOCK:
            now = time.monotonic()
            for key, (_, deadline, since) in list(_draining.items()):
                if key[0] == target_group_arn and _drained(key, deadline, since, now):
                    del _draining[key]
            draining = {i: t for (arn, i), (t, *_) in _draining.items() if arn == target_group_arn}
            wanted = targets or [*group.targets.values(), *draining.values()]
            out = []
            for t in wanted:
                port = t.get("Port", group.port)
                if t["Id"] in draining:
                    out.append(
                        FakeHealthStatus(
                            t["Id"], draining[t["Id"]].get("Port", port), group.health_check_port,
                            "draining", "Target.DeregistrationInProgress",
                            "Target deregistration is in progress",
                        )
                    )  # fmt: skip
                elif t["Id"] in group.targets and (target_group_arn, t["Id"]) in _health:
                    state, reason, description = _health[(target_group_arn, t["Id"])]
                    out.append(
                        FakeHealthStatus(
                            t["Id"], group.targets[t["Id"]].get("Port", port),
                            group.health_check_port, state, reason, description,
                        )
                    )  # fmt: skip
                else:
                    out.append(group.health_for(t, self.ec2_backend))
            return out

    # Replacing moto's methods is the point of this module (pinned, tested: see above).
    FakeTargetGroup.register = register  # type: ignore[method-assign]
    FakeTargetGroup.deregister = deregister  # type: ignore[method-assign]
    ELBv2Backend.describe_target_health = describe_target_health  # type: ignore[method-assign]
    _hooks_installed = True
