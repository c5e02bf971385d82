"""The capture writer against the local endpoint: sampling, batches, the hour layout,
the bounded buffer that drops and counts, flushing on interval and on close."""

from __future__ import annotations

import gc
import os
import pickle
import random
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from drift_data import capture_schema, columns, publish_version, records, schema_features
from prometheus_client import CollectorRegistry

from mlops_core import aws, capture
from mlops_core.naming import Platform
from serving.capture import CaptureSettings, CaptureWriter

FEATURES = schema_features(numeric=2)


@pytest.fixture
def schema(aws_env, tmp_path):
    return capture_schema(publish_version(tmp_path, FEATURES))


def writer(platform: Platform, **settings) -> tuple[CaptureWriter, CollectorRegistry]:
    registry = CollectorRegistry()
    w = CaptureWriter(
        CaptureSettings(**{"percent": 100, **settings}),
        platform=platform,
        env="prod",
        registry=registry,
        rng=random.Random(0),
    )
    return w, registry


def value(registry: CollectorRegistry, name: str, **labels) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def window(platform, schema, minutes=10):
    now = datetime.now(UTC)
    return capture.read_window(
        platform, schema, "prod", now - timedelta(minutes=minutes), now + timedelta(minutes=1)
    )


def test_records_round_trip_in_the_documented_layout(platform, schema):
    w, registry = writer(platform)
    w.start()
    rows = records(columns(list(schema.features), 5, seed=1, missing={"color": 0.5}))
    w.submit(schema, rows, [1.5, 2.5, 3.5, 4.5, 5.5], request_id="req-1")
    matrix = np.array([[1.0, 2.0, 3.0, 1.0], [np.nan, 4.0, 0.0, np.nan]])
    w.submit(schema, matrix, np.array([7.0, 8.0]), request_id="req-2")
    w.close()

    keys = capture.list_window(
        platform,
        schema.project,
        "prod",
        schema.version,
        datetime.now(UTC) - timedelta(hours=1),
        datetime.now(UTC) + timedelta(minutes=1),
    )
    assert len(keys) == 1
    prefix = f"{schema.project}/capture/prod/{schema.version}/"
    assert keys[0].startswith(prefix) and keys[0].endswith(".parquet")
    hour = keys[0][len(prefix) :].split("/")
    assert len(hour) == 5 and datetime.strptime("/".join(hour[:4]), "%Y/%m/%d/%H")

    got = capture.records(window(platform, schema).table)
    assert [r["request_id"] for r in got] == ["req-1"] * 5 + ["req-2"] * 2
    assert len({r["event_id"] for r in got}) == 7
    assert {r["model_version"] for r in got} == {schema.version}
    assert [r["input"] for r in got[:5]] == rows
    # The encoded matrix is decoded back to the validated values.
    assert got[5]["input"] == {"x0": 1.0, "x1": 2.0, "items": 3, "color": "green"}
    assert got[6]["input"] == {"x0": None, "x1": 4.0, "items": 0, "color": None}
    assert [r["output"]["prediction"] for r in got] == [1.5, 2.5, 3.5, 4.5, 5.5, 7.0, 8.0]
    assert all(abs(r["time"] - datetime.now(UTC)) < timedelta(minutes=5) for r in got)
    assert value(registry, "mlops_serving_capture_written_records_total") == 7
    # What the writer spent on them, in its own CPU time (converting, encoding, the PUT).
    assert 0 < value(registry, "mlops_serving_capture_writer_cpu_seconds_total") < 10


def test_batches_are_bounded_and_written_without_waiting_for_close(platform, schema):
    w, registry = writer(platform, batch_records=10, flush_seconds=60)
    w.start()
    rows = records(columns(list(schema.features), 4, seed=2))
    for _ in range(6):  # 24 records: two full batches wake the writer, 4 stay buffered
        w.submit(schema, rows, [1.0] * 4)
    deadline = time.monotonic() + 20
    while value(registry, "mlops_serving_capture_written_records_total") < 20:
        assert time.monotonic() < deadline, "full batches were not written"
        time.sleep(0.05)
    w.close()
    assert value(registry, "mlops_serving_capture_written_records_total") == 24
    assert window(platform, schema).rows == 24


def test_flushed_on_the_interval(platform, schema):
    w, registry = writer(platform, batch_records=1000, flush_seconds=0.2)
    w.start()
    w.submit(schema, records(columns(list(schema.features), 3, seed=3)), [1.0, 2.0, 3.0])
    deadline = time.monotonic() + 20
    while window(platform, schema).rows < 3:
        assert time.monotonic() < deadline, "the interval flush never came"
        time.sleep(0.1)
    w.close()
    assert value(registry, "mlops_serving_capture_files_total") == 1


def test_a_full_buffer_drops_and_counts_and_never_blocks(platform, schema):
    w, registry = writer(platform, buffer_records=10, batch_records=1000, flush_seconds=60)
    w.start()
    rows = records(columns(list(schema.features), 4, seed=4))
    for _ in range(5):  # 4 + 4 fit; the next three requests (12 records) do not
        w.submit(schema, rows, [1.0] * 4)
    assert (
        value(registry, "mlops_serving_capture_dropped_records_total", reason="buffer_full") == 12
    )
    # The writer thread reports what is buffered (GAUGE_SECONDS), not the request path.
    deadline = time.monotonic() + 10
    while value(registry, "mlops_serving_capture_buffered_records") != 8:
        assert time.monotonic() < deadline, "the buffered gauge never said 8"
        time.sleep(0.1)
    w.close()
    assert window(platform, schema).rows == 8
    # Closed: nothing more is accepted, and saying so is a count, not an error.
    w.submit(schema, rows, [1.0] * 4)
    assert (
        value(registry, "mlops_serving_capture_dropped_records_total", reason="buffer_full") == 16
    )


def test_sampling_share(platform, schema):
    w, registry = writer(platform, percent=25, buffer_records=100_000)
    w.start()
    row = records(columns(list(schema.features), 1, seed=5))
    for _ in range(2000):
        w.submit(schema, row, [1.0])
    w.close()
    # Seeded: 25 % of 2000 requests, within binomial noise (sd ~19).
    assert 400 < window(platform, schema).rows < 600

    off, _ = writer(platform, percent=0)
    off.start()
    off.submit(schema, row, [1.0])
    assert off.flush() == 0
    off.close()


def test_a_failing_write_is_counted_and_never_raises(platform, schema, monkeypatch):
    broken = Platform(platform=platform.platform, artifact_bucket="no-such-bucket-here")
    w, registry = writer(broken)
    w.start()
    w.submit(schema, records(columns(list(schema.features), 3, seed=6)), [1.0, 2.0, 3.0])
    w.close()
    assert (
        value(registry, "mlops_serving_capture_dropped_records_total", reason="write_failed") == 3
    )
    assert value(registry, "mlops_serving_capture_written_records_total") == 0


def test_bad_rows_are_counted_not_raised(platform, schema):
    w, registry = writer(platform)
    w.start()
    w.submit(schema, [{"x0": "not a number"}], [1.0])  # conversion fails in the thread
    w.submit(schema, None, None)  # type: ignore[arg-type]  # fails in submit itself
    w.close()
    assert value(registry, "mlops_serving_capture_dropped_records_total", reason="error") == 2


def test_a_request_that_fails_in_a_new_chunk_costs_no_other_record(platform, schema, tmp_path):
    """A request whose records fail while being buffered, as the first of a chunk (here:
    the first of another version), leaves that chunk empty; close() neither raises nor
    loses the other version's records."""
    other = capture_schema(publish_version(tmp_path / "other", FEATURES, seed=1))
    w, registry = writer(platform)
    w.start()
    w.submit(other, None, [1.0], request_id="bad")  # type: ignore[arg-type]
    rows = records(columns(list(schema.features), 3, seed=2))
    w.submit(schema, rows, [1.0, 2.0, 3.0], request_id="ok")
    w.close()
    assert value(registry, "mlops_serving_capture_dropped_records_total", reason="error") == 1
    assert value(registry, "mlops_serving_capture_written_records_total") == 3
    assert [r["input"] for r in capture.records(window(platform, schema).table)] == rows


def test_settings_from_the_environment(monkeypatch):
    monkeypatch.setenv("MLOPS_CAPTURE_PERCENT", "12.5")
    monkeypatch.setenv("MLOPS_CAPTURE_FLUSH_SECONDS", "5")
    s = CaptureSettings()
    assert s.percent == 12.5 and s.flush_seconds == 5 and s.enabled
    monkeypatch.setenv("MLOPS_CAPTURE_PERCENT", "150")
    with pytest.raises(ValueError, match="percent"):
        CaptureSettings()
    monkeypatch.setenv("MLOPS_CAPTURE_PERCENT", "10")
    monkeypatch.setenv("MLOPS_CAPTURE_FLUSH_SECONDS", "600")  # at least once a minute
    with pytest.raises(ValueError, match="flush_seconds"):
        CaptureSettings()


def test_files_that_are_not_capture_are_skipped(platform, schema):
    w, _ = writer(platform)
    w.start()
    w.submit(schema, records(columns(list(schema.features), 2, seed=7)), [1.0, 2.0])
    w.close()
    key = capture.batch_key(
        platform, schema.project, "prod", schema.version, datetime.now(UTC), "bogus"
    )
    aws.client("s3").put_object(Bucket=platform.artifact_bucket, Key=key, Body=b"not parquet")
    got = window(platform, schema)
    assert got.rows == 2 and got.skipped == [key]


def test_what_the_request_parser_validates_is_captured_as_is(platform, schema):
    """Serving hands capture the records its parser validated: they round-trip."""
    from serving.schema import RequestParser

    records, _ = RequestParser(list(schema.features)).parse(
        b'{"x0": 1.0, "x1": 2, "items": 3, "color": "red"}'
    )
    w, _ = writer(platform)
    w.start()
    w.submit(schema, records, [9.0])
    w.close()
    (got,) = capture.records(window(platform, schema).table)
    assert got["input"] == {"x0": 1.0, "x1": 2.0, "items": 3, "color": "red"}


def test_the_schema_follows_the_versions_task():
    from types import SimpleNamespace

    from mlops_core.capture import schema_for

    m = SimpleNamespace(project="p", version="20261128T060000Z-abcdef0", features=FEATURES)
    assert schema_for(m).task == "regression"
    labels = {"predictions": {"type": "category", "counts": {"a": 1}}}
    assert schema_for(m, labels).task == "classification"
    assert schema_for(SimpleNamespace(**vars(m), task="classification")).task == "classification"
    schema = schema_for(SimpleNamespace(**vars(m), task="classification"))
    assert str(schema.arrow_schema.field("output").type.field("prediction").type) == "string"


def test_one_unconvertible_request_costs_only_its_own_records(platform, schema):
    """A request whose values the capture's columns cannot hold (an integer beyond int64:
    serving's validation refuses it now, but the writer must not depend on every caller
    doing so) is dropped alone, not with the other requests of its batch."""
    hostile = [{"x0": 1.0, "x1": 2.0, "items": 10**20, "color": "red"}]
    w, registry = writer(platform)
    w.start()
    honest = records(columns(list(schema.features), 20, seed=3))
    w.submit(schema, honest[:10], [1.0] * 10)
    w.submit(schema, hostile, [1.0])
    w.submit(schema, honest[10:], [2.0] * 10)
    w.close()
    got = capture.records(window(platform, schema).table)
    assert [r["input"] for r in got] == honest
    dropped = "mlops_serving_capture_dropped_records_total"
    assert value(registry, dropped, reason="error") == 1
    assert value(registry, "mlops_serving_capture_written_records_total") == 20


@pytest.mark.parametrize("value", ["abc", "nan", "150", "-1"])
def test_bad_capture_settings_are_a_clear_error(monkeypatch, value):
    """python -m serving checks them before forking (it printed pydantic's traceback)."""
    from mlops_core.errors import InvalidInput
    from serving.capture_settings import check_settings

    monkeypatch.setenv("MLOPS_CAPTURE_PERCENT", value)
    with pytest.raises(InvalidInput) as info:
        check_settings()
    assert "MLOPS_CAPTURE_PERCENT" in info.value.render() and value in str(info.value)


def test_a_write_that_never_answers_neither_hides_the_buffer_nor_holds_shutdown(
    platform, schema, monkeypatch
):
    """S3 accepts the connection and never answers: the writer thread is stuck in its
    PUT. The buffered gauge still says what waits (the drop path reports it), and close()
    gives up on its deadline, counting what it could not write."""
    import threading

    stuck, release = threading.Event(), threading.Event()

    def put_that_hangs(*_args, **_kwargs):
        stuck.set()
        release.wait(60)
        raise OSError("read timeout")

    monkeypatch.setattr(capture, "put_batch", put_that_hangs)
    w, registry = writer(platform, buffer_records=12, batch_records=4, flush_seconds=60)
    w.start()
    rows = records(columns(list(schema.features), 4, seed=5))
    w.submit(schema, rows, [1.0] * 4)  # a full batch: the writer takes it and hangs
    assert stuck.wait(10), "the writer never started its write"
    for _ in range(4):  # 12 fit beside the stuck batch; the fourth request is dropped
        w.submit(schema, rows, [1.0] * 4)
    assert value(registry, "mlops_serving_capture_dropped_records_total", reason="buffer_full") == 4
    assert value(registry, "mlops_serving_capture_buffered_records") == 12
    started = time.monotonic()
    w.close(timeout=1.0)
    assert time.monotonic() - started < 5
    assert (
        value(registry, "mlops_serving_capture_dropped_records_total", reason="write_failed") == 12
    )
    release.set()


def test_records_either_side_of_an_hour_go_to_their_own_hours_files(platform, schema, monkeypatch):
    """One buffer, one flush, two hours: each file holds its hour's records only (the
    drift job lists a window by hour prefix)."""
    top = (time.time() // 3600) * 3600  # this hour's start
    w, _ = writer(platform)
    w.start()
    rows = records(columns(list(schema.features), 6, seed=4))
    for i, at in enumerate((top - 2.0, top - 1.0, top + 1.0)):
        monkeypatch.setattr(time, "time", lambda at=at: at)
        w.submit(schema, rows[2 * i : 2 * i + 2], [float(i)] * 2, request_id=f"r{i}")
    monkeypatch.undo()
    w.close()
    start = datetime.fromtimestamp(top - 3600, UTC)
    keys = capture.list_window(
        platform, schema.project, "prod", schema.version, start, start + timedelta(hours=2)
    )
    hours = sorted(k.rsplit("/", 1)[0][-13:] for k in keys)
    before, after = (datetime.fromtimestamp(t, UTC) for t in (top - 1, top))
    assert hours == [f"{before:%Y/%m/%d/%H}", f"{after:%Y/%m/%d/%H}"]
    got = capture.records(
        capture.read_window(platform, schema, "prod", start, start + timedelta(hours=2)).table
    )
    assert sorted(r["request_id"] for r in got) == ["r0", "r0", "r1", "r1", "r2", "r2"]


def test_buffering_leaves_the_cyclic_gc_nothing_to_track(platform, schema):
    """What waits in the buffer is numbers and strings in numpy columns: thousands of
    buffered requests add no object the cyclic GC tracks (one per request made it run
    every few hundred requests, walking everything in flight: CPU the service lost)."""
    w, _ = writer(platform, batch_records=100_000, buffer_records=100_000)
    w.start()
    row = records(columns(list(schema.features), 1, seed=5))[0]
    prediction = np.array([1.5])
    try:
        gc.collect()
        gc.disable()
        before = len(gc.get_objects())
        for i in range(5000):
            w.submit(schema, [dict(row)], prediction, request_id=f"req-{i}")
        grown = len(gc.get_objects()) - before
    finally:
        gc.enable()
    w.close()
    assert grown < 100, f"{grown} tracked objects for 5000 buffered requests"
    assert window(platform, schema).rows == 5000


def test_files_of_a_newer_layout_are_skipped_and_named(platform, schema):
    """A file a newer platform wrote (a layout this reader does not know) is left out and
    named, never read as if it were this one's."""
    w, _ = writer(platform)
    w.start()
    w.submit(schema, records(columns(list(schema.features), 3, seed=8)), [1.0, 2.0, 3.0])
    w.close()
    s3 = aws.client("s3")
    (key,) = capture.list_window(
        platform, schema.project, "prod", schema.version,
        datetime.now(UTC) - timedelta(hours=1), datetime.now(UTC) + timedelta(minutes=1),
    )  # fmt: skip
    table = pq.read_table(
        pa.BufferReader(s3.get_object(Bucket=platform.artifact_bucket, Key=key)["Body"].read())
    )
    newer = table.replace_schema_metadata({capture.SCHEMA_VERSION_KEY: b"2"})
    newer_key = key.replace(".parquet", "-v2.parquet")
    s3.put_object(Bucket=platform.artifact_bucket, Key=newer_key, Body=capture.encode_table(newer))
    got = window(platform, schema)
    assert got.rows == 3 and got.skipped == [newer_key]


def test_a_long_window_lists_whole_days_at_once(platform, schema):
    """Three days and a bit: whole days are one listing each, the ends hour by hour, and
    the files of every hour are found, in time order."""
    s3 = aws.client("s3")
    start = datetime(2026, 11, 1, 22, 30, tzinfo=UTC)
    end = datetime(2026, 11, 5, 1, 15, tzinfo=UTC)
    prefixes = capture._prefixes(platform, schema.project, "prod", schema.version, start, end)
    base = platform.capture_prefix(schema.project, "prod", schema.version)
    assert [p[len(base) :] for p in prefixes] == [
        "2026/11/01/22/", "2026/11/01/23/", "2026/11/02/", "2026/11/03/", "2026/11/04/",
        "2026/11/05/00/", "2026/11/05/01/",
    ]  # fmt: skip
    hours = [start + timedelta(hours=h) for h in range(0, 75, 7)]
    keys = [
        capture.batch_key(platform, schema.project, "prod", schema.version, t, f"b{i:02d}")
        for i, t in enumerate(hours)
    ]
    for key in reversed(keys):
        s3.put_object(Bucket=platform.artifact_bucket, Key=key, Body=b"x")
    outside = capture.batch_key(
        platform, schema.project, "prod", schema.version, end + timedelta(hours=1), "late"
    )
    s3.put_object(Bucket=platform.artifact_bucket, Key=outside, Body=b"x")
    assert capture.list_window(platform, schema.project, "prod", schema.version, start, end) == [
        k for k, t in zip(keys, hours, strict=True) if t < end
    ]


def test_a_window_in_the_last_hours_of_year_9999_reads_without_overflow(platform, schema):
    """check_window admits any time up to year 9999's end; listing its hours must not step
    past the largest date (OverflowError)."""
    last = datetime.max.replace(tzinfo=UTC)
    for start in (last - timedelta(hours=2), last - timedelta(days=2)):
        assert capture.read_window(platform, schema, "prod", start, last).rows == 0


def _bodies_through_the_parser(platform, schema, bodies: list[bytes], **settings):
    """What serving does with one-record bodies: parse and validate, then hand capture
    the body; returns what was validated."""
    from serving.schema import RequestParser

    parser = RequestParser(list(schema.features))
    validated = []
    w, registry = writer(platform, **settings)
    w.start()
    for i, body in enumerate(bodies):
        records, single = parser.parse_body(body)
        assert single
        validated.append(records[0])
        w.submit_body(schema, body, float(i), request_id=f"b{i}")
    w.close()
    return validated, registry


BODIES = [
    b'{"x0": 1.5, "x1": 2, "items": 3, "color": "red"}',
    # Pretty-printed: newlines are whitespace, never inside a JSON string.
    b'{\n  "x0": -0.1000000000000000055511151231257827,\r\n  "x1": 1e-300,\n  "items": 0\n}',
    b'{"x0": 0, "x1": 9007199254740993.5, "items": 9007199254740992, "color": null}',
    b'{"color": "bl\\u0075e", "x1": 3.25, "items": 7, "x0": 12345678.125}',
    b'{"x0": 1, "x1": 2, "items": 1, "color": "red", "x0": 4.5}',  # a key twice
    # An integer beyond 2**53 for a number: a float once validated (in the batch that
    # the key given twice sends down the one-by-one path, too).
    b'{"x0": 10000000000000000, "x1": 123456789012345678901234567890, "items": 1}',
]


@pytest.mark.parametrize("arrow", [True, False], ids=["arrow", "one-by-one"])
def test_one_record_bodies_are_captured_as_they_were_validated(platform, schema, monkeypatch,
                                                               arrow):  # fmt: skip
    """The body path decodes a batch with Arrow's JSON reader; what it records equals what
    the request parser validated: whitespace, escapes, integers for numbers included. A
    key given twice (the parser keeps the last; Arrow refuses it) sends the batch down
    the one-by-one path, which decodes with the request parser's own JSON parser."""
    import serving.capture as capture_module

    bodies = [*BODIES[:4], BODIES[5]] if arrow else BODIES
    if arrow:  # the one-by-one path would drop every record: prove it is not taken
        monkeypatch.setattr(capture_module, "from_json", None)
    # Converted here, where the patch is, when it proves something; else by the writer
    # process, as serving does.
    validated, registry = _bodies_through_the_parser(
        platform, schema, bodies, writer_process=not arrow
    )
    got = sorted(capture.records(window(platform, schema).table), key=lambda r: r["request_id"])
    assert [r["request_id"] for r in got] == [f"b{i}" for i in range(len(bodies))]
    expected = [{name: v.get(name) for name in schema.feature_names} for v in validated]
    assert [r["input"] for r in got] == expected
    assert [r["output"]["prediction"] for r in got] == [float(i) for i in range(len(bodies))]
    assert value(registry, "mlops_serving_capture_dropped_records_total", reason="error") == 0
    if not arrow:
        assert got[4]["input"]["x0"] == 4.5


def test_bodies_and_records_of_one_flush_all_land(platform, schema):
    """A flush holds one-record bodies and multi-record requests alike: both written,
    each record once."""
    w, registry = writer(platform)
    w.start()
    rows = records(columns(list(schema.features), 3, seed=9))
    w.submit(schema, rows, [1.0, 2.0, 3.0], request_id="many")
    w.submit_body(schema, BODIES[0], 4.0, request_id="one")
    w.close()
    got = capture.records(window(platform, schema).table)
    assert sorted(r["request_id"] for r in got) == ["many", "many", "many", "one"]
    assert value(registry, "mlops_serving_capture_written_records_total") == 4


def test_a_body_that_does_not_decode_costs_only_itself(platform, schema):
    """A body no parser can read (not what serving hands over, but the writer must not
    trust that) is dropped and counted; the others of its batch are written."""
    w, registry = writer(platform)
    w.start()
    w.submit_body(schema, BODIES[0], 1.0, request_id="ok")
    w.submit_body(schema, b'{"x0": ', 2.0, request_id="bad")
    w.close()
    got = capture.records(window(platform, schema).table)
    assert [r["request_id"] for r in got] == ["ok"]
    assert value(registry, "mlops_serving_capture_dropped_records_total", reason="error") == 1


def test_a_full_buffer_drops_bodies_and_counts_them(platform, schema):
    w, registry = writer(platform, buffer_records=3, batch_records=100, flush_seconds=60)
    w.start()
    for i in range(5):
        w.submit_body(schema, BODIES[0], float(i))
    dropped = "mlops_serving_capture_dropped_records_total"
    assert value(registry, dropped, reason="buffer_full") == 2
    w.close()
    assert window(platform, schema).rows == 3


def test_bodies_either_side_of_an_hour_go_to_their_own_hours_files(platform, schema, monkeypatch):
    top = (time.time() // 3600) * 3600
    w, _ = writer(platform)
    w.start()
    for i, at in enumerate((top - 1.0, top + 1.0, top - 2.0)):
        monkeypatch.setattr(time, "time", lambda at=at: at)
        w.submit_body(schema, BODIES[0], float(i), request_id=f"r{i}")
    monkeypatch.undo()
    w.close()
    start = datetime.fromtimestamp(top - 3600, UTC)
    keys = capture.list_window(
        platform, schema.project, "prod", schema.version, start, start + timedelta(hours=2)
    )
    assert len(keys) == 2
    got = capture.read_window(platform, schema, "prod", start, start + timedelta(hours=2))
    by_hour = {
        k.rsplit("/", 1)[0][-13:]: sorted(r["request_id"] for r in capture.records(t))
        for k, t in ((k, capture._read_one(platform.artifact_bucket, k, schema.arrow_schema))
                     for k in keys)
    }  # fmt: skip
    assert sorted(by_hour.values()) == [["r0", "r2"], ["r1"]] and got.rows == 3


def _bodies(w: CaptureWriter, schema, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        w.submit_body(schema, BODIES[0], float(i), request_id=f"p{i}")


def test_bodies_are_converted_and_written_by_a_process_of_the_writers_own(platform, schema):
    import psutil

    w, registry = writer(platform)
    w.start()
    _bodies(w, schema, 3)
    assert w.flush() == 3
    pid = w._process.pid
    assert pid is not None and pid != os.getpid()
    child = psutil.Process(pid)
    assert child.ppid() == os.getpid() and "serving.capture_process" in child.cmdline()
    # Its counts are this writer's metrics.
    assert value(registry, "mlops_serving_capture_written_records_total") == 3
    assert value(registry, "mlops_serving_capture_files_total") == 1
    assert value(registry, "mlops_serving_capture_writer_cpu_seconds_total") > 0
    w.close()
    assert not psutil.pid_exists(pid) or child.status() == psutil.STATUS_ZOMBIE
    got = capture.records(window(platform, schema).table)
    assert sorted(r["request_id"] for r in got) == ["p0", "p1", "p2"]


@pytest.mark.skipif(
    not hasattr(os, "SCHED_BATCH"), reason="SCHED_BATCH is Linux's; elsewhere the default stands"
)
def test_the_writer_process_is_scheduled_as_batch_work(platform, schema):
    """The child shares its worker's core: scheduled as batch work, it does not preempt
    the request path each time a pipe read or a PUT wakes it."""
    if os.sched_getscheduler(0) != os.SCHED_OTHER:
        pytest.skip("run under another policy (chrt): the child keeps the one it inherits")
    w, _ = writer(platform)
    w.start()
    _bodies(w, schema, 1)
    assert w.flush() == 1  # the child has answered: it has set its policy by now
    assert os.sched_getscheduler(w._process.pid) == os.SCHED_BATCH
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the worker's own is left alone
    w.close()


@pytest.mark.skipif(
    not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's; elsewhere the default stands"
)
def test_the_writer_process_keeps_a_policy_its_operator_chose():
    """A worker run as idle work (``chrt -i``) spawns a child that stays idle work:
    batch scheduling is only ever asked for in place of the default policy."""
    code = (  # the child as `chrt -i 0` would start it (lowering one's policy is allowed)
        "import os; os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0)); "
        "from serving.capture_process import batch_scheduling; batch_scheduling(); "
        "print(os.sched_getscheduler(0))"
    )
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(got.stdout.split()[-1]) == os.SCHED_IDLE


def test_a_writer_process_that_dies_between_batches_is_started_again(platform, schema):
    w, registry = writer(platform)
    w.start()
    _bodies(w, schema, 2)
    assert w.flush() == 2
    first = w._process._proc
    first.kill()
    first.wait()
    _bodies(w, schema, 2, start=2)
    assert w.flush() == 2  # nothing lost: the next batch starts another
    assert w._process.pid != first.pid
    w.close()
    assert window(platform, schema).rows == 4
    failed = value(registry, "mlops_serving_capture_dropped_records_total", reason="write_failed")
    assert failed == 0


def test_a_writer_process_that_fails_mid_batch_costs_that_batch_only(platform, schema, monkeypatch):
    """A child that dies with a batch in hand may have written part of it: the batch is
    counted as write_failed (not written twice), the writer thread lives on, and the next
    batch goes to a new child."""
    from serving.capture_process import WriterProcess

    monkeypatch.setattr(WriterProcess, "command", (sys.executable, "-c", "pass"))
    w, registry = writer(platform)
    w.start()
    _bodies(w, schema, 3)
    assert w.flush() == 0
    failed = value(registry, "mlops_serving_capture_dropped_records_total", reason="write_failed")
    assert failed == 3
    monkeypatch.undo()
    _bodies(w, schema, 2, start=3)
    assert w.flush() == 2
    w.close()
    assert window(platform, schema).rows == 2


def test_without_the_writer_process_bodies_are_written_by_the_writer_thread(platform, schema):
    w, registry = writer(platform, writer_process=False)
    w.start()
    _bodies(w, schema, 2)
    assert w.flush() == 2
    assert w._process is None
    w.close()
    assert window(platform, schema).rows == 2


def test_a_batch_the_writer_process_cannot_write_is_counted_and_the_process_lives_on(
    platform, schema
):
    from dataclasses import replace

    unnamed = replace(schema, project="X")  # no key can be made of it: the write raises
    w, registry = writer(platform)
    w.start()
    w.submit_body(unnamed, BODIES[0], 1.0, request_id="bad")
    assert w.flush() == 0
    assert value(registry, "mlops_serving_capture_dropped_records_total", reason="error") == 1
    pid = w._process.pid
    _bodies(w, schema, 2)
    assert w.flush() == 2
    assert w._process.pid == pid
    w.close()


def _dropped(registry, reason="write_failed") -> float:
    return value(registry, "mlops_serving_capture_dropped_records_total", reason=reason)


def test_a_writer_process_that_stops_answering_is_killed_and_replaced(
    platform, schema, monkeypatch
):
    """A stopped (or deadlocked) child would hold the writer thread forever: past its
    answer timeout it is killed, its batch is counted as write_failed, and the next batch
    goes to a new child."""
    import signal

    import psutil

    from serving.capture_process import WriterProcess

    real_timeout = WriterProcess.answer_timeout
    monkeypatch.setattr(WriterProcess, "answer_timeout", lambda self, records: 1.0)
    w, registry = writer(platform)
    w.start()
    stopped = w._process._proc
    os.kill(stopped.pid, signal.SIGSTOP)
    _bodies(w, schema, 3)
    started = time.monotonic()
    assert w.flush() == 0
    assert time.monotonic() - started < 10
    assert _dropped(registry) == 3
    assert not psutil.pid_exists(stopped.pid)  # killed and reaped, not left stopped
    # The next child starts with this batch: its imports alone may take a second here.
    monkeypatch.setattr(WriterProcess, "answer_timeout", real_timeout)
    _bodies(w, schema, 2, start=3)
    assert w.flush() == 2
    assert w._process.pid != stopped.pid
    w.close()
    assert sorted(r["request_id"] for r in capture.records(window(platform, schema).table)) == [
        "p3",
        "p4",
    ]


def test_a_writer_process_that_keeps_failing_is_started_again_after_a_pause(
    platform, schema, monkeypatch
):
    """One crash costs its batch and the next batch starts a child at once; a child that
    cannot live is not started for every batch: the batches of the pause are counted
    as write_failed, and once it is over a child that works writes again."""
    import serving.capture_process as process

    monkeypatch.setattr(process, "RESTART_PAUSES", (0.0, 0.5))
    monkeypatch.setattr(process.WriterProcess, "command", (sys.executable, "-c", "pass"))
    starts = []
    real_start = process.WriterProcess._start
    monkeypatch.setattr(
        process.WriterProcess, "_start", lambda self: starts.append(1) or real_start(self)
    )
    w, registry = writer(platform)
    w.start()
    for i in range(2):  # fails, then fails again in a child started at once
        _bodies(w, schema, 1, start=i)
        assert w.flush() == 0
    assert len(starts) >= 2
    before = len(starts)
    for i in range(2, 4):  # in the pause
        _bodies(w, schema, 1, start=i)
        assert w.flush() == 0
    assert len(starts) == before, "a child was started in the pause"
    assert _dropped(registry) == 4
    time.sleep(0.6)
    monkeypatch.setattr(process.WriterProcess, "command", real_command())
    _bodies(w, schema, 2, start=10)
    assert w.flush() == 2
    assert w._process._failures == 0
    w.close()


def real_command() -> tuple[str, ...]:
    return (sys.executable, "-P", "-m", "serving.capture_process")


def test_close_ends_a_writer_process_stuck_in_a_write_and_starts_none_after(platform, schema):
    """close() does not wait on a child that never answers past its own deadline: the
    child is killed, what it held is counted, and no child is started after close."""
    import signal
    import threading

    import psutil

    w, registry = writer(platform)
    w.start()
    stuck = w._process._proc
    os.kill(stuck.pid, signal.SIGSTOP)
    _bodies(w, schema, 3)
    flushing = threading.Thread(target=w.flush)
    flushing.start()
    deadline = time.monotonic() + 10
    while w._process._busy is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert w._process._busy is stuck
    started = time.monotonic()
    w.close(timeout=1.0)
    assert time.monotonic() - started < 5
    flushing.join(10)
    assert not flushing.is_alive()
    assert not psutil.pid_exists(stuck.pid)
    assert _dropped(registry) == 3
    # A write after close (a thread that outlived it) is counted, and starts nothing.
    from serving.capture import _Bodies

    late = _Bodies(schema)
    late.bodies.append(BODIES[0])
    assert w._process.write(late) is None
    assert w._process.pid is None


def test_the_writer_process_makes_its_calls_with_the_workers_limits(monkeypatch):
    """The parent's answer timeout is computed from its call limits: the child uses
    the same ones, not the library's default."""
    import io
    import pickle

    from serving.capture_process import _serve

    monkeypatch.setattr(aws, "_limits", aws.CLI)
    limits = aws.CallLimits(connect_timeout=1, read_timeout=2, max_attempts=1)
    settings = CaptureSettings(percent=100).model_dump()
    handshake = pickle.dumps((Platform(), "prod", settings, limits))
    _serve(io.BytesIO(handshake), io.BytesIO())
    assert aws.limits() == limits


@pytest.mark.parametrize(
    ("predictions", "probabilities"),
    [
        ([np.float32(1.5), np.float32(-2.25)], [None, None]),  # a regressor's
        ([np.int64(3), np.int64(7)], list(np.array([[0.2, 0.8], [0.6, 0.4]], np.float32))),
        (["cat", "dog"], [np.array([0.1, 0.9], np.float32), None]),  # one row missing
    ],
)
def test_bodies_packed_for_the_writer_process_unpack_to_the_same_records(
    schema, predictions, probabilities
):
    from serving.capture import _Bodies

    batch = _Bodies(schema)
    batch.bodies = [b'{"a": 1}', b'{"b":\n2}']
    batch.predictions, batch.probabilities = list(predictions), list(probabilities)
    batch.times, batch.request_ids = [1.0e9, 1.0e9 + 0.5], ["r1", None]
    packed = batch.pack()
    numeric = not isinstance(predictions[0], str)
    assert isinstance(packed[3], np.ndarray) == numeric, "numpy scalars go as one array"
    got = _Bodies.unpack(pickle.loads(pickle.dumps(packed)))
    assert got.bodies == batch.bodies and got.times == batch.times
    assert got.predictions == [p.item() if isinstance(p, np.generic) else p for p in predictions]
    assert got.request_ids == ["r1", None]
    assert len(got.probabilities) == 2
    for row, want in zip(got.probabilities, probabilities, strict=True):
        assert (row is None) == (want is None)
        if want is not None:
            assert row.dtype == want.dtype and row.tolist() == want.tolist()


def test_the_writer_process_imports_the_workers_code_from_another_folder(
    platform, schema, tmp_path, monkeypatch
):
    """A worker whose code is found by a path of its own (not installed, started from
    elsewhere) still gets a child that imports that code."""
    import shutil
    import subprocess

    from serving import capture_process

    copy = tmp_path / "checkout"
    for package in ("serving", "mlops_core"):
        shutil.copytree(Path(capture_process.__file__).parents[1] / package, copy / package)
    monkeypatch.setattr(capture_process, "__file__", str(copy / "serving" / "capture_process.py"))
    monkeypatch.chdir(tmp_path)
    env = capture_process._child_environment()
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(copy)
    found = subprocess.run(
        [sys.executable, "-c", "import serving.capture_process as m; print(m.__file__)"],
        env=env, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert found.stdout.strip() == str(copy / "serving" / "capture_process.py")


def test_a_writer_process_whose_worker_is_gone_ends_quietly(platform, schema, monkeypatch):
    """The worker died while the child wrote its batch: the answer has nowhere to go,
    and the child ends without a traceback (the batch it held is in S3)."""
    import io

    from serving.capture import _Bodies
    from serving.capture_process import _serve

    monkeypatch.setattr(aws, "_limits", aws.CLI)

    class Gone(io.BytesIO):
        def write(self, _data):
            raise BrokenPipeError(32, "Broken pipe")

    batch = _Bodies(schema)
    _bodies_into(batch, 2)
    settings = CaptureSettings(percent=100).model_dump()
    inp = io.BytesIO(
        pickle.dumps((platform, "prod", settings, aws.limits()))
        + pickle.dumps(batch.pack())
        + pickle.dumps(batch.pack())  # never read: the child ended at the first answer
    )
    _serve(inp, Gone())
    assert window(platform, schema).rows == 2


def _bodies_into(batch, n: int) -> None:
    for i in range(n):
        batch.bodies.append(BODIES[0])
        batch.predictions.append(float(i))
        batch.probabilities.append(None)
        batch.times.append(time.time())
        batch.request_ids.append(f"g{i}")


def _impostor(monkeypatch, then: str) -> None:
    """The writer process replaced by a program that reads the handshake and one batch,
    then does ``then`` (Python, with ``out`` its answer pipe)."""
    from serving.capture_process import WriterProcess

    script = (
        "import pickle, sys, time; from serving.capture_process import COUNTS;"
        " pickle.load(sys.stdin.buffer); pickle.load(sys.stdin.buffer);"
        f" out = open(int(sys.argv[1]), 'wb'); {then}"
    )
    monkeypatch.setattr(WriterProcess, "command", (sys.executable, "-c", script))


def test_an_answer_that_is_not_the_protocols_costs_its_batch_and_its_child(
    platform, schema, monkeypatch
):
    """A child that answers something else than its counts (another program on its
    command line, a broken build) is treated as one that failed: its batch is counted,
    it is ended, and the writer thread goes on."""
    import psutil

    _impostor(monkeypatch, "pickle.dump(['not', 'counts'], out); out.flush(); time.sleep(60)")
    w, registry = writer(platform)
    w.start()
    child = w._process._proc
    _bodies(w, schema, 3)
    assert w.flush() == 0
    assert _dropped(registry) == 3
    assert not psutil.pid_exists(child.pid)
    w.close()


def test_a_writer_started_again_after_close_writes_through_a_new_process(platform, schema):
    """An app's lifespan run twice (a test client entered twice) starts its writer again:
    bodies are written again, by a new child."""
    w, registry = writer(platform)
    w.start()
    _bodies(w, schema, 2)
    first = w._process.pid
    w.close()
    w.start()
    _bodies(w, schema, 2, start=2)
    assert w.flush() == 2
    assert w._process.pid not in (None, first)
    w.close()
    assert _dropped(registry) == 0
    assert window(platform, schema).rows == 4


def _accounted(registry) -> float:
    return value(registry, "mlops_serving_capture_written_records_total") + sum(
        _dropped(registry, reason) for reason in ("buffer_full", "write_failed", "error")
    )


def test_close_bounds_its_own_last_write_to_a_writer_process_that_never_answers(
    platform, schema, monkeypatch
):
    """The writer thread is idle and close() itself hands the last batch to a child that
    takes it and never answers: close still returns on its deadline (not the answer
    timeout, minutes under serving's limits), the batch counted, the child ended."""
    import psutil

    _impostor(monkeypatch, "time.sleep(120)")
    w, registry = writer(platform)
    w.start()
    child = w._process._proc
    _bodies(w, schema, 3)
    started = time.monotonic()
    w.close(timeout=1.0)
    assert time.monotonic() - started < 4
    assert _dropped(registry) == 3
    assert not psutil.pid_exists(child.pid)


def test_close_ends_the_writer_process_even_when_its_flush_raises(platform, schema, monkeypatch):
    import psutil

    w, registry = writer(platform)
    w.start()
    child = w._process._proc

    def broken(self, *args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(CaptureWriter, "flush", broken)
    with pytest.raises(RuntimeError):
        w.close(timeout=1.0)
    child.wait(5)
    assert not psutil.pid_exists(child.pid)


def test_a_write_that_raises_leaves_no_record_uncounted_and_the_flush_goes_on(
    platform, schema, monkeypatch
):
    """A bug in one part of a flush (here: after counting one record) costs that part's
    other records, counted as error, not the records of the flush's other parts."""
    from dataclasses import replace

    other = replace(schema, version="20260101T000000Z-0ther00")

    def half_counted(self, batch, deadline=None):
        if batch.schema is other:
            self.metrics.written.inc(1)
            raise RuntimeError("a bug")
        return real(self, batch, deadline)

    real = CaptureWriter._write_bodies_elsewhere
    monkeypatch.setattr(CaptureWriter, "_write_bodies_elsewhere", half_counted)
    w, registry = writer(platform)
    w.start()
    for i in range(3):
        w.submit_body(other, BODIES[0], float(i))
    _bodies(w, schema, 2)
    w.flush()
    assert _dropped(registry, "error") == 2
    assert _accounted(registry) == 5
    w.close()
    assert window(platform, schema).rows == 2


OUT_OF_RANGE = [
    "{k: -1.0 for k in COUNTS}",
    "{k: float('nan') for k in COUNTS}",
    "{k: 0.0 for k in COUNTS}",  # accounts for none of the records
]


@pytest.mark.parametrize("answer", OUT_OF_RANGE)
def test_an_answer_with_counts_out_of_range_costs_its_batch(platform, schema, monkeypatch, answer):
    """Counts that are negative, not numbers, or that do not account for the batch's
    records exactly are not the protocol's: the batch is counted as write_failed."""
    _impostor(monkeypatch, f"pickle.dump({answer}, out); out.flush(); time.sleep(60)")
    w, registry = writer(platform)
    w.start()
    _bodies(w, schema, 3)
    assert w.flush() == 0
    assert _dropped(registry) == 3
    assert _accounted(registry) == 3
    w.close()


def test_the_answer_timeout_stays_bounded_whatever_the_attempts(monkeypatch):
    from serving.capture_process import MAX_ANSWER_SECONDS, WriterProcess

    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "5000")
    assert aws.limits().max_attempts == 5000
    assert aws.limits().worst_case() < float("inf")
    process = WriterProcess(Platform(), "prod", CaptureSettings(percent=100))
    assert process.answer_timeout(20_000) == MAX_ANSWER_SECONDS


def test_a_worker_without_stderr_still_has_its_bodies_written(platform, schema, monkeypatch):
    """A worker started with fd 2 closed: its child has no stderr either, and writes."""
    from serving.capture_process import WriterProcess

    command = ("/bin/sh", "-c", 'exec "$0" -P -m serving.capture_process "$@" 2>&-', sys.executable)
    monkeypatch.setattr(WriterProcess, "command", command)
    w, registry = writer(platform)
    w.start()
    _bodies(w, schema, 3)
    assert w.flush() == 3
    w.close()
    assert window(platform, schema).rows == 3


@pytest.mark.parametrize("shadow", ["cwd", "sitecustomize"])
def test_the_writer_process_is_not_misled_by_what_the_workers_folder_holds(
    platform, schema, tmp_path, monkeypatch, shadow
):
    """A ``serving.py`` in the worker's current folder (the user's own file) is not what
    the child imports, and a ``sitecustomize`` that prints at start does not corrupt its
    answers (they come on a pipe of their own, not stdout)."""
    if shadow == "cwd":
        (tmp_path / "serving.py").write_text("print('the user serving module')\n")
        monkeypatch.chdir(tmp_path)
    else:
        (tmp_path / "sitecustomize.py").write_text("print('hello from sitecustomize')\n")
        monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    w, registry = writer(platform)
    w.start()
    _bodies(w, schema, 3)
    assert w.flush() == 3
    assert _dropped(registry) == 0
    w.close()
    assert window(platform, schema).rows == 3
