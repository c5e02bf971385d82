"""The inference service: ``/health``, ``/ready``, ``/predict``, ``/metrics`` and the Open
Inference Protocol's ``/v2`` endpoints (:mod:`serving.oip`).

``/predict`` takes one record, a list of records, or ``{"instances": [...]}`` and answers
``{"predictions": [...], "model_version": ..., "request_id": ...}``: always a list, one
prediction per record, in request order (numbers for regression, class labels for
classification). ``?probabilities=true`` adds ``probabilities``: per record, each
class's probability by label. Bad input gets FastAPI's 422 shape, with each error's
``loc`` naming the field (``["body", "mileage"]``, ``["body", 3, "fuel"]``); a body that
is not JSON by its content type is 415, one over ``MLOPS_MAX_BODY_BYTES`` 413 (refused
while it is read). Hostile input never gets a 5xx (see :mod:`serving.schema`).

The model is loaded once, in the lifespan, never per request. If it cannot be loaded or
is refused (digest, pinned sha256, format, parity), the process stays up and says why:
``/health`` answers 200 (the process is alive), ``/ready`` and ``/predict`` answer 503
with the reason, and the error is logged. Load balancers route on ``/ready``, so a
refused version never receives traffic; with pointer following on, the service becomes
ready as soon as the pointer names a good version.

Inference capture (:mod:`serving.capture`) is on when ``MLOPS_CAPTURE_PERCENT`` > 0 and
the env is known: one writer per process, started with the app and flushed on shutdown;
both ``/predict`` and the V2 ``infer`` hand it their validated records and predictions.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from mlops_core.pointer import PointerStore
from serving import capture_settings, oip
from serving import predict as predict_path
from serving.body import BodyError, ClientGone, read_json_body
from serving.capture import CaptureSettings, CaptureWriter, for_service
from serving.loader import LoadedModel
from serving.manager import ModelManager
from serving.metrics import CONTENT_TYPE, ServingMetrics
from serving.middleware import RequestContextMiddleware
from serving.schema import RequestError
from serving.settings import ServingSettings, load_settings

log = structlog.get_logger("serving")

#: Seconds between retries of a start-up load that failed for a reason that may heal.
LOAD_RETRY_SECONDS = 5.0

_V2_MODEL = "/v2/models/{name}"
_V2_VERSION = "/v2/models/{name}/versions/{version}"
ROUTES = frozenset(
    {
        "/health",
        "/ready",
        "/predict",
        "/metrics",
        "/docs",
        "/openapi.json",
        "/v2",
        "/v2/health/live",
        "/v2/health/ready",
    }
)


class ErrorDetail(BaseModel):
    type: str
    loc: list[str | int]
    msg: str
    input: Any = None


class ValidationErrorBody(BaseModel):
    detail: list[ErrorDetail]


class MessageBody(BaseModel):
    detail: str


class NotReadyBody(BaseModel):
    status: str
    reason: str | None
    source: str


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    413: {"model": MessageBody, "description": "The body is over MLOPS_MAX_BODY_BYTES."},
    415: {"model": MessageBody, "description": "The body is not declared as JSON."},
    422: {
        "model": ValidationErrorBody,
        "description": "Invalid input: each error's loc names the field.",
    },
    503: {"model": NotReadyBody, "description": "No verified model is loaded (yet)."},
}
V2_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": oip.ErrorBody, "description": spec["description"]}
    for status, spec in {**ERROR_RESPONSES, 404: {"description": "No such model."}}.items()
}


_REF = "#/components/schemas/{model}"
V2_REQUEST_REF = {"$ref": _REF.format(model="InferenceRequest")}


class PrometheusResponse(Response):
    media_type = CONTENT_TYPE


def create_app(
    settings: ServingSettings | None = None,
    *,
    store: PointerStore | None = None,
    capture: CaptureSettings | None = None,
) -> FastAPI:
    """Build the service. ``settings`` and ``capture`` default to the environment
    (:mod:`serving.settings`, :class:`serving.capture.CaptureSettings`)."""
    settings = settings or load_settings()
    metrics = ServingMetrics(settings.multiprocess_dir)
    manager = ModelManager(settings, metrics, store=store)
    limit = settings.max_body_bytes
    writer = for_service(settings, metrics.registry, capture, platform=settings.platform)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log.info("starting", source=settings.source, follow=settings.pointer_poll_seconds)
        if writer is not None:
            writer.start()
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
            if writer is not None:
                # What is buffered is written before the process goes (off the loop).
                await asyncio.to_thread(writer.close, capture_settings.CLOSE_SECONDS)

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
    app.state.capture = writer
    endpoint = predict_path.PredictEndpoint(manager, metrics, limit, settings.source, writer)
    app.add_middleware(
        RequestContextMiddleware,
        metrics=metrics,
        routes=ROUTES,
        access_log=settings.access_log,
        fast_routes={("POST", "/predict"): endpoint},
    )

    def not_ready() -> JSONResponse:
        return JSONResponse(
            {"status": "not_ready", "reason": manager.error, "source": settings.source},
            status_code=503,
        )

    def gone() -> Response:
        # Nobody is listening for an answer; not an error of ours.
        log.info("client disconnected before the request was complete")
        return Response(status_code=400)

    @app.get("/health", summary="Liveness: the process is up.")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", summary="Readiness: a verified model is loaded.", responses={503: {}})
    async def ready() -> Any:
        model = manager.current
        if model is None:
            return not_ready()
        body: dict[str, Any] = {
            "status": "ready",
            "project": model.project,
            "model_version": model.version,
            "model_sha256": model.sha256,
            "model_format": model.runtime.format,
            "task": model.manifest.task,
            "loaded_at": model.loaded_at.isoformat(),
        }
        if manager.error:  # serving fine, but the newest pointer value was refused
            body["last_error"] = manager.error
        return body

    @app.post(
        "/predict",
        summary="Predict one record, a list of records, or {'instances': [...]}.",
        responses=ERROR_RESPONSES,
        openapi_extra={
            "parameters": [
                {
                    "name": "probabilities",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "boolean", "default": False},
                    "description": "Classification: also answer each class's probability.",
                }
            ],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"type": ["object", "array"]}}},
            },
        },
    )
    async def predict(request: Request) -> Response:
        # Served by PredictEndpoint through the middleware; this route documents it and
        # answers the same way when the app is mounted without the middleware.
        model = manager.current
        if model is None:
            return not_ready()
        answered = await predict_path.read_and_answer(
            model, request.scope, request.receive, metrics, limit, writer
        )
        if answered is None:
            return Response(status_code=400)
        status, payload = answered
        return Response(payload, status_code=status, media_type="application/json")

    @app.get(
        "/metrics",
        summary="Prometheus exposition.",
        response_class=PrometheusResponse,
        responses={200: {"content": {CONTENT_TYPE: {"schema": {"type": "string"}}}}},
    )
    async def metrics_endpoint() -> Response:
        return PrometheusResponse(metrics.exposition())

    _add_v2_routes(app, manager, metrics, limit, not_ready, gone, writer)

    def openapi() -> dict[str, Any]:
        # The request body is the live model's schema, so it is rebuilt on every call.
        app.openapi_schema = None
        schema = FastAPI.openapi(app)
        model = manager.current
        if model is not None:
            body = request_body_schema(model)
            schema.setdefault("components", {}).setdefault("schemas", {}).update(body.pop("$defs"))
            content = schema["paths"]["/predict"]["post"]["requestBody"]["content"]
            content["application/json"]["schema"] = body
        v2 = oip.InferenceRequest.model_json_schema(ref_template=_REF)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(v2.pop("$defs", {}))
        components["InferenceRequest"] = v2
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _add_v2_routes(
    app: FastAPI,
    manager: ModelManager,
    metrics: ServingMetrics,
    limit: int,
    not_ready: Any,
    gone: Any,
    capture: CaptureWriter | None = None,
) -> None:
    """The Open Inference Protocol endpoints (see :mod:`serving.oip`)."""

    def v2_error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    def find(name: str, version: str | None) -> LoadedModel | JSONResponse:
        model = manager.current
        if model is None:
            return v2_error(503, f"not ready: {manager.error}")
        if name != model.project or (version is not None and version != model.version):
            wanted = name if version is None else f"{name} version {version}"
            return v2_error(
                404,
                f"model {wanted[:200]!r} is not served here; this server serves "
                f"{model.project!r} version {model.version}",
            )
        return model

    @app.get("/v2", summary="V2: server metadata.", tags=["v2"])
    async def v2_server() -> dict[str, Any]:
        return {"name": "mlops-serving", "version": oip.PROTOCOL_VERSION, "extensions": []}

    @app.get("/v2/health/live", summary="V2: liveness.", tags=["v2"])
    async def v2_live() -> dict[str, bool]:
        return {"live": True}

    @app.get("/v2/health/ready", summary="V2: readiness.", tags=["v2"], responses={503: {}})
    async def v2_ready() -> Any:
        if manager.current is None:
            return JSONResponse({"ready": False}, status_code=503)
        return {"ready": True}

    async def model_metadata(name: str, version: str | None = None) -> Any:
        found = find(name, version)
        return found if isinstance(found, JSONResponse) else oip.metadata(found)

    async def model_ready(name: str, version: str | None = None) -> Any:
        found = find(name, version)
        if isinstance(found, JSONResponse):
            ready = False
            status = 503 if manager.current is None else found.status_code
            return JSONResponse({"name": name[:200], "ready": ready}, status_code=status)
        return {"name": name, "ready": True}

    async def infer(request: Request, name: str, version: str | None = None) -> Response:
        found = find(name, version)
        if isinstance(found, JSONResponse):
            return found
        model = found
        try:
            body = await read_json_body(request.scope, request.receive, limit)
            parsed = oip.parse_request(model.parser.load(body))
            outputs = oip.wanted_outputs(parsed, model)
            rows, origin = oip.records_of(parsed, model.manifest.features)
            try:
                records = model.parser.validate(rows)
            except RequestError as exc:
                raise RequestError(oip.relocate(exc.errors, origin)) from None
        except RequestError as exc:
            return JSONResponse(
                {"error": oip.error_message(exc.errors), "detail": exc.errors}, status_code=422
            )
        except BodyError as exc:
            return v2_error(exc.status, exc.message)
        except ClientGone:
            return gone()
        matrix = model.parser.encoder.encode_float32(records)
        result = predict_path.run(
            model,
            records,
            matrix,
            metrics,
            probabilities=oip.PREDICT_PROBA in outputs,
            capture=capture,
            request_id=parsed.id or request.state.request_id,
        )
        n = len(records)
        tensors = []
        for output in outputs:
            if output == oip.PREDICT:
                datatype = oip.metadata(model).outputs[0].datatype
                tensors.append({"name": output, "shape": [n], "datatype": datatype,
                                "data": result.values})  # fmt: skip
            else:
                proba = result.probabilities
                assert proba is not None
                tensors.append({"name": output, "shape": list(proba.shape), "datatype": "FP32",
                                "data": proba.reshape(-1).tolist()})  # fmt: skip
        return JSONResponse(
            {
                "model_name": model.project,
                "model_version": model.version,
                "id": parsed.id or request.state.request_id,
                "parameters": {},
                "outputs": tensors,
            }
        )

    async def metadata_latest(name: str) -> Any:
        return await model_metadata(name)

    async def metadata_version(name: str, version: str) -> Any:
        return await model_metadata(name, version)

    async def ready_latest(name: str) -> Any:
        return await model_ready(name)

    async def ready_version(name: str, version: str) -> Any:
        return await model_ready(name, version)

    async def infer_latest(request: Request, name: str) -> Response:
        return await infer(request, name)

    async def infer_version(request: Request, name: str, version: str) -> Response:
        return await infer(request, name, version)

    body = {"required": True, "content": {"application/json": {"schema": V2_REQUEST_REF}}}
    for prefix, meta, ready, run in (
        (_V2_MODEL, metadata_latest, ready_latest, infer_latest),
        (_V2_VERSION, metadata_version, ready_version, infer_version),
    ):
        app.add_api_route(
            prefix,
            meta,
            methods=["GET"],
            summary="V2: model metadata.",
            tags=["v2"],
            response_model=oip.ModelMetadata,
            responses={404: V2_ERROR_RESPONSES[404], 503: V2_ERROR_RESPONSES[503]},
        )
        app.add_api_route(
            f"{prefix}/ready",
            ready,
            methods=["GET"],
            summary="V2: model readiness.",
            tags=["v2"],
            responses={404: {}, 503: {}},
        )
        app.add_api_route(
            f"{prefix}/infer",
            run,
            methods=["POST"],
            summary="V2: inference.",
            tags=["v2"],
            response_model=oip.InferenceResponse,
            responses=V2_ERROR_RESPONSES,
            openapi_extra={"requestBody": body},
        )


def request_body_schema(model: LoadedModel) -> dict[str, Any]:
    """JSON schema of /predict's body: a record, a list of them, or {"instances": [...]}."""
    parser = model.parser
    one = parser.record_schema(_REF)
    name = "Record"
    ref = {"$ref": _REF.format(model=name)}
    many = {"type": "array", "items": ref, "minItems": 1, "maxItems": parser.max_batch}
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
        "$defs": {**one.pop("$defs", {}), name: one},
    }
