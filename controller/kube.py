"""The Kubernetes source: a thin kopf operator around the reconcile core.

Every handler does the same thing: read the ModelDeployment, call
:meth:`controller.reconcile.Reconciler.reconcile` (the same core the folder and S3 sources
use), write the returned status to the status subresource, and post one Kubernetes Event
per action taken. No reconcile logic lives here.

- create / update / resume handlers reconcile at once; a timer re-reconciles every
  ``resync`` seconds (level-triggered: it puts back drift made by hand in AWS) and sooner
  when the core asks (``requeue_after``, e.g. while a rollout is in progress).
- An invalid spec (the pydantic API refuses it; a real API server refuses most of it
  already through the CRD's schema) gets ``Degraded=True/InvalidSpec`` with the message,
  and no AWS call at all.
- Deleting a ModelDeployment goes through a finalizer and the delete policy:
  ``Retain`` (the default) leaves the ECS service and the model pointer as they are, so
  deleting the object never takes a model offline; ``ScaleToZero`` scales the service to
  zero tasks (the pointer and the task definitions stay, so re-applying the object brings
  the same version back). The policy is the operator's (``MLOPS_DELETE_POLICY``, the
  chart's ``deletePolicy``) and can be set per object with the annotation
  ``mlops.platform.io/delete-policy``. With no controller running, a deletion waits on
  the finalizer; ``kubectl patch mdep NAME --type=merge -p '{"metadata":{"finalizers":[]}}'``
  releases it without touching AWS.
- kopf's peering makes replicas exclusive: each process takes a random priority, and only
  the highest-priority live one handles objects (the others pause). Run with
  ``standalone=True`` only when there is exactly one controller.
- The liveness endpoint is kopf's (``/healthz``), which answers only while the operator's
  tasks are alive.

kopf keeps its bookkeeping in annotations under ``kopf.mlops.platform.io/`` (not in
``status.kopf``, which the CRD's structural schema would prune).
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import kopf
from pydantic import ValidationError

from controller.actions import describe
from controller.api import GROUP, PLURAL, VERSION, ModelDeployment, ModelDeploymentStatus
from mlops_core.errors import InvalidInput, MlopsError
from mlops_core.logs import get_logger
from mlops_core.naming import Platform
from mlops_core.yamlio import format_validation_error

log = get_logger("controller.kube")

DeletePolicy = Literal["Retain", "ScaleToZero"]
DELETE_POLICIES: tuple[str, ...] = ("Retain", "ScaleToZero")
DELETE_POLICY_ANNOTATION = f"{GROUP}/delete-policy"
FINALIZER = f"{GROUP}/finalizer"
# kopf's own bookkeeping (progress, the last handled spec) lives in annotations under a
# prefix of its own, apart from the ones users set (mlops.platform.io/delete-policy).
KOPF_PREFIX = f"kopf.{GROUP}"
DIFFBASE_ANNOTATION = f"{KOPF_PREFIX}/last-handled-configuration"
PEERING_NAME = "mlops-controller"
DEFAULT_LIVENESS = "http://0.0.0.0:8080/healthz"
RESOURCE = (GROUP, VERSION, PLURAL)


@dataclass
class KubeSettings:
    resync: float = 60.0  # every object is reconciled at least this often
    tick: float = 5.0  # the timer's granularity: how late a requeue_after may fire
    delete_policy: DeletePolicy = "Retain"


def _key(body: Mapping[str, Any]) -> str:
    meta = body.get("metadata", {})
    return f"{meta.get('namespace') or 'default'}/{meta.get('name')}"


def _handled_before(body: Mapping[str, Any], **_: Any) -> bool:
    return DIFFBASE_ANNOTATION in (body.get("metadata", {}).get("annotations") or {})


def _plain(status: Any) -> dict[str, Any]:
    """A status as plain JSON data (kopf hands out mapping views)."""
    return json.loads(json.dumps(status or {}, default=dict))


def _desired(body: Mapping[str, Any]) -> dict[str, Any]:
    """The object as the API validates it: everything but the status (ours to write)."""
    return {k: v for k, v in body.items() if k != "status"}


def _previous_status(body: Mapping[str, Any]) -> ModelDeploymentStatus | None:
    raw = body.get("status") or None
    if not raw:
        return None
    try:
        return ModelDeploymentStatus.model_validate(dict(raw))
    except ValidationError:
        return None  # not written by us (or by an older us): start over


def parse(body: Mapping[str, Any]) -> ModelDeployment:
    """The ModelDeployment in ``body``, or InvalidInput naming every bad field."""
    meta = body.get("metadata", {})
    where = f"modeldeployment {meta.get('namespace', 'default')}/{meta.get('name', '?')}"
    try:
        return ModelDeployment.model_validate(_desired(body))
    except ValidationError as err:
        raise InvalidInput(
            format_validation_error(err, where, None),
            hint="fix the spec (kubectl edit) or re-apply a corrected manifest",
        ) from None


def status_patch(old: Mapping[str, Any] | None, new: ModelDeploymentStatus) -> dict[str, Any]:
    """The merge patch that turns status ``old`` into ``new`` ({} when already equal).

    Keys the new status no longer has are set to None, which a merge patch deletes.
    """
    wanted = new.model_dump(mode="json", by_alias=True, exclude_none=True)
    old = dict(old or {})
    patch: dict[str, Any] = {k: v for k, v in wanted.items() if old.get(k) != v}
    patch.update({k: None for k in old if k not in wanted})
    return patch


def delete_policy(body: Mapping[str, Any], default: DeletePolicy) -> DeletePolicy:
    annotations = body.get("metadata", {}).get("annotations") or {}
    value = annotations.get(DELETE_POLICY_ANNOTATION, default)
    if value not in DELETE_POLICIES:
        raise InvalidInput(
            f"annotation {DELETE_POLICY_ANNOTATION}: unknown delete policy {value!r}",
            hint=f"use one of {', '.join(DELETE_POLICIES)}",
        )
    return value  # type: ignore[return-value]


@dataclass
class Adapter:
    """kopf handlers bound to one reconciler. ``reconciler`` and ``invalid_status`` are
    :mod:`controller.reconcile`'s unless given (tests give their own)."""

    reconciler: Any = None
    invalid_status: Callable[..., ModelDeploymentStatus] | None = None
    settings: KubeSettings = field(default_factory=KubeSettings)
    platform: Platform | None = None
    _locks: dict[str, threading.Lock] = field(default_factory=dict, init=False)
    _due: dict[str, float] = field(default_factory=dict, init=False)
    _written: dict[str, tuple[dict[str, Any], ModelDeploymentStatus]] = field(
        default_factory=dict, init=False
    )
    _guard: threading.Lock = field(default_factory=threading.Lock, init=False)
    reconciles: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.platform = self.platform or Platform.from_env()
        if self.reconciler is None or self.invalid_status is None:
            from controller import reconcile  # the AWS planner loads only when running

            self.reconciler = self.reconciler or reconcile.Reconciler(self.platform)
            self.invalid_status = self.invalid_status or reconcile.invalid_status

    # -- one reconcile -----------------------------------------------------------------
    def _lock(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def handle(self, body: Mapping[str, Any], patch: kopf.Patch, *, timer: bool = False) -> None:
        """Reconcile one object and put its new status into ``patch``.

        Change handlers wait for the object's lock. The timer skips an object whose
        reconcile is running or that is not due yet (a change handler just did it).
        """
        key = _key(body)
        lock = self._lock(key)
        if not lock.acquire(blocking=not timer):
            return
        try:
            if timer and time.monotonic() < self._due.get(key, 0.0):
                return
            self._handle(key, body, patch)
        finally:
            lock.release()

    def _handle(self, key: str, body: Mapping[str, Any], patch: kopf.Patch) -> None:
        generation = body.get("metadata", {}).get("generation")
        # kopf applies a handler's patch after it returns, so a handler that raced another
        # (the timer against a change handler) may still see the status the other one
        # replaced: then the status that replaced it is the previous one.
        written = self._written.get(key)
        if written is not None and written[0] == _plain(body.get("status")):
            previous: ModelDeploymentStatus | None = written[1]
        else:
            previous = _previous_status(body)
        bound = log.bind(key=key, generation=generation)
        try:
            deployment = parse(body)
        except MlopsError as error:
            status = self.invalid_status(error, generation, previous)
            bound.warning("invalid spec", error=error.what)
            self._write(body, patch, previous, status)
            self._due[key] = time.monotonic() + self.settings.resync
            return
        result = self.reconciler.reconcile(deployment, previous)
        self.reconciles += 1
        for action in result.actions:
            kopf.info(dict(body), reason=type(action).__name__, message=describe(action))
        bound.info(
            "reconciled",
            actions=[describe(a) for a in result.actions],
            degraded=result.degraded,
            requeue_after=result.requeue_after,
        )
        self._write(body, patch, previous, result.status)
        delay = self.settings.resync
        if result.requeue_after is not None:
            delay = min(delay, result.requeue_after)
        self._due[key] = time.monotonic() + delay

    def _write(
        self,
        body: Mapping[str, Any],
        patch: kopf.Patch,
        previous: ModelDeploymentStatus | None,
        status: ModelDeploymentStatus,
    ) -> None:
        changes = status_patch(body.get("status"), status)
        if changes:  # the steady state writes nothing
            patch.status.update(changes)
            self._written[_key(body)] = (_plain(body.get("status")), status)
        self._post_transitions(body, previous, status)

    @staticmethod
    def _post_transitions(
        body: Mapping[str, Any],
        previous: ModelDeploymentStatus | None,
        status: ModelDeploymentStatus,
    ) -> None:
        """One Event per condition whose status or reason changed."""
        for cond in status.conditions:
            before = previous.condition(cond.type) if previous else None
            if before is not None and (before.status, before.reason) == (cond.status, cond.reason):
                continue
            message = f"{cond.type}={cond.status} ({cond.reason}) {cond.message}".strip()
            if cond.type == "Degraded" and cond.status == "True":
                kopf.warn(dict(body), reason=cond.reason, message=message)
            else:
                kopf.info(dict(body), reason=cond.reason, message=message)

    # -- kopf's entry points -------------------------------------------------------------
    def on_change(self, body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        self.handle(body, patch)

    def on_timer(self, body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        self.handle(body, patch, timer=True)

    def on_delete(self, body: kopf.Body, **_: Any) -> None:
        key = _key(body)
        try:
            policy = delete_policy(body, self.settings.delete_policy)
        except InvalidInput as error:
            # A typo in the annotation must not block the deletion forever: say so, and
            # apply the operator's default.
            policy = self.settings.delete_policy
            kopf.warn(dict(body), reason="InvalidDeletePolicy", message=error.render())
        with self._lock(key):
            if policy == "ScaleToZero":
                try:
                    deployment = parse(body)
                except MlopsError:
                    deployment = None  # an invalid spec never made a service
                if deployment is not None and self.reconciler.retire(deployment, policy):
                    kopf.info(dict(body), reason="ScaledToZero", message="service scaled to 0")
            log.info("deleted", key=key, policy=policy)
            self._due.pop(key, None)
            self._written.pop(key, None)
        with self._guard:
            self._locks.pop(key, None)

    def registry(self) -> kopf.OperatorRegistry:
        registry = kopf.OperatorRegistry()
        kopf.on.login(registry=registry, id="login")(_login)
        for decorator in (kopf.on.create, kopf.on.update):
            decorator(*RESOURCE, registry=registry, id="reconcile")(self.on_change)
        # kopf runs resume handlers alongside create handlers for an object it has never
        # handled; resume only what was handled before, or that object is reconciled twice.
        kopf.on.resume(*RESOURCE, registry=registry, id="reconcile", when=_handled_before)(
            self.on_change
        )
        kopf.timer(*RESOURCE, registry=registry, id="resync", interval=self.settings.tick)(
            self.on_timer
        )
        kopf.on.delete(*RESOURCE, registry=registry, id="finalize")(self.on_delete)
        kopf.on.probe(registry=registry, id="reconciles")(lambda **_: self.reconciles)
        return registry


def _login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In a pod: the service account; elsewhere: KUBECONFIG or ~/.kube/config."""
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


class _QuietTimer(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Timer 'resync' succeeded" not in record.getMessage()


def operator_settings(*, standalone: bool) -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=KOPF_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=KOPF_PREFIX, key=DIFFBASE_ANNOTATION.split("/", 1)[1]
    )
    # Without the peering CRDs a second replica would reconcile alongside: refuse to start.
    settings.peering.mandatory = not standalone
    settings.posting.level = logging.INFO
    return settings


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes")


def run_operator(
    namespace: str | None = None,
    all_namespaces: bool = True,
    liveness: str | None = None,
    peering: str | None = None,
    standalone: bool = False,
    *,
    priority: int | None = None,
    delete_policy: str | None = None,
    resync: float = 60.0,
    adapter: Adapter | None = None,
) -> None:
    """Run the operator until SIGINT/SIGTERM (``mlopsctl controller run --source kube``).

    Credentials come from ``KUBECONFIG``/``~/.kube/config`` or, in a pod, the service
    account. Arguments left unset come from the environment (which is how the Helm chart
    configures the pod):

    - ``MLOPS_KUBE_NAMESPACE``: watch one namespace (default: all namespaces);
    - ``MLOPS_KUBE_LIVENESS``: kopf's liveness endpoint (default
      ``http://0.0.0.0:8080/healthz``; ``off`` disables it);
    - ``MLOPS_KUBE_PEERING``: the ClusterKopfPeering (or KopfPeering) name
      (default ``mlops-controller``); ``MLOPS_KUBE_STANDALONE=true`` runs without peering;
    - ``MLOPS_KUBE_PRIORITY``: this replica's peering priority (default: random);
    - ``MLOPS_DELETE_POLICY``: ``Retain`` (default) or ``ScaleToZero``.
    """
    namespace = namespace or os.environ.get("MLOPS_KUBE_NAMESPACE") or None
    if namespace is None and not all_namespaces:
        raise InvalidInput(
            "no namespace to watch", hint="give a namespace, or watch all namespaces"
        )
    if liveness is None:
        liveness = os.environ.get("MLOPS_KUBE_LIVENESS", DEFAULT_LIVENESS)
    if liveness in ("", "off"):
        liveness = None
    peering = peering or os.environ.get("MLOPS_KUBE_PEERING") or PEERING_NAME
    standalone = standalone or _env_flag("MLOPS_KUBE_STANDALONE")
    if priority is None and os.environ.get("MLOPS_KUBE_PRIORITY"):
        priority = int(os.environ["MLOPS_KUBE_PRIORITY"])
    policy = delete_policy or os.environ.get("MLOPS_DELETE_POLICY") or "Retain"
    if policy not in DELETE_POLICIES:
        raise InvalidInput(
            f"unknown delete policy {policy!r}",
            hint=f"use one of {', '.join(DELETE_POLICIES)} (MLOPS_DELETE_POLICY)",
        )
    # The resync timer ticks often to honour requeue_after; its per-tick success line
    # would drown the log.
    logging.getLogger("kopf.objects").addFilter(_QuietTimer())
    adapter = adapter or Adapter(settings=KubeSettings(resync=resync, delete_policy=policy))
    log.info(
        "starting the Kubernetes operator",
        namespace=namespace or "(all)",
        peering=None if standalone else peering,
        delete_policy=policy,
        liveness=liveness,
    )
    kopf.run(
        registry=adapter.registry(),
        settings=operator_settings(standalone=standalone),
        standalone=standalone,
        peering_name=peering,
        # Replicas must differ in priority, or kopf pauses them all as conflicting.
        priority=priority if priority is not None else random.randint(1, 2**31 - 1),
        liveness_endpoint=liveness,
        clusterwide=namespace is None,
        namespaces=[namespace] if namespace else (),
    )
