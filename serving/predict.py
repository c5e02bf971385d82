"""The predict path: ``POST /predict`` as a plain ASGI endpoint, and the step shared with
the Open Inference Protocol's ``infer``.

``/predict`` is the hot path, so it does not go through FastAPI's router and dependency
machinery (which cost more than the model): :class:`PredictEndpoint` is called directly
by the request middleware (:mod:`serving.middleware`) for ``POST /predict``. The FastAPI
route of the same path stays, for the OpenAPI document, and answers through the same
:func:`answer` (so both are one implementation). Everything the path touches was built
at load time (the parser, the encoder, the onnxruntime session, the metric children);
per request it allocates the parsed records, their float32 matrix and the answer.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import structlog
from starlette.types import Receive, Scope, Send

from serving.body import BodyError, ClientGone, read_json_body
from serving.capture import BODY_MAX_BYTES, CaptureWriter
from serving.loader import LoadedModel
from serving.metrics import ServingMetrics
from serving.runtime import Prediction
from serving.schema import RequestError

log = structlog.get_logger("serving")

_JSON_HEADERS = [(b"content-type", b"application/json")]
_encode = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


def json_bytes(payload: Any) -> bytes:
    return _encode(payload).encode("utf-8")


def run(
    model: LoadedModel,
    records: list[dict[str, Any]],
    matrix: np.ndarray,
    metrics: ServingMetrics,
    *,
    probabilities: bool = False,
    capture: CaptureWriter | None = None,
    request_id: str | None = None,
    body: bytes | None = None,
) -> Prediction:
    """Predict validated ``records`` (``matrix`` is their float32 encoding; ``body``,
    where given, the one record's JSON object they were validated from).

    The one place where the validated records and their predictions are both at hand,
    so inference capture hooks in here: ``submit`` (``submit_body`` for a one-record
    body) only appends references to a bounded buffer (never blocks, never raises); the
    writer thread converts them."""
    captured = capture is not None and capture.sample()
    # A captured classifier request records its probabilities (prediction drift on them)
    # whether or not the client asked; ONNX computes them in the same run.
    prediction = model.runtime.predict(
        matrix, probabilities=probabilities or (captured and model.manifest.labels is not None)
    )
    metrics.observe_predictions(prediction.values)
    if captured and body is not None:
        assert capture is not None
        proba = prediction.probabilities
        capture.submit_body(
            model.capture_schema,
            body,
            prediction.values[0],
            probabilities=None if proba is None else proba[0],
            request_id=request_id,
        )
    elif captured:
        assert capture is not None
        capture.submit(
            model.capture_schema,
            records,
            prediction.values,
            probabilities=prediction.probabilities,
            request_id=request_id,
            sampled=True,
        )
    if prediction.probabilities is not None and not probabilities:
        prediction = Prediction(prediction.values)  # the answer has what was asked
    return prediction


def probability_maps(model: LoadedModel, proba: np.ndarray) -> list[dict[str, float]]:
    """Per record, ``{label: probability}`` (labels as strings: they are JSON keys)."""
    keys = [str(label) for label in model.manifest.labels or ()]
    return [dict(zip(keys, row, strict=True)) for row in proba.tolist()]


def wants_probabilities(query_string: bytes) -> bool:
    if not query_string:
        return False
    for part in query_string.split(b"&"):
        key, _, value = part.partition(b"=")
        if key == b"probabilities":
            return value.lower() in (b"1", b"true", b"yes")
    return False


def not_ready_body(reason: str | None, source: str) -> bytes:
    return json_bytes({"status": "not_ready", "reason": reason, "source": source})


def answer(
    model: LoadedModel,
    body: bytes,
    query_string: bytes,
    request_id: str,
    metrics: ServingMetrics,
    capture: CaptureWriter | None = None,
) -> tuple[int, bytes]:
    """``/predict``'s status and JSON body for a request body that has been read."""
    try:
        records, single = model.parser.parse_body(body)
    except RequestError as exc:
        return 422, json_bytes({"detail": exc.errors})
    matrix = model.parser.encoder.encode_float32(records)
    want = model.manifest.labels is not None and wants_probabilities(query_string)
    # A one-record body is what capture buffers of the request, cheaper than its values.
    captured_body = body if single and len(body) <= BODY_MAX_BYTES else None
    result = run(
        model, records, matrix, metrics, probabilities=want, capture=capture,
        request_id=request_id, body=captured_body,
    )  # fmt: skip
    payload: dict[str, Any] = {
        "predictions": result.values,
        "model_version": model.version,
        "request_id": request_id,
    }
    if result.probabilities is not None:
        payload["probabilities"] = probability_maps(model, result.probabilities)
    return 200, json_bytes(payload)


async def read_and_answer(
    model: LoadedModel,
    scope: Scope,
    receive: Receive,
    metrics: ServingMetrics,
    limit: int,
    capture: CaptureWriter | None = None,
) -> tuple[int, bytes] | None:
    """Read the body and answer; None when the client went away (nothing to send)."""
    try:
        body = await read_json_body(scope, receive, limit)
    except BodyError as exc:
        return exc.status, json_bytes({"detail": exc.message})
    except ClientGone:
        # Nobody is listening for an answer: not an error of the service.
        log.info("client disconnected before the request was complete")
        return None
    request_id = scope["state"]["request_id"]
    return answer(model, body, scope["query_string"], request_id, metrics, capture)


class PredictEndpoint:
    """``POST /predict`` as a plain ASGI app (see the module docstring)."""

    def __init__(
        self,
        manager: Any,
        metrics: ServingMetrics,
        limit: int,
        source: str,
        capture: CaptureWriter | None = None,
    ):
        self.manager = manager
        self.metrics = metrics
        self.limit = limit
        self.source = source
        self.capture = capture

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        model = self.manager.current  # read once: a swap mid-request cannot mix versions
        if model is None:
            status, payload = 503, not_ready_body(self.manager.error, self.source)
        else:
            answered = await read_and_answer(
                model, scope, receive, self.metrics, self.limit, self.capture
            )
            if answered is None:
                return
            status, payload = answered
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*_JSON_HEADERS, (b"content-length", str(len(payload)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": payload})
