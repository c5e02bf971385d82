"""Request validation built from a model's feature schema.

Each loaded model gets its own pydantic model (``pydantic.create_model``) with one field
per feature: required or optional, strict number/integer with the schema's bounds, and a
``Literal`` of the allowed categories. Extra fields are forbidden, so a misspelled field
is named in the 422 rather than silently ignored.

A request body is one of::

    {"mileage": 42000, ...}                    one record
    [{"mileage": 42000, ...}, ...]             a batch
    {"instances": [{"mileage": 42000, ...}]}   a batch, in the TF-Serving/KServe style

and always gets ``{"predictions": [...], ...}`` back, a list even for one record.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model

from mlops_core.features import FeatureSpec

INSTANCES_KEY = "instances"
DEFAULT_MAX_BATCH = 1000

_TYPES: dict[str, type] = {"number": float, "integer": int}


class RequestError(Exception):
    """A request body that failed validation; ``errors`` is FastAPI's 422 ``detail``."""

    def __init__(self, errors: list[dict[str, Any]]):
        self.errors = errors
        super().__init__(errors)


def _field(spec: FeatureSpec) -> tuple[Any, Any]:
    if spec.type == "category":
        annotation: Any = Literal[tuple(spec.categories or ())]
        kwargs: dict[str, Any] = {}
    else:
        annotation = _TYPES[spec.type]
        # strict: "12" or true is not a number; JSON integers are accepted for numbers.
        kwargs = {"strict": True, "ge": spec.min, "le": spec.max}
    if spec.description:
        kwargs["description"] = spec.description
    if spec.required:
        return annotation, Field(..., **kwargs)
    return annotation | None, Field(None, **kwargs)


def record_model(features: Sequence[FeatureSpec], name: str = "Record") -> type[BaseModel]:
    """The pydantic model of one record for ``features``."""
    fields = {spec.name: _field(spec) for spec in features}
    return create_model(  # type: ignore[call-overload]
        name,
        __config__=ConfigDict(extra="forbid", allow_inf_nan=False),
        **fields,
    )


class RequestParser:
    """Parses and validates request bodies for one feature schema; built once per model."""

    def __init__(self, features: Sequence[FeatureSpec], max_batch: int = DEFAULT_MAX_BATCH):
        self.record = record_model(features)
        self.max_batch = max_batch
        self._one = TypeAdapter(self.record)
        self._many = TypeAdapter(list[self.record])  # type: ignore[name-defined]
        # A feature called "instances" would make the wrapper form ambiguous: disable it.
        self._wrapper = INSTANCES_KEY not in {f.name for f in features}

    def parse(self, body: bytes) -> list[BaseModel]:
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise RequestError(
                [
                    {
                        "type": "json_invalid",
                        "loc": ["body"],
                        "msg": f"JSON decode error: {exc}",
                        "input": {},
                    }
                ]
            ) from None
        prefix: list[str | int] = ["body"]
        if isinstance(data, dict) and self._wrapper and INSTANCES_KEY in data:
            if set(data) != {INSTANCES_KEY}:
                extra = sorted(set(data) - {INSTANCES_KEY})
                raise RequestError(
                    [
                        {
                            "type": "extra_forbidden",
                            "loc": ["body", extra[0]],
                            "msg": f"only '{INSTANCES_KEY}' is allowed next to a batch",
                            "input": data[extra[0]],
                        }
                    ]
                )
            data = data[INSTANCES_KEY]
            prefix = ["body", INSTANCES_KEY]
            if not isinstance(data, list):
                raise RequestError(
                    [
                        {
                            "type": "list_type",
                            "loc": prefix,
                            "msg": "Input should be a valid list",
                            "input": data,
                        }
                    ]
                )
        try:
            if isinstance(data, list):
                self._check_size(data, prefix)
                return self._many.validate_python(data)
            return [self._one.validate_python(data)]
        except ValidationError as exc:
            raise RequestError(
                [
                    {
                        "type": e["type"],
                        "loc": [*prefix, *e["loc"]],
                        "msg": e["msg"],
                        "input": e.get("input"),
                        **({"ctx": _jsonable(e["ctx"])} if "ctx" in e else {}),
                    }
                    for e in exc.errors(include_url=False)
                ]
            ) from None

    def _check_size(self, data: list[Any], prefix: list[str | int]) -> None:
        if not data or len(data) > self.max_batch:
            raise RequestError(
                [
                    {
                        "type": "too_short" if not data else "too_long",
                        "loc": prefix,
                        "msg": f"a batch must hold 1 to {self.max_batch} records, "
                        f"this one holds {len(data)}",
                        "input": None,
                    }
                ]
            )


def _jsonable(ctx: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v if isinstance(v, int | float | str | bool | None) else str(v) for k, v in ctx.items()
    }
