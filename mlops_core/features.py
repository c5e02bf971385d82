"""The feature schema, and the one mapping from feature values to model input.

Training and serving both turn records into a float matrix with one
:class:`FeatureEncoder`, in schema order, so the two can never disagree about column order
or category codes (serving's hot path uses :meth:`FeatureEncoder.encode_float32`, which
writes validated records straight into the float32 matrix the model takes).
Categorical features are encoded as the index of their value in ``categories``; missing
optional values and unknown categories become NaN, which the model pipeline imputes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

FEATURE_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
#: Largest float32 (the model computes in float32; serving bounds every number by it).
#: A double at or above the rounding midpoint past it becomes inf.
F32_MAX = float(np.finfo(np.float32).max)

FeatureType = Literal["number", "integer", "category"]


class FeatureSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=FEATURE_NAME_RE.pattern)
    type: FeatureType = "number"
    required: bool = Field(True, description="Requests must supply it; else NaN, imputed.")
    min: float | None = None
    max: float | None = None
    categories: list[str] | None = Field(None, description="Allowed values of a category.")
    description: str = ""

    @model_validator(mode="after")
    def _check(self) -> FeatureSpec:
        if self.type == "category":
            if not self.categories:
                raise ValueError(f"feature {self.name!r}: a category needs 'categories'")
            if self.min is not None or self.max is not None:
                raise ValueError(f"feature {self.name!r}: min/max do not apply to a category")
        elif self.categories is not None:
            raise ValueError(f"feature {self.name!r}: 'categories' only applies to a category")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"feature {self.name!r}: min is greater than max")
        return self


def _encode_value(spec: FeatureSpec, value: Any, index: Mapping[str, int] | None) -> float:
    if value is None:
        return math.nan
    if spec.type == "category":
        assert index is not None
        code = index.get(str(value))
        return math.nan if code is None else float(code)
    return float(value)


class FeatureEncoder:
    """Precomputed encoder for one schema: cheap to call per request."""

    def __init__(self, features: Sequence[FeatureSpec]):
        self.features = list(features)
        self.names = [f.name for f in self.features]
        self._indexes = [
            {c: i for i, c in enumerate(f.categories)} if f.categories else None
            for f in self.features
        ]
        self._plan = list(zip(self.names, self._indexes, strict=True))

    def encode_float32(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """The float32 matrix of ``records`` that have been validated against the schema
        (every category value is one of its categories): one allocation, the matrix."""
        out = np.empty((len(records), len(self._plan)), dtype=np.float32)
        nan = math.nan
        for i, rec in enumerate(records):
            row = out[i]
            for j, (name, idx) in enumerate(self._plan):
                value = rec.get(name)
                if value is None:
                    row[j] = nan
                elif idx is None:
                    row[j] = value
                else:
                    row[j] = idx.get(value, nan)
        return out

    def encode_one(self, record: Mapping[str, Any]) -> np.ndarray:
        return self.encode_records([record])

    def encode_records(self, records: Iterable[Mapping[str, Any]]) -> np.ndarray:
        rows = [
            [
                _encode_value(spec, rec.get(spec.name), idx)
                for spec, idx in zip(self.features, self._indexes, strict=True)
            ]
            for rec in records
        ]
        return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(self.features))

    def encode_frame(self, frame: Any) -> np.ndarray:
        """Encode a pandas DataFrame (training, batch scoring) column by column."""
        cols = []
        for spec, idx in zip(self.features, self._indexes, strict=True):
            col = frame[spec.name]
            if idx is not None:
                cols.append(col.map(lambda v, idx=idx: idx.get(str(v), math.nan)).astype(float))
            else:
                cols.append(col.astype(float))
        return np.column_stack([c.to_numpy(dtype=np.float64) for c in cols])


def encode_records(
    features: Sequence[FeatureSpec], records: Iterable[Mapping[str, Any]]
) -> np.ndarray:
    return FeatureEncoder(features).encode_records(records)
