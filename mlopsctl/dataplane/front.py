"""The ECS front: what the local endpoint answers for ECS where moto alone would not.

A WSGI layer in front of moto's server application. Every request goes to moto unchanged
except these ECS operations (JSON protocol, ``X-Amz-Target: AmazonEC2ContainerServiceV20141113.*``):

- ``CreateService``, ``UpdateService``, ``DeleteService``: moto stores them, then the
  bridge makes the service what ECS reports (the deployment configuration with ECS's
  defaults, a new deployment where ECS starts one, true task counts, DRAINING on delete),
  and the answer is the service as DescribeServices shows it;
- ``RunTask``: moto creates the tasks, which then start PROVISIONING, not RUNNING;
- ``StopTask``: desiredStatus STOPPED; the agent stops the process, ECS-style;
- ``ListTasks``: with ``serviceName`` filtering (moto ignores it);
- ``ListServiceDeployments``, ``DescribeServiceDeployments``, ``StopServiceDeployment``,
  ``ContinueServiceDeployment``, ``DescribeServiceRevisions``: not in moto; answered from
  the bridge's records in the API's shapes.

A ``deploymentConfiguration.strategy`` the data plane does not implement yet is refused
with InvalidParameterException naming it, never accepted and run as something else.
"""

from __future__ import annotations

import io
import json
import re
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from mlops_core.logs import get_logger
from mlopsctl.dataplane import moto_bridge as bridge
from mlopsctl.dataplane.shifting import SHIFTING, STAGES
from mlopsctl.dataplane.strategies import IMPLEMENTED

ECS_TARGET = "AmazonEC2ContainerServiceV20141113."
JSON_TYPE = "application/x-amz-json-1.1"
CREDENTIAL_RE = re.compile(r"Credential=[^/]+/\d{8}/([a-z0-9-]+)/")

log = get_logger("dataplane.front")


class ApiError(Exception):
    """An ECS error answer: ``code`` is the exception name clients match on."""

    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.timestamp()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class Call:
    """One ECS request: its environ (to call moto with), region and parsed body."""

    def __init__(self, environ: dict[str, Any], request: dict[str, Any]):
        self.environ = environ
        self.request = request
        match = CREDENTIAL_RE.search(environ.get("HTTP_AUTHORIZATION", ""))
        self.region = match.group(1) if match else "us-east-1"
        self.account = bridge.ACCOUNT_ID

    @property
    def cluster(self) -> str:
        return str(self.request.get("cluster") or "default")


Handler = Callable[["EcsFront", Call], tuple[int, dict[str, Any]]]


class EcsFront:
    """WSGI application: ECS operations moto lacks or gets wrong, the rest to moto."""

    def __init__(self, moto_app: Any):
        self.moto_app = moto_app

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        if (
            environ.get("PATH_INFO") == "/moto-api/reset"
            and environ.get("REQUEST_METHOD") == "POST"
        ):
            bridge.reset()
            return self.moto_app(environ, start_response)
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        handler = HANDLERS.get(target[len(ECS_TARGET) :]) if target.startswith(ECS_TARGET) else None
        if handler is None:
            return self.moto_app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        try:
            request = json.loads(body or b"{}")
            if not isinstance(request, dict):
                raise ValueError("the request body is not a JSON object")
        except ValueError as exc:
            return self._respond(
                start_response, 400, {"__type": "SerializationException", "message": str(exc)}
            )
        call = Call(environ, request)
        try:
            with bridge.LOCK:
                status, payload = handler(self, call)
        except ApiError as exc:
            status, payload = exc.status, {"__type": exc.code, "message": exc.message}
        except Exception as exc:  # noqa: BLE001 - answer every request, never hang a client
            known = bridge.api_error(exc)  # moto's own errors are in the API's terms
            if known is not None:
                status, code, message = known
                payload = {"__type": code, "message": message}
            else:
                log.exception("ECS request failed", operation=target, error=str(exc))
                status, payload = 500, {"__type": "ServerException", "message": str(exc)}
        return self._respond(start_response, status, payload)

    @staticmethod
    def _respond(start_response: Callable, status: int, payload: dict[str, Any]) -> list[bytes]:
        data = json.dumps(payload, default=_json_default).encode()
        reason = "OK" if status == 200 else "Error"
        start_response(
            f"{status} {reason}",
            [
                ("Content-Type", JSON_TYPE),
                ("Content-Length", str(len(data))),
                ("x-amzn-RequestId", str(uuid.uuid4())),
            ],
        )
        return [data]

    # -- calling moto ----------------------------------------------------------------
    def moto(self, call: Call, operation: str, request: dict[str, Any]) -> tuple[int, dict]:
        """Send one ECS request to moto, in process, as the client's request was sent."""
        body = json.dumps(request, default=_json_default).encode()
        environ = {k: v for k, v in call.environ.items() if not k.startswith("werkzeug.")}
        environ.update(
            {
                "wsgi.input": io.BytesIO(body),
                "CONTENT_LENGTH": str(len(body)),
                "HTTP_X_AMZ_TARGET": ECS_TARGET + operation,
            }
        )
        captured: dict[str, int] = {}

        def start_response(status: str, headers: list, exc_info: Any = None) -> Callable:
            captured["status"] = int(status.split()[0])
            return lambda _data: None

        chunks = self.moto_app(environ, start_response)
        try:
            data = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        return captured.get("status", 500), json.loads(data or b"{}")

    def ok(self, call: Call, operation: str, request: dict[str, Any]) -> dict[str, Any]:
        status, data = self.moto(call, operation, request)
        if status != 200:
            raise ApiError(
                str(data.get("__type", "ServerException")), str(data.get("message", "")), status
            )
        return data

    def describe_service(self, call: Call, svc: Any) -> dict[str, Any]:
        data = self.ok(
            call,
            "DescribeServices",
            {"cluster": svc.cluster_arn, "services": [svc.arn], "include": ["TAGS"]},
        )
        return data["services"][0]

    def describe_tasks(self, call: Call, arns: list[str]) -> list[dict[str, Any]]:
        if not arns:
            return []
        data = self.ok(
            call, "DescribeTasks", {"cluster": call.cluster, "tasks": arns, "include": ["TAGS"]}
        )
        return data["tasks"]


def _check_strategy(request: dict[str, Any], svc: Any | None = None) -> None:
    config = request.get("deploymentConfiguration") or {}
    before = (getattr(svc, "deployment_configuration", None) or {}) if svc is not None else {}
    strategy = config.get("strategy") or before.get("strategy")
    if strategy is not None and strategy not in IMPLEMENTED:
        raise ApiError(
            "InvalidParameterException",
            f"deploymentConfiguration.strategy {strategy} is not implemented by the local "
            f"data plane (it runs {', '.join(IMPLEMENTED)}); see mlopsctl/dataplane/strategies.py",
        )
    if strategy not in SHIFTING:
        return
    lbs = request.get("loadBalancers")
    if lbs is None and svc is not None:
        lbs = svc.load_balancers
    adv = [lb.get("advancedConfiguration") for lb in lbs or [] if lb.get("advancedConfiguration")]
    if not adv or not all(
        a.get("alternateTargetGroupArn") and a.get("productionListenerRule") for a in adv
    ):
        raise ApiError(
            "InvalidParameterException",
            f"a {strategy} deployment needs loadBalancers[].advancedConfiguration with "
            "alternateTargetGroupArn and productionListenerRule.",
        )
    hooks = config.get("lifecycleHooks", before.get("lifecycleHooks")) or []
    for hook in hooks:
        if hook.get("targetType", "AWS_LAMBDA") != "PAUSE":
            raise ApiError(
                "InvalidParameterException",
                "the local data plane runs PAUSE lifecycle hooks only (no Lambda runs here); "
                "continue them with ContinueServiceDeployment.",
            )
        unknown = set(hook.get("lifecycleStages") or []) - set(STAGES) - {"RECONCILE_SERVICE"}
        if unknown or not hook.get("lifecycleStages"):
            raise ApiError(
                "InvalidParameterException",
                f"lifecycleStages must be some of {', '.join(STAGES)}; got "
                f"{sorted(unknown) or 'none'}.",
            )


def _service_or_none(call: Call, ref: str | None) -> Any | None:
    if not ref:
        return None
    return bridge.find_service(call.region, call.account, call.cluster, ref.rpartition("/")[2])


# -- handlers --------------------------------------------------------------------------
def create_service(front: EcsFront, call: Call) -> tuple[int, dict]:
    _check_strategy(call.request)
    front.ok(call, "CreateService", call.request)
    svc = _service_or_none(call, call.request.get("serviceName"))
    assert svc is not None, "moto created the service"
    bridge.service_created(svc, call.request)
    return 200, {"service": front.describe_service(call, svc)}


def update_service(front: EcsFront, call: Call) -> tuple[int, dict]:
    svc = _service_or_none(call, call.request.get("service"))
    _check_strategy(call.request, svc)
    if svc is None or svc.status != "ACTIVE":
        if svc is not None:
            raise ApiError("ServiceNotActiveException", "Service was not ACTIVE.")
        return front.moto(call, "UpdateService", call.request)  # moto's own not-found answer
    before = bridge.snapshot(svc)
    front.ok(call, "UpdateService", call.request)
    bridge.service_updated(svc, before, call.request)
    return 200, {"service": front.describe_service(call, svc)}


def delete_service(front: EcsFront, call: Call) -> tuple[int, dict]:
    svc = _service_or_none(call, call.request.get("service"))
    front.ok(call, "DeleteService", call.request)
    if svc is None:
        raise ApiError("ServiceNotFoundException", "Service not found.")
    bridge.service_deleted(svc)
    return 200, {"service": front.describe_service(call, svc)}


def run_task(front: EcsFront, call: Call) -> tuple[int, dict]:
    r = call.request
    if not r.get("taskDefinition"):
        raise ApiError("InvalidParameterException", "taskDefinition can not be blank.")
    count = int(r.get("count") or 1)
    if not 1 <= count <= 10:
        raise ApiError("InvalidParameterException", "count must be between 1 and 10.")
    if r.get("launchType") not in (None, "FARGATE") or any(
        s.get("capacityProvider") not in ("FARGATE", "FARGATE_SPOT")
        for s in r.get("capacityProviderStrategy") or []
    ):
        raise ApiError(
            "InvalidParameterException",
            "the local data plane runs FARGATE tasks only (launchType FARGATE).",
        )
    arns = bridge.run_task(
        call.region,
        call.account,
        call.cluster,
        str(r["taskDefinition"]),
        count,
        overrides=r.get("overrides"),
        started_by=str(r.get("startedBy") or ""),
        tags=r.get("tags"),
        network_configuration=r.get("networkConfiguration"),
        group=r.get("group"),
    )
    return 200, {"tasks": front.describe_tasks(call, arns), "failures": []}


def stop_task(front: EcsFront, call: Call) -> tuple[int, dict]:
    ref = str(call.request.get("task") or "")
    arn = next(
        (
            a
            for a in bridge.list_tasks(
                call.region, call.account, call.cluster, desired_status="RUNNING"
            )
            + bridge.list_tasks(call.region, call.account, call.cluster, desired_status="STOPPED")
            if a == ref or a.rpartition("/")[2] == ref
        ),
        None,
    )
    if arn is None:
        raise ApiError("InvalidParameterException", "The referenced task was not found.")
    reason = str(call.request.get("reason") or "Task stopped by user")
    bridge.request_stop(arn, reason, "UserInitiated")
    return 200, {"task": front.describe_tasks(call, [arn])[0]}


def list_tasks(front: EcsFront, call: Call) -> tuple[int, dict]:
    r = call.request
    try:
        arns = bridge.list_tasks(
            call.region,
            call.account,
            call.cluster,
            family=r.get("family"),
            started_by=r.get("startedBy"),
            service_name=r.get("serviceName"),
            desired_status=r.get("desiredStatus"),
        )
    except Exception:  # noqa: BLE001 - an unknown cluster: moto's own error answer
        return front.moto(call, "ListTasks", r)
    return 200, {"taskArns": arns}


def list_service_deployments(front: EcsFront, call: Call) -> tuple[int, dict]:
    svc = _service_or_none(call, call.request.get("service"))
    if svc is None:
        raise ApiError("ServiceNotFoundException", "Service not found.")
    wanted = set(call.request.get("status") or [])
    created = call.request.get("createdAt") or {}
    after, before = created.get("after"), created.get("before")
    briefs = []
    for sd in bridge.service_deployments(svc.arn):
        ts = sd["createdAt"].timestamp()
        if wanted and sd["status"] not in wanted:
            continue
        if (after is not None and ts < float(after)) or (before is not None and ts > float(before)):
            continue
        briefs.append(
            {
                k: sd[k]
                for k in (
                    "serviceDeploymentArn", "serviceArn", "clusterArn", "startedAt", "createdAt",
                    "finishedAt", "status", "statusReason",
                )
                if k in sd
            }
            | {"targetServiceRevisionArn": sd["targetServiceRevision"]["arn"]}
        )  # fmt: skip
    return 200, {"serviceDeployments": briefs}


def describe_service_deployments(front: EcsFront, call: Call) -> tuple[int, dict]:
    found, failures = [], []
    for arn in call.request.get("serviceDeploymentArns") or []:
        sd = bridge.service_deployment(arn)
        if sd is None:
            failures.append({"arn": arn, "reason": "MISSING"})
        else:
            found.append(sd)
    return 200, {"serviceDeployments": found, "failures": failures}


def stop_service_deployment(front: EcsFront, call: Call) -> tuple[int, dict]:
    arn = str(call.request.get("serviceDeploymentArn") or "")
    sd = bridge.service_deployment(arn)
    if sd is None:
        raise ApiError(
            "ServiceDeploymentNotFoundException", "The service deployment does not exist."
        )
    if sd["status"] not in ("PENDING", "IN_PROGRESS"):
        raise ApiError(
            "ConflictException",
            f"The service deployment is {sd['status']} and cannot be stopped.",
        )
    stop_type = call.request.get("stopType") or "ROLLBACK"
    if stop_type not in ("ROLLBACK", "ABORT"):
        raise ApiError("InvalidParameterException", "stopType must be ROLLBACK or ABORT.")
    deployment_id = bridge._service_deployments[arn]["_deployment_id"]
    bridge.update_service_deployment(
        deployment_id, status="ROLLBACK_REQUESTED" if stop_type == "ROLLBACK" else "STOP_REQUESTED"
    )
    return 200, {"serviceDeploymentArn": arn}


def describe_service_revisions(front: EcsFront, call: Call) -> tuple[int, dict]:
    found, failures = [], []
    for arn in call.request.get("serviceRevisionArns") or []:
        rev = bridge.service_revision(arn)
        if rev is None:
            failures.append({"arn": arn, "reason": "MISSING"})
        else:
            found.append(rev)
    return 200, {"serviceRevisions": found, "failures": failures}


def continue_service_deployment(front: EcsFront, call: Call) -> tuple[int, dict]:
    arn = str(call.request.get("serviceDeploymentArn") or "")
    hook_id = str(call.request.get("hookId") or "")
    action = call.request.get("action") or "CONTINUE"
    if action not in ("CONTINUE", "ROLLBACK"):
        raise ApiError("InvalidParameterException", "action must be CONTINUE or ROLLBACK.")
    problem = bridge.continue_hook(arn, hook_id, action)
    if problem == "missing":
        raise ApiError(
            "ServiceDeploymentNotFoundException", "The service deployment does not exist."
        )
    if problem is not None:
        raise ApiError(
            "InvalidParameterException",
            f"the service deployment has no lifecycle hook {hook_id!r} awaiting action; see "
            "DescribeServiceDeployments' lifecycleHookDetails.",
        )
    return 200, {"serviceDeploymentArn": arn}


HANDLERS: dict[str, Handler] = {
    "CreateService": create_service,
    "UpdateService": update_service,
    "DeleteService": delete_service,
    "RunTask": run_task,
    "StopTask": stop_task,
    "ListTasks": list_tasks,
    "ListServiceDeployments": list_service_deployments,
    "DescribeServiceDeployments": describe_service_deployments,
    "StopServiceDeployment": stop_service_deployment,
    "ContinueServiceDeployment": continue_service_deployment,
    "DescribeServiceRevisions": describe_service_revisions,
}
