"""The Open Inference Protocol (KServe V2) REST endpoints, for existing clients.

KServe's, MLServer's and Triton's HTTP clients speak this protocol; the service answers
it over the same verified model as ``/predict``:

    GET  /v2                                   server metadata
    GET  /v2/health/live                       200 while the process is up
    GET  /v2/health/ready                      200 when a model is loaded, else 503
    GET  /v2/models/{name}[/versions/{v}]      model metadata: inputs, outputs, platform
    GET  /v2/models/{name}[/versions/{v}]/ready
    POST /v2/models/{name}[/versions/{v}]/infer

The model's name is the project's, its version the model version. Inputs are columns:
one tensor per feature, named by the feature, of shape ``[n]`` or ``[n, 1]``; an
optional feature may be left out, or hold null for the rows that lack it
(``FP32``/``FP64``/``INT*`` for numbers, ``INT*`` for integers, ``BYTES`` for
categories), as MLServer's pandas codec sends a table. The same validation as
``/predict`` applies, each error naming the input, the row and what was wrong.
Outputs: ``predict`` (``FP32`` values, or the class labels as ``INT64``/``BYTES``)
and, for a classifier, ``predict_proba`` (``FP32``, ``[n, classes]`` in the order of
``parameters.labels`` of the model metadata); all by default, or those named in
``outputs``. Errors are ``{"error": message}`` (with a 4xx status), as the
protocol says.
"""

from __future__ import annotations

from typing import Any, NoReturn

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlops_core.features import FeatureSpec
from serving.loader import LoadedModel
from serving.schema import RequestError, excerpt, shape_errors

PREDICT = "predict"
PREDICT_PROBA = "predict_proba"
PROTOCOL_VERSION = "2"

_FLOATS = {"FP16", "FP32", "FP64"}
_INTS = {"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}
_ACCEPTED = {"number": _FLOATS | _INTS, "integer": _INTS, "category": {"BYTES"}}
_METADATA_TYPE = {"number": "FP64", "integer": "INT64", "category": "BYTES"}


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RequestInput(_Wire):
    name: str = Field(max_length=128)
    shape: list[int] = Field(min_length=1, max_length=2)
    datatype: str = Field(max_length=16)
    parameters: dict[str, Any] | None = None
    data: list[Any]


class RequestOutput(_Wire):
    name: str = Field(max_length=128)
    parameters: dict[str, Any] | None = None


class InferenceRequest(_Wire):
    id: str | None = Field(None, max_length=256)
    parameters: dict[str, Any] | None = None
    inputs: list[RequestInput] = Field(min_length=1, max_length=256)
    outputs: list[RequestOutput] | None = None


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[Any]


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str
    id: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    outputs: list[ResponseOutput]


class MetadataTensor(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[MetadataTensor]
    outputs: list[MetadataTensor]
    parameters: dict[str, Any] = Field(default_factory=dict)


class ErrorBody(BaseModel):
    error: str


def _label_type(model: LoadedModel) -> str:
    labels = model.manifest.labels
    if labels is None:
        return "FP32"
    return "INT64" if labels and isinstance(labels[0], int) else "BYTES"


def output_names(model: LoadedModel) -> list[str]:
    return [PREDICT, PREDICT_PROBA] if model.manifest.task == "classification" else [PREDICT]


def metadata(model: LoadedModel) -> ModelMetadata:
    outputs = [MetadataTensor(name=PREDICT, datatype=_label_type(model), shape=[-1])]
    parameters: dict[str, Any] = {"task": model.manifest.task}
    if model.manifest.labels is not None:
        k = len(model.manifest.labels)
        outputs.append(MetadataTensor(name=PREDICT_PROBA, datatype="FP32", shape=[-1, k]))
        parameters["labels"] = model.manifest.labels
    return ModelMetadata(
        name=model.project,
        versions=[model.version],
        platform=model.runtime.platform,
        inputs=[
            MetadataTensor(name=f.name, datatype=_METADATA_TYPE[f.type], shape=[-1])
            for f in model.manifest.features
        ],
        outputs=outputs,
        parameters=parameters,
    )


def _flat(data: list[Any]) -> list[Any]:
    """Row-major data, given flat or nested one level (``[[1], [2]]`` for ``[n, 1]``)."""
    if data and isinstance(data[0], list):
        return [v for row in data for v in (row if isinstance(row, list) else [row])]
    return data


def _fail(loc: list[str | int], msg: str, value: Any = None, kind: str = "value_error") -> NoReturn:
    raise RequestError([{"type": kind, "loc": loc, "msg": msg, "input": excerpt(value)}])


def records_of(
    request: InferenceRequest, features: list[FeatureSpec]
) -> tuple[list[dict[str, Any]], list[tuple[str, int]]]:
    """The request's columns as records (validated later by the model's parser), and
    where each column came from (name, index into ``inputs``) for error locations."""
    by_name = {f.name: f for f in features}
    columns: dict[str, list[Any]] = {}
    rows: int | None = None
    origin: list[tuple[str, int]] = []
    for i, tensor in enumerate(request.inputs):
        loc: list[str | int] = ["body", "inputs", i]
        spec = by_name.get(tensor.name)
        if spec is None:
            _fail(
                [*loc, "name"],
                f"unknown input {excerpt(tensor.name)!r}; the inputs are the features "
                f"{', '.join(by_name)}",
                tensor.name,
            )
        if tensor.name in columns:
            _fail([*loc, "name"], f"input {tensor.name!r} is given twice", tensor.name)
        if tensor.datatype not in _ACCEPTED[spec.type]:
            _fail(
                [*loc, "datatype"],
                f"feature {spec.name!r} is a {spec.type}: datatype must be one of "
                f"{', '.join(sorted(_ACCEPTED[spec.type]))}",
                tensor.datatype,
            )
        if len(tensor.shape) == 2 and tensor.shape[1] != 1:
            _fail([*loc, "shape"], "a feature's shape is [n] or [n, 1]", tensor.shape)
        data = _flat(tensor.data)
        if tensor.shape[0] != len(data):
            _fail(
                [*loc, "shape"],
                f"shape {tensor.shape} does not match {len(data)} data values",
                tensor.shape,
            )
        if rows is not None and len(data) != rows:
            _fail([*loc, "shape"], "every input must have the same number of rows", tensor.shape)
        rows = len(data)
        columns[tensor.name] = data
        origin.append((tensor.name, i))
    assert rows is not None  # at least one input (validated)
    names = list(columns)
    return [{name: columns[name][r] for name in names} for r in range(rows)], origin


def relocate(errors: list[dict[str, Any]], origin: list[tuple[str, int]]) -> list[dict[str, Any]]:
    """Record-shaped error locations (``body, row, feature``) as tensor locations
    (``body, inputs, index, data, row``)."""
    index = dict(origin)
    out = []
    for e in errors:
        loc = e["loc"]
        if len(loc) >= 3 and isinstance(loc[1], int) and loc[2] in index:
            e = {**e, "loc": ["body", "inputs", index[loc[2]], "data", loc[1]]}
            e["msg"] = f"input {loc[2]!r}, row {loc[1]}: {e['msg']}"
        elif len(loc) >= 3 and isinstance(loc[1], int):
            e = {**e, "msg": f"input {loc[2]!r}: {e['msg']}"}
        out.append(e)
    return out


def parse_request(raw: Any) -> InferenceRequest:
    try:
        return InferenceRequest.model_validate(raw)
    except ValidationError as exc:
        raise RequestError(shape_errors(exc.errors(include_url=False), ["body"])) from None


def wanted_outputs(request: InferenceRequest, model: LoadedModel) -> list[str]:
    available = output_names(model)
    if request.outputs is None:
        return available
    names = [o.name for o in request.outputs]
    for i, name in enumerate(names):
        if name not in available:
            _fail(
                ["body", "outputs", i, "name"],
                f"unknown output {excerpt(name)!r}; this model has {', '.join(available)}",
                name,
            )
    return names


def error_message(errors: list[dict[str, Any]]) -> str:
    first = errors[0]
    where = ".".join(str(p) for p in first["loc"])
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}"
