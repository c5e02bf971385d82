"""Request validation built from a model's feature schema, in microseconds.

Each loaded model gets one record type (a ``TypedDict`` built from the features) with
one field per feature: required or optional, strict number/integer with the schema's
bounds, and a ``Literal`` of the allowed categories. Extra fields are forbidden, so a
misspelled field is named in the 422 rather than silently ignored. pydantic-core
validates it (about a microsecond a record) and the validated dicts go straight into
the model's float32 matrix (:meth:`mlops_core.features.FeatureEncoder.encode_float32`).

A request body is one of::

    {"mileage": 42000, ...}                    one record
    [{"mileage": 42000, ...}, ...]             a batch
    {"instances": [{"mileage": 42000, ...}]}   a batch, in the TF-Serving/KServe style

Hostile input gets a 422 that names the field and never a 5xx:

- nesting deeper than ``max_depth`` is refused before parsing (a cheap bracket count
  first, an exact scan only when the count is high);
- ``NaN``, ``Infinity`` and numbers too large for a double (``1e400``) are parsed, so the
  error names the field they are in ("Input should be a finite number");
- a number beyond float32's range (the precision the model computes in) is refused
  naming the field, the limit and why, and so is an integer beyond ±2**53, the integers
  a double holds exactly (a captured record, the drift job and JSON readers hold it as one);
- invalid JSON, including a lone surrogate escape, is ``json_invalid``;
- the 422 body echoes at most :data:`EXCERPT_CHARS` of any input value or field name, and
  at most :data:`MAX_ERRORS` errors, so a huge bad value gets a small answer.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, NotRequired

import numpy as np
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError
from pydantic_core import from_json
from typing_extensions import TypedDict

from mlops_core.features import F32_MAX, FeatureEncoder, FeatureSpec

INSTANCES_KEY = "instances"
DEFAULT_MAX_BATCH = 1000
DEFAULT_MAX_DEPTH = 32
F32_MAX_INT = int(F32_MAX)
#: The largest integer an integer feature takes: every integer up to it is a double.
INT_LIMIT = 2**53
EXCERPT_CHARS = 64
MAX_ERRORS = 20

_TYPES: dict[str, type] = {"number": float, "integer": int}
# A JSON string (with escapes): the possessive quantifier keeps the scan linear.
_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"')
_OPEN = (ord("["), ord("{"))
_CLOSE = (ord("]"), ord("}"))


class RequestError(Exception):
    """A request body that failed validation; ``errors`` is FastAPI's 422 ``detail``."""

    def __init__(self, errors: list[dict[str, Any]]):
        self.errors = errors
        super().__init__(errors)


def excerpt(value: Any) -> Any:
    """``value`` as it may be echoed in an error: JSON-safe and bounded in size."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if value.bit_length() <= 64 else f"<integer of {value.bit_length()} bits>"
    if isinstance(value, float):
        if value != value:
            return "NaN"
        if value in (float("inf"), float("-inf")):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, str):
        cut = value if len(value) <= EXCERPT_CHARS else value[:EXCERPT_CHARS] + "…"
        # A lone surrogate cannot be encoded as UTF-8: show it escaped.
        return cut.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return f"<object with {len(value)} keys>"
    if isinstance(value, list | tuple):
        return f"<array of {len(value)} items>"
    return excerpt(str(value))


def _loc_part(part: Any) -> str | int:
    return part if isinstance(part, int) else excerpt(str(part))


def _field(spec: FeatureSpec) -> Any:
    if spec.type == "category":
        annotation: Any = Literal[tuple(spec.categories or ())]
        kwargs: dict[str, Any] = {}
    else:
        # strict: "12" or true is not a number; JSON integers are accepted for numbers.
        # The model computes in float32, so its range bounds every number.
        low: float = -F32_MAX if spec.min is None else max(spec.min, -F32_MAX)
        high: float = F32_MAX if spec.max is None else min(spec.max, F32_MAX)
        if spec.type == "integer":  # integer bounds for an integer field
            low, high = max(math.ceil(low), -INT_LIMIT), min(math.floor(high), INT_LIMIT)
        kwargs = {"strict": True, "ge": low, "le": high}
        if spec.type == "number":
            kwargs["allow_inf_nan"] = False
        annotation = _TYPES[spec.type]
    if spec.description:
        kwargs["description"] = spec.description
    annotated = Annotated[annotation, Field(**kwargs)] if kwargs else annotation
    return annotated if spec.required else NotRequired[annotated | None]


def record_type(features: Sequence[FeatureSpec], name: str = "Record") -> type:
    """The ``TypedDict`` of one record for ``features``."""
    record = TypedDict(name, {spec.name: _field(spec) for spec in features})  # type: ignore[misc]
    record.__pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[attr-defined]
    return record


def max_depth(body: bytes) -> int:
    """How deeply arrays and objects nest in ``body`` (brackets inside strings ignored)."""
    stripped = np.frombuffer(_JSON_STRING.sub(b'""', body), dtype=np.uint8)
    step = np.isin(stripped, _OPEN).astype(np.int32) - np.isin(stripped, _CLOSE)
    return int(np.cumsum(step).max(initial=0))


def _float32_msg(error: Mapping[str, Any]) -> str:
    limit = error.get("ctx", {}).get("ge", error.get("ctx", {}).get("le"))
    if limit is not None and abs(limit) in (F32_MAX, F32_MAX_INT):
        return (
            f"{error['msg']}: the model computes in float32, whose range is "
            f"±{F32_MAX:.7g}; a larger value would overflow"
        )
    if limit is not None and abs(limit) == INT_LIMIT:
        return (
            f"{error['msg']}: integers are exact up to ±2**53, as a double holds them "
            "(the captured record and the drift job read them as one)"
        )
    return error["msg"]


def shape_errors(
    errors: Sequence[Mapping[str, Any]], prefix: list[str | int]
) -> list[dict[str, Any]]:
    """pydantic errors as FastAPI's 422 ``detail``, bounded (see the module docstring)."""
    out = []
    for e in errors[:MAX_ERRORS]:
        item: dict[str, Any] = {
            "type": e["type"],
            "loc": [*prefix, *(_loc_part(p) for p in e["loc"])],
            "msg": _float32_msg(e),
            "input": excerpt(e.get("input")),
        }
        if "ctx" in e:
            item["ctx"] = {k: excerpt(v) for k, v in e["ctx"].items()}
        out.append(item)
    if len(errors) > MAX_ERRORS:
        out.append(
            {
                "type": "too_many_errors",
                "loc": list(prefix),
                "msg": f"{len(errors) - MAX_ERRORS} more errors not shown "
                f"(at most {MAX_ERRORS} are listed)",
                "input": None,
            }
        )
    return out


def _error(kind: str, loc: list[str | int], msg: str, value: Any = None) -> RequestError:
    return RequestError([{"type": kind, "loc": loc, "msg": msg, "input": excerpt(value)}])


class RequestParser:
    """Parses and validates request bodies for one feature schema; built once per model."""

    def __init__(
        self,
        features: Sequence[FeatureSpec],
        max_batch: int = DEFAULT_MAX_BATCH,
        max_depth: int = DEFAULT_MAX_DEPTH,
    ):
        self.record = record_type(features)
        self.max_batch = max_batch
        self.max_depth = max_depth
        self.encoder = FeatureEncoder(features)
        self._one: TypeAdapter[Any] = TypeAdapter(self.record)
        self._many = TypeAdapter(list[self.record])  # type: ignore[name-defined]
        # A feature called "instances" would make the wrapper form ambiguous: disable it.
        self._wrapper = INSTANCES_KEY not in {f.name for f in features}

    def record_schema(self, ref_template: str) -> dict[str, Any]:
        return self._one.json_schema(ref_template=ref_template)

    def check_depth(self, body: bytes) -> None:
        # Each level needs an opening bracket: few brackets means shallow, no scan needed.
        if body.count(b"[") + body.count(b"{") <= self.max_depth:
            return
        depth = max_depth(body)
        if depth > self.max_depth:
            raise _error(
                "too_deep",
                ["body"],
                f"JSON nests {depth} levels deep; the limit is {self.max_depth}",
            )

    def load(self, body: bytes) -> Any:
        """The JSON value of ``body``, depth-checked first; NaN/Infinity are parsed (and
        refused by field validation, which names the field)."""
        self.check_depth(body)
        try:
            return from_json(body, allow_inf_nan=True)
        except ValueError as exc:
            raise _error("json_invalid", ["body"], f"JSON decode error: {str(exc)[:200]}") from None

    def validate(self, data: Any, prefix: list[str | int] | None = None) -> list[dict[str, Any]]:
        """Validated records from a parsed body (one record, a list, or the wrapper)."""
        prefix = list(prefix or ["body"])
        if isinstance(data, dict) and self._wrapper and INSTANCES_KEY in data:
            if len(data) != 1:
                extra = sorted(k for k in data if k != INSTANCES_KEY)[0]
                raise _error(
                    "extra_forbidden",
                    [*prefix, _loc_part(extra)],
                    f"only '{INSTANCES_KEY}' is allowed next to a batch",
                    data[extra],
                )
            data = data[INSTANCES_KEY]
            prefix.append(INSTANCES_KEY)
            if not isinstance(data, list):
                raise _error("list_type", prefix, "Input should be a valid list", data)
        try:
            if isinstance(data, list):
                if not data or len(data) > self.max_batch:
                    raise _error(
                        "too_short" if not data else "too_long",
                        prefix,
                        f"a batch must hold 1 to {self.max_batch} records, "
                        f"this one holds {len(data)}",
                    )
                return self._many.validate_python(data)
            return [self._one.validate_python(data)]
        except ValidationError as exc:
            raise RequestError(shape_errors(exc.errors(include_url=False), prefix)) from None

    def parse_body(self, body: bytes) -> tuple[list[dict[str, Any]], bool]:
        """The validated records of ``body``, and whether it was one record's object
        (neither a list nor the ``instances`` wrapper)."""
        data = self.load(body)
        records = self.validate(data)
        single = isinstance(data, dict) and not (self._wrapper and INSTANCES_KEY in data)
        return records, single

    def parse(self, body: bytes) -> tuple[list[dict[str, Any]], np.ndarray]:
        """The validated records of ``body`` and the model's float32 matrix of them."""
        records = self.validate(self.load(body))
        return records, self.encoder.encode_float32(records)
