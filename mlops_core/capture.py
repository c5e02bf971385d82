"""The capture record: what serving writes about each sampled prediction, and how to read it.

One record per predicted row (a batch request gives one record per row)::

    event_id       string, unique per record ("{batch id}-{row}"; the batch id is random)
    time           timestamp (UTC, microseconds): when the request was answered
    model_version  string: the version that answered
    request_id     string or null: the request's id (logs, ground-truth joins)
    input          struct: one field per feature of the version's schema, the *validated*
                   value (number -> double, integer -> int64, category -> string), null
                   for a missing optional value
    output         struct: prediction (double for regression, the label as a string for
                   classification) and probabilities (map label -> double, or null)

Layout in the artifact bucket, one Parquet file per batch, partitioned by hour (UTC) of
the records it holds::

    {project}/capture/{env}/{version}/yyyy/mm/dd/hh/{yyyymmddThhmmssZ}-{batch id}.parquet

Why Parquet (lz4) and not compressed JSON lines: the drift job reads a window of up to
millions of records and uses a few columns of them. Parquet is columnar and typed, so a
window decodes straight into numeric arrays in C++ (pyarrow), with no per-record Python
work; ``benchmarks/drift.py`` measures both formats on the same records
(``read_parquet_speedup``: about 3x against zstd JSON lines read by Arrow's own JSON
reader, with about 30 % fewer bytes stored). Nor do lines make the writer cheaper where it
counts: a writer that built them around the request bodies, decoding nothing, cost
``/predict`` no less than this one in the same run (``benchmarks/capture.py``'s services).
Files are written once (conditional puts), never appended to or rewritten.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mlops_core import aws
from mlops_core.errors import InvalidInput
from mlops_core.features import FeatureSpec
from mlops_core.logs import get_logger
from mlops_core.naming import Platform
from mlops_core.project import Task

log = get_logger("capture")

CAPTURE_SCHEMA_VERSION = 1
#: The files' Parquet metadata key that says which layout wrote them: a reader skips
#: (and names) files of a newer layout rather than misreading them.
SCHEMA_VERSION_KEY = b"mlops.capture.schema_version"
FILE_SUFFIX = ".parquet"
#: lz4 over zstd: a window reads about 1.5x faster (decoding is most of the job's read
#: time on two cores) for about 10 % more bytes.
COMPRESSION = "lz4"
#: Concurrent GETs while reading a window: the job is bound by the endpoint's latency.
READ_WORKERS = 8


_INPUT_TYPES: dict[str, pa.DataType] = {
    "number": pa.float64(),
    "integer": pa.int64(),
    "category": pa.string(),
}


@dataclass(frozen=True)
class CaptureSchema:
    """What one model version's records look like; built once per loaded model."""

    project: str
    version: str
    features: tuple[FeatureSpec, ...]
    task: Task = "regression"
    #: A classifier's labels as strings, in the order of its probability columns.
    labels: tuple[str, ...] = ()
    #: Category names by feature, for decoding an encoded matrix's codes.
    _categories: dict[str, tuple[str, ...]] = field(default_factory=dict, compare=False)
    #: The features' names, in schema order (the order of an encoded matrix's columns).
    feature_names: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        cats = {f.name: tuple(f.categories or ()) for f in self.features if f.type == "category"}
        object.__setattr__(self, "_categories", cats)
        object.__setattr__(self, "feature_names", tuple(f.name for f in self.features))

    @property
    def arrow_schema(self) -> pa.Schema:
        return arrow_schema(self.features, self.task)


def schema_for(manifest: Any, baseline: dict[str, Any] | None = None) -> CaptureSchema:
    """The capture schema of a published version, for the writer and the reader alike.

    The prediction's type follows the version's task: the manifest's ``task`` where it
    has one, else the baseline's prediction summary (a category summary means labels)."""
    task: Task
    declared = getattr(manifest, "task", None)
    if declared in ("regression", "classification"):
        task = declared
    else:
        kind = ((baseline or {}).get("predictions") or {}).get("type")
        task = "classification" if kind == "category" else "regression"
    labels = tuple(str(label) for label in getattr(manifest, "labels", None) or ())
    return CaptureSchema(manifest.project, manifest.version, tuple(manifest.features), task, labels)


def arrow_schema(features: Sequence[FeatureSpec], task: Task = "regression") -> pa.Schema:
    """The Parquet schema of a version's capture files."""
    prediction = pa.string() if task == "classification" else pa.float64()
    return pa.schema(
        [
            pa.field("event_id", pa.string(), nullable=False),
            pa.field("time", pa.timestamp("us", tz="UTC"), nullable=False),
            pa.field("model_version", pa.string(), nullable=False),
            pa.field("request_id", pa.string()),
            pa.field(
                "input", pa.struct([pa.field(f.name, _INPUT_TYPES[f.type]) for f in features])
            ),
            pa.field(
                "output",
                pa.struct(
                    [
                        pa.field("prediction", prediction),
                        pa.field("probabilities", pa.map_(pa.string(), pa.float64())),
                    ]
                ),
            ),
        ],
        metadata={SCHEMA_VERSION_KEY: str(CAPTURE_SCHEMA_VERSION).encode()},
    )


# -- keys -------------------------------------------------------------------------------
def hour_floor(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def hour_prefix(platform: Platform, project: str, env: str, version: str, hour: datetime) -> str:
    return f"{platform.capture_prefix(project, env, version)}{hour.astimezone(UTC):%Y/%m/%d/%H}/"


def batch_key(
    platform: Platform, project: str, env: str, version: str, first: datetime, batch_id: str
) -> str:
    """Key of one batch file; ``first`` is its earliest record's time (sets the hour)."""
    first = first.astimezone(UTC)
    prefix = hour_prefix(platform, project, env, version, first)
    return f"{prefix}{first:%Y%m%dT%H%M%SZ}-{batch_id}{FILE_SUFFIX}"


def new_batch_id() -> str:
    return os.urandom(8).hex()


# -- writing ----------------------------------------------------------------------------
def _encodings(schema: pa.Schema) -> dict[str, list[str]]:
    """Dictionaries only where values repeat (the version, categories, labels); numbers as
    byte-stream-split, which zstd compresses better and which decodes faster than a
    dictionary of mostly distinct floats."""
    dictionary, split = ["model_version"], []
    for parent in ("input", "output"):
        for f in schema.field(parent).type:
            path = f"{parent}.{f.name}"
            if pa.types.is_string(f.type):
                dictionary.append(path)
            elif pa.types.is_floating(f.type) or pa.types.is_integer(f.type):
                split.append(path)
    return {"use_dictionary": dictionary, "use_byte_stream_split": split}


def encode_table(table: pa.Table) -> bytes:
    """A batch as Parquet bytes (one row group: batches are small)."""
    buf = io.BytesIO()
    pq.write_table(table, buf, compression=COMPRESSION, **_encodings(table.schema))
    return buf.getvalue()


def put_batch(platform: Platform, key: str, table: pa.Table) -> int:
    """Write one batch file, never over an existing one; returns its size in bytes."""
    body = encode_table(table)
    aws.client("s3").put_object(
        Bucket=platform.artifact_bucket,
        Key=key,
        Body=body,
        IfNoneMatch="*",
        ContentType="application/vnd.apache.parquet",
    )
    return len(body)


# -- reading ----------------------------------------------------------------------------
@dataclass
class Window:
    """Records of one version with ``start <= time < end``."""

    start: datetime
    end: datetime
    table: pa.Table
    files: int = 0
    skipped: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return self.table.num_rows

    def input_column(self, name: str) -> pa.ChunkedArray:
        return pc.struct_field(self.table.column("input"), name)

    def prediction_column(self) -> pa.ChunkedArray:
        return pc.struct_field(self.table.column("output"), "prediction")


def check_window(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    if start.tzinfo is None or end.tzinfo is None:
        raise InvalidInput("window bounds must carry a time zone", hint="use UTC, e.g. ...Z")
    if end <= start:
        raise InvalidInput(
            f"empty window: {start.isoformat()} is not before {end.isoformat()}",
            hint="--from must be earlier than --to",
        )
    try:
        return start.astimezone(UTC), end.astimezone(UTC)
    except OverflowError:
        raise InvalidInput(
            f"window bound out of range: {start.isoformat()} .. {end.isoformat()}",
            hint="use times between years 1 and 9999 in UTC",
        ) from None


def _prefixes(
    platform: Platform, project: str, env: str, version: str, start: datetime, end: datetime
) -> list[str]:
    """The key prefixes that cover the hours of ``[start, end)``, in time order: a whole
    day inside the window is one prefix (one listing, not 24), the hours at its ends are
    listed one by one."""
    base = platform.capture_prefix(project, env, version)
    out: list[str] = []
    hour = hour_floor(start)
    while hour < end:
        # The last day of year 9999 has no day after it (check_window admits its hours).
        day_end = hour + timedelta(days=1) if hour.date() < datetime.max.date() else None
        if hour.hour == 0 and day_end is not None and day_end <= end:
            out.append(f"{base}{hour:%Y/%m/%d}/")
            hour = day_end
        else:
            out.append(f"{base}{hour:%Y/%m/%d/%H}/")
            if hour.hour == 23 and day_end is None:
                break
            hour += timedelta(hours=1)
    return out


def list_window(
    platform: Platform, project: str, env: str, version: str, start: datetime, end: datetime
) -> list[str]:
    """Keys of the batch files whose hour overlaps ``[start, end)``, in time order."""
    s3 = aws.client("s3")
    paginator = s3.get_paginator("list_objects_v2")

    def listed(prefix: str) -> list[str]:
        return [
            o["Key"]
            for page in paginator.paginate(Bucket=platform.artifact_bucket, Prefix=prefix)
            for o in page.get("Contents", [])
            if o["Key"].endswith(FILE_SUFFIX)
        ]

    prefixes = _prefixes(platform, project, env, version, start, end)
    # A long window (--since 720h) is many listings: concurrent, as the reads are.
    with ThreadPoolExecutor(max_workers=READ_WORKERS) as pool:
        return [key for keys in pool.map(listed, prefixes) for key in keys]


def _read_one(bucket: str, key: str, schema: pa.Schema) -> pa.Table | None:
    body = aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    try:
        # Only the columns asked for are decoded (Parquet is columnar).
        # One file per pool thread, decoded on that thread: no Arrow thread pool of its
        # own (use_threads, pre_buffer), whose threads, still alive at interpreter exit,
        # can abort the process after its work is done (apache/arrow#34314): the drift
        # job's exit code is its verdict.
        table = pq.read_table(
            pa.BufferReader(body), columns=schema.names, use_threads=False, pre_buffer=False
        )
        written = (table.schema.metadata or {}).get(SCHEMA_VERSION_KEY, b"1")
        if not written.isdigit() or int(written) > CAPTURE_SCHEMA_VERSION:
            log.warning(
                "capture file skipped: a layout this reader does not know",
                key=key,
                schema_version=written.decode(errors="replace")[:20],
                reads=CAPTURE_SCHEMA_VERSION,
                hint="upgrade the drift job to the platform version that wrote it",
            )
            return None
        # Files of one version share its schema; anything else is not this contract.
        return table.cast(schema)
    except (pa.ArrowException, KeyError, ValueError) as exc:
        log.warning("capture file skipped", key=key, error=str(exc)[:200])
        return None


#: What the drift job reads of each record (ids and the version are not decoded).
DRIFT_COLUMNS = ("time", "input", "output")


def read_window(
    platform: Platform,
    schema: CaptureSchema,
    env: str,
    start: datetime,
    end: datetime,
    columns: Sequence[str] | None = None,
) -> Window:
    """Every captured record of ``schema``'s version in ``[start, end)``; ``columns``
    (top-level names, always with ``time``) limits what is decoded.

    Files that are not Parquet of this version's schema are skipped and named in
    ``Window.skipped`` (capture is data, never code: a bad file can only be left out)."""
    start, end = check_window(start, end)
    keys = list_window(platform, schema.project, env, schema.version, start, end)
    arrow = schema.arrow_schema
    if columns is not None:
        names = ["time", *(c for c in columns if c != "time")]
        arrow = pa.schema([arrow.field(n) for n in names], metadata=arrow.metadata)
    with ThreadPoolExecutor(max_workers=READ_WORKERS) as pool:
        parts = list(pool.map(lambda k: _read_one(platform.artifact_bucket, k, arrow), keys))
    tables = [t for t in parts if t is not None]
    skipped = [k for k, t in zip(keys, parts, strict=True) if t is None]
    table = pa.concat_tables(tables) if tables else arrow.empty_table()
    times = table.column("time")
    lo = pa.scalar(start, type=arrow.field("time").type)
    hi = pa.scalar(end, type=arrow.field("time").type)
    mask = pc.and_(pc.greater_equal(times, lo), pc.less(times, hi))
    if table.num_rows and not pc.all(mask).as_py():
        table = table.filter(mask)
    return Window(start=start, end=end, table=table, files=len(tables), skipped=skipped)


def records(table: pa.Table) -> list[dict[str, Any]]:
    """The records of a table as plain dicts (the layout above), for tools and tests."""
    return table.to_pylist()
