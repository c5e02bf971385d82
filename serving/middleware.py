"""Per-request bookkeeping as a plain ASGI middleware: request id, metrics, access log.

A pure ASGI class rather than Starlette's ``BaseHTTPMiddleware``, which adds a task and
a memory stream per request; this one only wraps ``send``. It also dispatches the hot
path: a request whose (method, path) is in ``fast_routes`` goes straight to that plain
ASGI endpoint (``POST /predict``, :class:`serving.predict.PredictEndpoint`), skipping
FastAPI's routing; every other request goes to the FastAPI app.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.metrics import ServingMetrics

REQUEST_ID_HEADER = "x-request-id"
_MAX_ID_LEN = 128

log = structlog.get_logger("serving.http")


def _incoming_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            rid = value.decode("latin-1").strip()
            # Echoed into logs and headers: keep it short and printable.
            if rid and len(rid) <= _MAX_ID_LEN and rid.isprintable():
                return rid
    return None


class RequestContextMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: ServingMetrics,
        routes: frozenset[str],
        access_log: bool = True,
        fast_routes: Mapping[tuple[str, str], ASGIApp] | None = None,
    ):
        self.app = app
        self.fast_routes = dict(fast_routes or {})
        self.metrics = metrics
        self.routes = routes
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        rid = _incoming_id(scope) or os.urandom(16).hex()
        scope.setdefault("state", {})["request_id"] = rid
        path = scope["path"]
        method = scope["method"]
        target = self.fast_routes.get((method, path), self.app)
        # Unknown paths share one label, so scanners cannot blow up the series count.
        route = path if path in self.routes else "unmatched"
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", ()),
                    (b"x-request-id", rid.encode("latin-1")),
                ]
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=rid):
            try:
                await target(scope, receive, send_with_id)
            finally:
                elapsed = time.perf_counter() - start
                self.metrics.observe_request(route, method, status, elapsed)
                if self.access_log and route not in ("/health", "/metrics"):
                    log.info(
                        "request",
                        method=method,
                        path=path,
                        status=status,
                        duration_ms=round(elapsed * 1000, 3),
                    )
