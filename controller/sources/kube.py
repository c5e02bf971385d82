"""The Kubernetes source: ModelDeployments as kopf's watch delivers them.

kopf (``controller.kube``) watches the objects and feeds every event into
:meth:`KubeSource.observe`; the runtime (:mod:`controller.runtime`) reads them from here
like any other source: ``scan`` lists keys (``namespace/name``) with their
resourceVersion, ``read`` parses a body, ``write_status`` merge-patches the status
subresource, ``announce`` posts Events. The lease is a ``coordination.k8s.io`` Lease,
the same leader election as the S3 source's (``controller.leases.Lease``).

Deletion: kopf's finalizer handler calls :meth:`KubeSource.finalize`, which waits until
the runtime has applied the delete policy (:meth:`retired`); kopf then removes the
finalizer. A replica that does not hold the lease never applies it, so the handler times
out there and kopf retries, while the leader finishes it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from controller.actions import Action, describe
from controller.api import (
    GROUP,
    PLURAL,
    VERSION,
    DeletePolicy,
    ModelDeployment,
    ModelDeploymentStatus,
    delete_policy,
    deployment_key,
)
from controller.kubeapi import KubeApiError, KubeClient, now_rfc3339
from controller.leases import Holder, Lease, LeaseRecord
from controller.manifests import spec_hash
from controller.sources.base import Document, StatusRecord
from mlops_core.errors import InvalidInput, MlopsError
from mlops_core.logs import get_logger
from mlops_core.yamlio import format_validation_error

log = get_logger("controller.sources.kube")

LEASE_NAME = "mlops-controller"


def _plain(value: Any) -> Any:
    """kopf's mapping views as plain JSON data."""
    return json.loads(json.dumps(value or {}, default=dict))


def body_key(body: Mapping[str, Any]) -> str:
    meta = body.get("metadata", {})
    return deployment_key(meta.get("namespace"), str(meta.get("name")))


def parse_body(body: Mapping[str, Any]) -> ModelDeployment:
    """The ModelDeployment in ``body``, or InvalidInput naming every bad field."""
    where = f"modeldeployment {body_key(body)}"
    try:
        return ModelDeployment.model_validate({k: v for k, v in body.items() if k != "status"})
    except ValidationError as err:
        raise InvalidInput(
            format_validation_error(err, where, None),
            hint="fix the spec (kubectl edit) or re-apply a corrected manifest",
        ) from None


def status_patch(old: Mapping[str, Any] | None, new: ModelDeploymentStatus) -> dict[str, Any]:
    """The merge patch that turns status ``old`` into ``new`` ({} when already equal).
    Keys the new status no longer has are set to None, which a merge patch deletes."""
    wanted = new.model_dump(mode="json", by_alias=True, exclude_none=True)
    old = dict(old or {})
    patch: dict[str, Any] = {k: v for k, v in wanted.items() if old.get(k) != v}
    patch.update({k: None for k in old if k not in wanted})
    return patch


def _previous_status(body: Mapping[str, Any]) -> ModelDeploymentStatus | None:
    raw = body.get("status") or None
    if not raw:
        return None
    try:
        return ModelDeploymentStatus.model_validate(dict(raw))
    except ValidationError:
        return None  # not written by us (or by an older us): start over


def _newer_or_same(rv: str | None, floor: str | None) -> bool:
    """Whether resourceVersion ``rv`` is not older than ``floor``. resourceVersions are
    opaque; etcd's are integers, and only then can an older one be told apart."""
    if floor is None or rv is None or not (rv.isdigit() and floor.isdigit()):
        return True
    return int(rv) >= int(floor)


class KubeSource:
    def __init__(
        self,
        client: KubeClient,
        lease: Lease,
        *,
        namespace: str | None = None,
        delete_policy: DeletePolicy = "Retain",
    ):
        self.client = client
        self.lease = lease
        self.namespace = namespace
        self.default_policy: DeletePolicy = delete_policy
        self.uri = f"kube:{client.server}" + (f"/{namespace}" if namespace else "")
        self._lock = threading.Lock()
        self._bodies: dict[str, dict[str, Any]] = {}
        #: resourceVersion of our own last status write, per key: older watch events
        #: (already in flight when we wrote) must not roll the status back.
        self._floor: dict[str, str] = {}
        self._retired: set[str] = set()
        self._waiters: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Future]]] = {}

    # -- fed by kopf -----------------------------------------------------------------
    def observe(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A watch event of one ModelDeployment (kopf's ``on.event``)."""
        plain = _plain(body)
        key = body_key(plain)
        with self._lock:
            if event_type == "DELETED":
                self._bodies.pop(key, None)
                self._floor.pop(key, None)
                self._retired.discard(key)
                return
            rv = plain.get("metadata", {}).get("resourceVersion")
            if not _newer_or_same(rv, self._floor.get(key)):
                return
            self._bodies[key] = plain

    async def finalize(self, body: Mapping[str, Any], timeout: float) -> bool:
        """Wait (in kopf's finalizer handler) until the delete policy of ``body`` was
        applied; False if that did not happen within ``timeout`` seconds."""
        self.observe("MODIFIED", body)
        key = body_key(body)
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        with self._lock:
            if key in self._retired:
                return True
            self._waiters.setdefault(key, []).append((loop, future))
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return False
        finally:
            with self._lock:
                waiting = self._waiters.get(key, [])
                if (loop, future) in waiting:
                    waiting.remove((loop, future))

    # -- the runtime's side ------------------------------------------------------------
    def scan(self) -> dict[str, str]:
        with self._lock:
            return {
                key: str(body.get("metadata", {}).get("resourceVersion", ""))
                for key, body in self._bodies.items()
            }

    def recorded(self) -> list[str]:
        """A status lives in its object: deletions go through the finalizer instead."""
        return []

    def _body(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            return self._bodies.get(name)

    def where(self, name: str) -> str:
        return f"modeldeployment {name}"

    def read(self, name: str) -> Document | None:
        body = self._body(name)
        if body is None:
            return None
        meta = body.get("metadata", {})
        raw_spec = body.get("spec")
        spec: dict[str, Any] = raw_spec if isinstance(raw_spec, dict) else {}
        fields: dict[str, Any] = {
            "generation": meta.get("generation"),
            "deleting": bool(meta.get("deletionTimestamp")),
            "annotations": dict(meta.get("annotations") or {}),
            "project": spec.get("project") if isinstance(spec.get("project"), str) else None,
            "env": spec.get("env") if isinstance(spec.get("env"), str) else None,
        }
        try:
            deployment = parse_body(body)
        except MlopsError as error:
            raw = json.dumps(body.get("spec"), sort_keys=True).encode()
            digest = "raw:" + hashlib.sha256(raw).hexdigest()
            return Document(name, name, digest, error=error, **fields)
        return Document(name, name, spec_hash(deployment), deployment=deployment, **fields)

    def read_status(self, name: str) -> StatusRecord | None:
        body = self._body(name)
        if body is None:
            return None
        status = _previous_status(body)
        if status is None:
            return None
        doc = self.read(name)
        assert doc is not None
        try:
            policy = delete_policy(doc.annotations, self.default_policy)
        except ValueError:
            policy = self.default_policy
        spec = doc.deployment.spec if doc.deployment else None
        return StatusRecord(
            name=name,
            key=name,
            generation=int(doc.generation or 0),
            spec_hash=doc.digest,
            project=spec.project if spec else doc.project,
            env=spec.env if spec else doc.env,
            delete_policy=policy,
            status=status,
        )

    def _path(self, name: str) -> str:
        namespace, _, obj = name.partition("/")
        return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{obj}"

    def write_status(self, name: str, record: StatusRecord) -> None:
        body = self._body(name)
        if body is None or record.status is None:
            return
        changes = status_patch(body.get("status"), record.status)
        if not changes:
            return
        answer = self.client.patch_status(self._path(name), changes)
        if answer is None:
            return  # deleted meanwhile
        with self._lock:
            if name in self._bodies:
                self._bodies[name] = _plain(answer)
                rv = answer.get("metadata", {}).get("resourceVersion")
                if rv:
                    self._floor[name] = str(rv)

    def delete_status(self, name: str) -> None:
        """The object is gone, and its status with it."""

    def retired(self, name: str) -> None:
        with self._lock:
            self._retired.add(name)
            waiters = self._waiters.pop(name, [])
        for loop, future in waiters:
            loop.call_soon_threadsafe(_resolve, future)

    def announce(
        self,
        name: str,
        actions: Sequence[Action],
        previous: ModelDeploymentStatus | None,
        status: ModelDeploymentStatus,
    ) -> None:
        """One Event per action taken and per condition whose status or reason changed."""
        events = [(type(a).__name__, describe(a), False) for a in actions]
        for cond in status.conditions:
            before = previous.condition(cond.type) if previous else None
            if before is not None and (before.status, before.reason) == (cond.status, cond.reason):
                continue
            message = f"{cond.type}={cond.status} ({cond.reason}) {cond.message}".strip()
            warning = cond.type in ("Degraded", "Drifted") and cond.status == "True"
            events.append((cond.reason, message, warning))
        self._post(name, events)

    def warn(self, name: str, reason: str, message: str) -> None:
        self._post(name, [(reason, message, True)])

    def _post(self, name: str, events: list[tuple[str, str, bool]]) -> None:
        body = self._body(name)
        if body is None or not events:
            return
        meta = body.get("metadata", {})
        involved = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ModelDeployment",
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        }
        for reason, message, warning in events:
            try:
                self.client.post_event(involved, reason=reason, message=message, warning=warning)
            except (KubeApiError, OSError) as exc:  # Events are best effort
                log.warning("event not posted", key=name, reason=reason, error=str(exc))

    # -- the lease -----------------------------------------------------------------------
    @contextmanager
    def guard(self, name: str):
        # Acquisition is the heartbeat's job (once per poll); here only a renewal if due.
        yield self.lease.held() and self.lease.ensure()

    def heartbeat(self) -> bool:
        return self.lease.ensure()

    def holder(self, name: str | None = None) -> Holder | None:
        """One Lease for every key: its holder and expiry."""
        return self.lease.current_holder()

    def may_write(self) -> bool:
        return self.lease.may_write()

    def close(self) -> None:
        self.lease.release()


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(True)


class KubeLeaseStore:
    """A ``coordination.k8s.io/v1`` Lease: created with POST (409 if it exists), replaced
    with a merge patch carrying the resourceVersion read, which the API server checks
    (409 if anyone wrote it since)."""

    def __init__(self, client: KubeClient, namespace: str, name: str = LEASE_NAME) -> None:
        self.client = client
        self.namespace = namespace
        self.name = name
        self.uri = f"lease {namespace}/{name}"
        self._collection = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"

    def read(self) -> tuple[LeaseRecord, str] | None:
        lease = self.client.request("GET", f"{self._collection}/{self.name}")
        if lease is None:
            return None
        spec = lease.get("spec") or {}
        ttl = float(spec.get("leaseDurationSeconds") or 0)
        renewed = _timestamp(spec.get("renewTime"))
        holder = spec.get("holderIdentity") or None
        record = LeaseRecord(holder=holder, ttl=ttl, renewed_at=renewed, expires_at=renewed + ttl)
        return record, str(lease["metadata"]["resourceVersion"])

    def _object(self, record: LeaseRecord, version: str | None = None) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if version is not None:
            metadata["resourceVersion"] = version
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": {
                "holderIdentity": record.holder or "",
                "leaseDurationSeconds": max(1, round(record.expires_at - record.renewed_at))
                if record.holder
                else 1,
                "renewTime": now_rfc3339(micro=True),
            },
        }

    def _write(self, method: str, path: str, body: dict[str, Any], **headers: str) -> str | None:
        try:
            answer = self.client.request(method, path, body, **headers)
        except KubeApiError as exc:
            if exc.status == 409:
                return None
            raise
        return None if answer is None else str(answer["metadata"]["resourceVersion"])

    def create(self, record: LeaseRecord) -> str | None:
        return self._write("POST", self._collection, self._object(record))

    def replace(self, record: LeaseRecord, token: str) -> str | None:
        return self._write(
            "PATCH",
            f"{self._collection}/{self.name}",
            self._object(record, token),
            **{"Content-Type": "application/merge-patch+json"},
        )


def _timestamp(value: str | None) -> float:
    if not value:
        return 0.0
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
