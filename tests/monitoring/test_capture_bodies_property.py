"""Property: whatever one-record body serving's request parser accepts, capture records
the values it validated, whether the batch goes through Arrow's JSON reader at once or
one by one (a key given twice, a number Arrow's types refuse)."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

from drift_data import schema_features
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from mlops_core.capture import schema_for
from serving.capture import _Bodies, _bodies_table, to_table
from serving.schema import RequestError, RequestParser

FEATURES = schema_features(numeric=2)
SCHEMA = schema_for(
    SimpleNamespace(project="drift-demo", version="20260101T000000Z-abc1234",
                    task="regression", features=FEATURES, labels=None)
)  # fmt: skip

_odd = st.one_of(st.booleans(), st.none(), st.text(max_size=4), st.just([1]))
_number = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
)
_valid = {
    "x0": _number,
    "x1": _number,
    "items": st.integers(0, 2**64),
    "color": st.one_of(st.sampled_from(["red", "green", "blue", "bl\u00fce"]), st.none()),
}


def _value(draw, name: str):
    # Mostly what validation accepts (so most records reach capture), one in ten not.
    if name not in _valid or draw(st.integers(0, 9)) == 0:
        return draw(st.one_of(_odd, _number))
    return draw(_valid[name])


SEPARATORS = [":", " : ", ":\n"]


@st.composite
def bodies(draw) -> bytes:
    names = draw(st.permutations(["x0", "x1", "items", "color"]))
    names = [n for n in names if n != "color" or draw(st.booleans())]  # color is optional
    if draw(st.integers(0, 4)) == 0:  # a key given twice (the last one counts), or unknown
        names.append(draw(st.sampled_from(["x0", "items", "color", "extra"])))
    pairs = [(n, _value(draw, n)) for n in names]
    ascii_only = draw(st.booleans())
    items = []
    for name, value in pairs:
        sep = draw(st.sampled_from(SEPARATORS))
        key = json.dumps(name, ensure_ascii=ascii_only)
        val = json.dumps(value, ensure_ascii=ascii_only)
        items.append(key + sep + val)
    text = "{" + ", ".join(items) + "}"
    if draw(st.booleans()):  # keys spelled with escapes: the same keys once decoded
        text = text.replace('"x0"', '"\\u0078\\u0030"')
    return text.encode()


def _same(got, want) -> bool:
    if isinstance(want, float) and isinstance(got, float):
        return got == want or (math.isnan(got) and math.isnan(want))
    return got == want and type(got) is type(want)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(bodies(), min_size=1, max_size=6))
def test_captured_inputs_are_what_the_parser_validated(batch_bodies):
    parser = RequestParser(FEATURES)
    schema = SCHEMA
    batch, validated = _Bodies(schema), []
    for body in batch_bodies:
        try:
            records, single = parser.parse_body(body)
        except RequestError:
            continue
        if not single:
            continue
        validated.append(records[0])
        batch.bodies.append(body)
        batch.predictions.append(1.0)
        batch.probabilities.append(None)
        batch.times.append(1.0e9)
        batch.request_ids.append(None)
    event(f"validated {len(validated)} of {len(batch_bodies)}")
    if not validated:
        return
    table = _bodies_table(batch)
    if table is None:  # Arrow refused the batch: decoded one by one
        chunk, lost = batch.as_chunk()
        assert lost == 0
        table = to_table(chunk)
    got = [row["input"] for row in table.to_pylist()]
    for g, want in zip(got, validated, strict=True):
        for spec in FEATURES:
            assert _same(g[spec.name], want.get(spec.name)), (spec.name, g, want)
