"""The few Kubernetes API writes the runtime makes itself, over httpx.

kopf watches ModelDeployments and runs the finalizer; but a status is written whenever
a worker finishes (a requeue, a resync), not only inside a kopf handler, and the lease is
a ``coordination.k8s.io`` Lease kopf knows nothing of. So this client does exactly three
things: merge-patch a status, post an Event, and read/create/replace a Lease. It logs in
the way kopf does (``kopf.login_with_service_account`` in a pod, else
``kopf.login_with_kubeconfig``), so both always talk to the same cluster as the same user.
"""

from __future__ import annotations

import ssl
import tempfile
from datetime import UTC, datetime
from typing import Any

import httpx
import kopf

from mlops_core.errors import MlopsError

USER_AGENT = "mlops-controller"


class KubeApiError(MlopsError):
    reason = "KubernetesAPIError"
    exit_code = 10

    def __init__(self, what: str, *, status: int, where: str | None = None) -> None:
        self.status = status
        super().__init__(what, where=where)


def now_rfc3339(micro: bool = False) -> str:
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ"
    return datetime.now(UTC).strftime(fmt)


def _ssl_context(info: kopf.ConnectionInfo) -> ssl.SSLContext | bool:
    if info.insecure:
        return False
    ca_data = info.ca_data.decode() if isinstance(info.ca_data, bytes) else info.ca_data
    context = ssl.create_default_context(
        cafile=str(info.ca_path) if info.ca_path else None, cadata=ca_data
    )
    cert, key = info.certificate_path, info.private_key_path
    if info.certificate_data or info.private_key_data:
        # ssl loads client certificates from files only.
        cert = _temp_file(info.certificate_data) if info.certificate_data else cert
        key = _temp_file(info.private_key_data) if info.private_key_data else key
    if cert:
        context.load_cert_chain(str(cert), str(key) if key else None)
    return context


def _temp_file(data: str | bytes) -> str:
    f = tempfile.NamedTemporaryFile(prefix="mlops-kube-", delete=False)  # noqa: SIM115
    f.write(data.encode() if isinstance(data, str) else data)
    f.close()
    return f.name


def login() -> kopf.ConnectionInfo:
    """The cluster's address and credentials, found as kopf finds them."""
    settings = kopf.OperatorSettings()
    logger = _NullLogger()
    info = kopf.login_with_service_account(settings=settings, logger=logger)
    info = info or kopf.login_with_kubeconfig(settings=settings, logger=logger)
    if info is None:
        raise MlopsError(
            "no Kubernetes credentials: neither a service account nor a kubeconfig",
            hint="set KUBECONFIG, or run in a pod with a service account",
        )
    return info


class _NullLogger:
    def __getattr__(self, _name: str) -> Any:
        return lambda *a, **k: None


class KubeClient:
    def __init__(self, info: kopf.ConnectionInfo, *, timeout: float = 10.0) -> None:
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        auth = None
        if info.token:
            headers["Authorization"] = f"{info.scheme or 'Bearer'} {info.token}"
        elif info.username:
            auth = httpx.BasicAuth(info.username, info.password or "")
        self.server = info.server.rstrip("/")
        self.default_namespace = info.default_namespace or "default"
        self._http = httpx.Client(
            base_url=self.server,
            headers=headers,
            auth=auth,
            verify=_ssl_context(info),
            timeout=timeout,
            trust_env=info.trust_env,
        )

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, body: Any = None, **headers: str) -> Any:
        """The decoded answer; 404 is None, other errors raise KubeApiError."""
        response = self._http.request(method, path, json=body, headers=headers)
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            try:
                message = response.json().get("message") or response.text
            except ValueError:
                message = response.text
            raise KubeApiError(
                f"{method} refused ({response.status_code}): {message}",
                status=response.status_code,
                where=path,
            )
        return response.json() if response.content else {}

    # -- what the runtime writes -------------------------------------------------------
    def patch_status(self, path: str, status_patch: dict[str, Any]) -> Any:
        """Merge-patch the status subresource of the object at ``path``."""
        return self.request(
            "PATCH",
            f"{path}/status",
            {"status": status_patch},
            **{"Content-Type": "application/merge-patch+json"},
        )

    def post_event(
        self, involved: dict[str, Any], *, reason: str, message: str, warning: bool = False
    ) -> None:
        namespace = involved.get("namespace") or self.default_namespace
        stamp = now_rfc3339()
        self.request(
            "POST",
            f"/api/v1/namespaces/{namespace}/events",
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"generateName": f"{involved.get('name', 'object')}.",
                             "namespace": namespace},
                "involvedObject": involved,
                "reason": reason,
                "message": message[:1024],
                "type": "Warning" if warning else "Normal",
                "source": {"component": USER_AGENT},
                "reportingComponent": USER_AGENT,
                "firstTimestamp": stamp,
                "lastTimestamp": stamp,
                "count": 1,
            },
        )  # fmt: skip
