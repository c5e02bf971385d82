"""The inference service: ``/health``, ``/ready``, ``/predict``, ``/metrics``.

``/predict`` takes one record, a list of records, or ``{"instances": [...]}`` and answers
``{"predictions": [...], "model_version": ..., "request_id": ...}``: always a list, one
prediction per record, in request order. Bad input gets FastAPI's 422 shape, with each
error's ``loc`` naming the field (``["body", "mileage"]``, ``["body", 3, "fuel"]``).

The model is loaded once, in the lifespan, never per request. If it cannot be loaded or
is refused (digest, pinned sha256, scikit-learn version), the process stays up and says
why: ``/health`` answers 200 (the process is alive), ``/ready`` and ``/predict`` answer
503 with the reason, and the error is logged. Load balancers route on ``/ready``, so a
refused version never receives traffic; with pointer following on, the service becomes
ready as soon as the pointer names a good version.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from mlops_core.pointer import PointerStore
from serving.loader import LoadedModel
from serving.manager import ModelManager
from serving.metrics import CONTENT_TYPE, ServingMetrics
from serving.middleware import RequestContextMiddleware
from serving.schema import RequestError
from serving.settings import ServingSettings, load_settings

log = structlog.get_logger("serving")

#: Seconds between retries of a start-up load that failed for a reason that may heal.
LOAD_RETRY_SECONDS = 5.0

ROUTES = frozenset({"/health", "/ready", "/predict", "/metrics", "/docs", "/openapi.json"})


def _predict(model: LoadedModel, records: list[BaseModel]) -> list[float]:
    matrix = model.encoder.encode_records(r.__dict__ for r in records)
    return model.runtime.predict(matrix).tolist()


def create_app(
    settings: ServingSettings | None = None, *, store: PointerStore | None = None
) -> FastAPI:
    """Build the service. ``settings`` default to the environment (:mod:`serving.settings`)."""
    settings = settings or load_settings()
    metrics = ServingMetrics()
    manager = ModelManager(settings, metrics, store=store)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log.info("starting", source=settings.source, follow=settings.pointer_poll_seconds)
        await asyncio.to_thread(manager.refresh)
        follower = None
        if settings.follows_pointer and settings.pointer_poll_seconds > 0:
            follower = asyncio.create_task(manager.follow(settings.pointer_poll_seconds))
        elif manager.current is None:
            follower = asyncio.create_task(manager.retry_until_loaded(LOAD_RETRY_SECONDS))
        try:
            yield
        finally:
            if follower is not None:
                follower.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await follower

    app = FastAPI(
        title="mlops model server",
        summary="Predictions from one verified model version.",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.models = manager
    app.add_middleware(
        RequestContextMiddleware,
        metrics=metrics,
        routes=ROUTES,
        access_log=settings.access_log,
    )

    def not_ready() -> JSONResponse:
        return JSONResponse(
            {"status": "not_ready", "reason": manager.error, "source": settings.source},
            status_code=503,
        )

    @app.get("/health", summary="Liveness: the process is up.")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", summary="Readiness: a verified model is loaded.")
    async def ready() -> Any:
        model = manager.current
        if model is None:
            return not_ready()
        body: dict[str, Any] = {
            "status": "ready",
            "project": model.project,
            "model_version": model.version,
            "model_sha256": model.sha256,
            "loaded_at": model.loaded_at.isoformat(),
        }
        if manager.error:  # serving fine, but the newest pointer value was refused
            body["last_error"] = manager.error
        return body

    @app.post(
        "/predict",
        summary="Predict one record, a list of records, or {'instances': [...]}.",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"type": ["object", "array"]}}},
            }
        },
    )
    async def predict(request: Request) -> Any:
        model = manager.current  # read once: a swap mid-request cannot mix versions
        if model is None:
            return not_ready()
        try:
            records = model.parser.parse(await request.body())
        except RequestError as exc:
            return JSONResponse({"detail": exc.errors}, status_code=422)
        if model.runtime.offload:
            predictions = await run_in_threadpool(_predict, model, records)
        else:
            predictions = _predict(model, records)
        metrics.observe_predictions(predictions)
        return JSONResponse(
            {
                "predictions": predictions,
                "model_version": model.version,
                "request_id": request.state.request_id,
            }
        )

    @app.get("/metrics", summary="Prometheus exposition.")
    async def metrics_endpoint() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE)

    def openapi() -> dict[str, Any]:
        # The request body is the live model's schema, so it is rebuilt on every call.
        app.openapi_schema = None
        schema = FastAPI.openapi(app)
        model = manager.current
        if model is not None:
            body = request_body_schema(model.parser.record, model.parser.max_batch)
            schema.setdefault("components", {}).setdefault("schemas", {}).update(body.pop("$defs"))
            content = schema["paths"]["/predict"]["post"]["requestBody"]["content"]
            content["application/json"]["schema"] = body
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def request_body_schema(record: type[BaseModel], max_batch: int) -> dict[str, Any]:
    """JSON schema of /predict's body: a record, a list of them, or {"instances": [...]}."""
    ref_template = "#/components/schemas/{model}"
    one = record.model_json_schema(ref_template=ref_template)
    ref = {"$ref": ref_template.format(model=record.__name__)}
    many = {"type": "array", "items": ref, "minItems": 1, "maxItems": max_batch}
    return {
        "anyOf": [
            ref,
            many,
            {
                "type": "object",
                "properties": {"instances": many},
                "required": ["instances"],
                "additionalProperties": False,
            },
        ],
        "$defs": {**one.pop("$defs", {}), record.__name__: one},
    }
