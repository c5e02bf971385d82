"""A Kubernetes API for the e2e tests: kmock's KubernetesEmulator on loopback, in a thread.

There is no kube-apiserver on these machines. kmock (by kopf's author; kopf's own tests
use it) emulates the API as an in-memory object store over real HTTP, so the real
``kubectl`` and the real kopf operator can talk to it. Where it stops short of an API
server in ways the tests depend on, this module adds the API server's behaviour, in test
code only (the product is never bent to the emulator):

- ``metadata.generation`` (1 on create, +1 on every spec change), ``uid``,
  ``creationTimestamp`` and ``resourceVersion`` for ModelDeployments;
- the status subresource's split: writes to the object ignore ``status``, writes to
  ``/status`` change nothing but ``status`` (so a controller that wrote its status to the
  wrong endpoint would fail the test, as it would fail on a real cluster);
- ``kind``/``apiVersion`` on list responses (kubectl needs them);
- optimistic concurrency on Leases (a write with a stale ``resourceVersion`` is a 409) and
  the 256 KiB limit on an object's annotations (a 422), as the API server enforces them;
- the server-side Table conversion with the CRD's ``additionalPrinterColumns`` (what makes
  ``kubectl get -o wide`` print Project, Env, Version, Ready, Reason): the columns are
  read from the CRD object stored by ``kubectl apply -f crds/modeldeployment.yaml``.

Listing ``/api/v1/namespaces`` fails on the emulator, so the operator runs cluster-wide.
Schema validation is not emulated here (``apiserver_admission`` covers it).
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import re
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import kmock
from kmock import ResourceInfo

MD = "mlops.platform.io/v1alpha1/modeldeployments"
CRD_RESOURCE = "apiextensions.k8s.io/v1/customresourcedefinitions"
VERBS = {"get", "list", "watch", "create", "update", "patch", "delete"}
KINDS = {
    CRD_RESOURCE: "CustomResourceDefinition",
    "v1/namespaces": "Namespace",
    "v1/events": "Event",
    "events.k8s.io/v1/events": "Event",
    MD: "ModelDeployment",
    "coordination.k8s.io/v1/leases": "Lease",
}


RESOURCE_KINDS = {kmock.resource(name): kind for name, kind in KINDS.items()}
MD_RESOURCE = kmock.resource(MD)
CRD_RES = kmock.resource(CRD_RESOURCE)
LEASE_RESOURCE = kmock.resource("coordination.k8s.io/v1/leases")
# The API server's limit on all of an object's annotations together (keys and values).
ANNOTATIONS_MAX = 256 * 1024


@attrs.frozen
class ConflictError(kmock.KubernetesError):
    status: int = 409
    reason: str = "Conflict"
    message: str = "the object has been modified; please apply your changes to the latest version"


@attrs.frozen
class TooLongError(kmock.KubernetesError):
    status: int = 422
    reason: str = "Invalid"
    message: str = f"metadata.annotations: Too long: must have at most {ANNOTATIONS_MAX} bytes"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _merge(base: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(base) if isinstance(base, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge(out.get(key), value)
    return out


def jsonpath(obj: Any, path: str) -> list[Any]:
    """The subset of Kubernetes JSONPath the printer columns use: ``.a.b`` and
    ``[?(@.key=="value")]`` filters over lists."""
    values = [obj]
    for part in re.findall(r'\.[A-Za-z0-9_]+|\[\?\(@\.[A-Za-z0-9_]+=="[^"]*"\)\]', path):
        nxt: list[Any] = []
        for value in values:
            if part.startswith("."):
                if isinstance(value, dict) and part[1:] in value:
                    nxt.append(value[part[1:]])
            else:
                key, wanted = re.match(r'\[\?\(@\.([A-Za-z0-9_]+)=="([^"]*)"\)\]', part).groups()
                nxt += [v for v in value or [] if isinstance(v, dict) and v.get(key) == wanted]
        values = nxt
    return values


def _age(timestamp: str | None) -> str:
    if not timestamp:
        return "<unknown>"
    seconds = int((datetime.now(UTC) - datetime.fromisoformat(timestamp)).total_seconds())
    return f"{seconds}s" if seconds < 120 else f"{seconds // 60}m"


@attrs.define(kw_only=True)
class ApiServerEmulator(kmock.KubernetesEmulator):
    _versions: Any = attrs.field(factory=lambda: itertools.count(1), init=False)

    async def _handle(self, request: kmock.Request) -> Any:
        if request.resource == LEASE_RESOURCE:
            request = self._as_lease_server(request)
        if request.resource == MD_RESOURCE and isinstance(request.data, dict):
            self._check_annotations(request)
        changed = request
        if request.resource == MD_RESOURCE:
            changed = self._as_api_server(request)
        elif request.action == kmock.action.CREATE and isinstance(request.data, dict):
            changed = self._generate_name(request)
        if changed is not request:
            # kmock routes a request only if it is among the requests it has seen.
            self._requests[self._requests.index(request)] = changed
            request = changed
        return await super()._handle(request)

    def _check_annotations(self, request: kmock.Request) -> None:
        current = self._current(request) or {}
        annotations = _merge(current, request.data).get("metadata", {}).get("annotations") or {}
        if sum(len(k) + len(str(v)) for k, v in annotations.items()) > ANNOTATIONS_MAX:
            raise TooLongError()

    def _as_lease_server(self, request: kmock.Request) -> kmock.Request:
        """resourceVersions on Leases, and a 409 for a write based on an older one."""
        data = copy.deepcopy(request.data) if isinstance(request.data, dict) else None
        if data is None or request.action not in (kmock.action.CREATE, kmock.action.UPDATE):
            return request
        meta = data.setdefault("metadata", {})
        if request.action == kmock.action.UPDATE:
            current = None
            for (resource, namespace, name), obj in self.objects.items():
                if (resource, namespace, name) == (
                    LEASE_RESOURCE,
                    request.namespace,
                    request.name,
                ) and not obj.deleted:
                    current = obj.raw
            if current is not None and meta.get("resourceVersion") != current.get(
                "metadata", {}
            ).get("resourceVersion"):
                raise ConflictError()
        meta["resourceVersion"] = str(next(self._versions))
        changed = attrs.evolve(request, data=data)
        self._requests[self._requests.index(request)] = changed
        return changed

    def _generate_name(self, request: kmock.Request) -> kmock.Request:
        """``metadata.generateName`` (kopf's Events use it): the server picks the name."""
        meta = request.data.get("metadata", {})
        if meta.get("name") or not meta.get("generateName"):
            return request
        data = copy.deepcopy(request.data)
        data["metadata"]["name"] = f"{meta['generateName']}{uuid.uuid4().hex[:5]}"
        return attrs.evolve(request, data=data)

    def _current(self, request: kmock.Request) -> dict[str, Any] | None:
        for (resource, namespace, name), obj in self.objects.items():
            if (
                resource == MD_RESOURCE
                and namespace == request.namespace
                and name == request.name
                and not obj.deleted
            ):
                return copy.deepcopy(dict(obj.raw))
        return None

    def _as_api_server(self, request: kmock.Request) -> kmock.Request:
        data = copy.deepcopy(request.data) if isinstance(request.data, dict) else request.data
        if request.action == kmock.action.CREATE and isinstance(data, dict):
            meta = data.setdefault("metadata", {})
            meta.setdefault("namespace", request.namespace or "default")
            meta.update(
                uid=str(uuid.uuid4()),
                generation=1,
                creationTimestamp=_now(),
                resourceVersion=str(next(self._versions)),
            )
            data.pop("status", None)
        elif request.action == kmock.action.UPDATE and isinstance(data, dict):
            current = self._current(request) or {}
            if request.subresource == "status":
                data = {"status": data.get("status")}
            else:
                data.pop("status", None)
                merged = _merge(current, data)
                if merged.get("spec") != current.get("spec"):
                    generation = current.get("metadata", {}).get("generation", 1) + 1
                    data.setdefault("metadata", {})["generation"] = generation
            data.setdefault("metadata", {})["resourceVersion"] = str(next(self._versions))
        return attrs.evolve(request, data=data)

    async def _serve_list(self, request: kmock.Request) -> Any:
        result = dict(await super()._serve_list(request))
        if _wants_table(request) and request.resource == MD_RESOURCE:
            return self._table(result["items"])
        kind = RESOURCE_KINDS.get(request.resource, "")
        result.update(kind=f"{kind}List", apiVersion=_group_version(request.resource))
        return result

    async def _serve_fetch(self, request: kmock.Request) -> Any:
        obj = await super()._serve_fetch(request)
        if _wants_table(request) and request.resource == MD_RESOURCE:
            return self._table([obj])
        return obj

    async def _serve_version(self, request: kmock.Request) -> Any:
        # kmock repeats a resource's short names and categories on its subresources
        # ("modeldeployments/status"); the API server does not, and kubectl warns.
        result = dict(await super()._serve_version(request))
        for entry in result.get("resources", []):
            if "/" in entry["name"]:
                entry.update(shortNames=[], categories=[])
        return result

    def _printer_columns(self) -> list[dict[str, Any]]:
        for (resource, _, name), obj in self.objects.items():
            if resource == CRD_RES and name == "modeldeployments.mlops.platform.io":
                (version,) = obj.raw["spec"]["versions"]
                return version.get("additionalPrinterColumns", [])
        return []

    def _table(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        columns = self._printer_columns()
        definitions = [
            {"name": "Name", "type": "string", "format": "name", "description": "", "priority": 0}
        ] + [
            {
                "name": c["name"],
                "type": c["type"],
                "format": "",
                "description": c.get("description", ""),
                "priority": c.get("priority", 0),
            }
            for c in columns
        ]
        rows = []
        for item in items:
            cells: list[Any] = [item["metadata"]["name"]]
            for c in columns:
                found = jsonpath(item, c["jsonPath"])
                if c["type"] == "date":
                    cells.append(_age(found[0] if found else None))
                else:
                    cells.append(found[0] if found else None)
            rows.append(
                {
                    "cells": cells,
                    "object": {
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": item["metadata"],
                    },
                }
            )
        return {
            "kind": "Table",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": "1"},
            "columnDefinitions": definitions,
            "rows": rows,
        }


def _wants_table(request: kmock.Request) -> bool:
    accept = {k.lower(): v for k, v in request.headers.items()}.get("accept", "")
    return "as=Table" in accept


def _group_version(resource: Any) -> str:
    return f"{resource.group}/{resource.version}" if resource.group else resource.version


class EmulatedCluster:
    """The emulator served on 127.0.0.1 from a background thread, and a kubeconfig."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.kubeconfig = workdir / "kubeconfig"
        self.emulator: ApiServerEmulator | None = None
        self.port: int | None = None
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kube-emulator", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        emulator = ApiServerEmulator()
        for resource, kind in KINDS.items():
            namespaced = resource not in (
                CRD_RESOURCE,
                "v1/namespaces",
            )
            info = ResourceInfo(kind=kind, namespaced=namespaced, verbs=VERBS)
            if resource == MD:
                info = ResourceInfo(
                    kind=kind,
                    singular="modeldeployment",
                    namespaced=True,
                    shortnames={"mdep"},
                    categories={"mlops"},
                    subresources={"status"},
                    verbs=VERBS,
                )
            emulator.resources[resource] = info
        async with emulator, kmock.Server(emulator) as server:
            self.emulator = emulator
            self.port = server.port
            self._ready.set()
            await self._stop.wait()

    def start(self) -> EmulatedCluster:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the Kubernetes emulator did not start")
        self.kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters: [{{name: emulator, cluster: {{server: 'http://127.0.0.1:{self.port}'}}}}]\n"
            "users: [{name: tester, user: {token: emulator}}]\n"
            "contexts: [{name: emulator, context: {cluster: emulator, user: tester, "
            "namespace: default}}]\n"
            "current-context: emulator\n"
        )
        return self

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)

    def objects(self, resource: str) -> list[dict[str, Any]]:
        """Snapshot of the stored objects of ``resource`` (e.g. ``v1/events``)."""
        assert self.emulator is not None
        return [
            copy.deepcopy(dict(obj.raw))
            for (res, _, _), obj in list(self.emulator.objects.items())
            if res == kmock.resource(resource) and not obj.deleted
        ]


def rbac_verb(request: kmock.Request) -> str:
    """The RBAC verb the API server would authorize ``request`` as."""
    method = str(getattr(request.method, "value", request.method)).upper()
    if method == "GET":
        if request.params.get("watch") in ("true", "1"):
            return "watch"
        return "get" if request.name else "list"
    if method == "DELETE":
        return "delete" if request.name else "deletecollection"
    return {"POST": "create", "PATCH": "patch", "PUT": "update"}.get(method, method.lower())


def resource_requests(cluster: EmulatedCluster, user_agent: str) -> set[tuple[str, str, str]]:
    """(apiGroup, resource[/subresource], verb) of every resource request a client made;
    discovery (/api, /apis, ...) is open to every authenticated user and left out."""
    assert cluster.emulator is not None
    seen = set()
    for request in list(cluster.emulator._requests):
        agent = {k.lower(): v for k, v in request.headers.items()}.get("user-agent", "")
        resource = request.resource
        if not agent.startswith(user_agent) or resource is None or not resource.plural:
            continue
        name = resource.plural + (f"/{request.subresource}" if request.subresource else "")
        seen.add((resource.group, name, rbac_verb(request)))
    return seen
