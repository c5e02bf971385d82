"""Inference capture: a sampled share of predictions, written to S3 off the request path.

The request path calls one method, :meth:`CaptureWriter.submit`, with the rows it
validated and the predictions it made. ``submit`` decides sampling, appends a reference to
a bounded in-memory buffer and returns: it never blocks on I/O, never raises and never
converts anything. A background thread turns buffered requests into batches of records
(:mod:`mlops_core.capture`, one Parquet file per batch and hour) and writes them when a
batch is full, at least every ``flush_seconds`` (at most a minute) and on :meth:`close`.

When the buffer is full the new request's records are dropped and counted
(``mlops_serving_capture_dropped_records_total{reason="buffer_full"}``); a batch whose
write fails is counted the same way with ``reason="write_failed"``. Capture is
best-effort by design: serving must never slow down or fail because of it.

Configuration (one settings object, read at the edge): ``MLOPS_CAPTURE_PERCENT`` (share
of requests captured, 0-100, default 0 = off; the controller sets it from
``spec.monitoring.capturePercent``), ``MLOPS_CAPTURE_BUFFER_RECORDS``,
``MLOPS_CAPTURE_BATCH_RECORDS``, ``MLOPS_CAPTURE_FLUSH_SECONDS``.

The service (:mod:`serving.app`) builds one writer per process with :func:`for_service`,
starts it with the app and closes it (flushing) on shutdown. Records name the version
that answered them (each request hands over its own model's :class:`CaptureSchema`), so
a hot swap needs nothing from the writer: records before and after it land under their
own version's prefix.
"""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
from prometheus_client import CollectorRegistry, Counter, Gauge

from mlops_core import capture
from mlops_core.capture import CaptureSchema
from mlops_core.logs import get_logger
from mlops_core.naming import Platform
from serving.capture_settings import CaptureSettings

if TYPE_CHECKING:
    from serving.settings import ServingSettings

log = get_logger("serving.capture")

METRIC_PREFIX = "mlops_serving_capture"
#: How often the writer thread reports the buffered-records gauge, at least.
GAUGE_SECONDS = 1.0


def preload() -> None:
    """Pay pyarrow's one-off cost of a first conversion (it imports pandas: 0.2 s of
    CPU) in the process that forks the workers, rather than in every worker at its first
    flush, under traffic."""
    pa.array([0])


@dataclass(slots=True)  # not frozen: a frozen dataclass' __init__ costs the request path 2x
class _Request:
    """One submitted request, as the request path handed it over (not converted yet)."""

    schema: CaptureSchema
    rows: Sequence[Mapping[str, Any]] | np.ndarray
    predictions: Sequence[Any] | np.ndarray
    probabilities: Sequence[Mapping[str, float]] | np.ndarray | None
    request_id: str | None
    time: float  # epoch seconds

    def __len__(self) -> int:
        return len(self.predictions)


class CaptureMetrics:
    def __init__(self, registry: CollectorRegistry):
        self.written = Counter(
            f"{METRIC_PREFIX}_written_records",
            "Captured records written to S3.",
            registry=registry,
        )
        self.dropped = Counter(
            f"{METRIC_PREFIX}_dropped_records",
            "Sampled records not captured, by reason (buffer_full, write_failed, error).",
            ["reason"],
            registry=registry,
        )
        self.files = Counter(
            f"{METRIC_PREFIX}_files", "Capture files written to S3.", registry=registry
        )
        self.buffered = Gauge(
            f"{METRIC_PREFIX}_buffered_records",
            "Records waiting in the capture buffer.",
            registry=registry,
        )
        for reason in ("buffer_full", "write_failed", "error"):
            self.dropped.labels(reason)


class CaptureWriter:
    """Buffers sampled predictions and writes them in batches from a background thread.

    ``platform`` names the bucket and key layout; ``env`` is the env this service serves.
    ``start()`` launches the writer thread; ``close()`` flushes what is buffered and stops
    it. ``submit`` before ``start`` or after ``close`` drops (counted), never raises."""

    def __init__(
        self,
        settings: CaptureSettings,
        *,
        platform: Platform,
        env: str,
        registry: CollectorRegistry,
        rng: random.Random | None = None,
    ):
        self.settings = settings
        self.platform = platform
        self.env = env
        self.metrics = CaptureMetrics(registry)
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._pending: list[_Request] = []
        self._buffered = 0
        self._wake = threading.Event()
        self._stop = False
        self._open = False
        self._thread: threading.Thread | None = None
        self._write_lock = threading.Lock()  # one flush at a time (thread, close, tests)

    # -- the request path ---------------------------------------------------------------
    def sample(self) -> bool:
        """Whether to capture the next request: one draw against ``percent``. Drawn
        before predicting, so that a classifier computes the probabilities of the requests
        it captures even when the client did not ask for them."""
        percent = self.settings.percent
        return percent >= 100 or (percent > 0 and self._rng.random() * 100 < percent)

    def submit(
        self,
        schema: CaptureSchema,
        rows: Sequence[Mapping[str, Any]] | np.ndarray,
        predictions: Sequence[Any] | np.ndarray,
        *,
        probabilities: Sequence[Mapping[str, float]] | np.ndarray | None = None,
        request_id: str | None = None,
        sampled: bool | None = None,
    ) -> None:
        """Capture one answered request, if sampled (``sampled``: the caller drew
        :meth:`sample` first). Non-blocking; never raises.

        ``rows`` are the validated records (mappings of feature name to value, or the
        request models themselves) or the encoded matrix in schema order (category
        codes, NaN for missing); ``predictions`` one per row; ``probabilities`` per row a
        mapping of label to probability, or the runtime's matrix in the order of
        ``schema.labels``."""
        try:
            if not (self.sample() if sampled is None else sampled):
                return
            n = len(predictions)
            if n == 0:
                return
            request = _Request(schema, rows, predictions, probabilities, request_id, time.time())
            with self._lock:
                buffered = self._buffered
                if not self._open or buffered + n > self.settings.buffer_records:
                    full = True
                else:
                    full = False
                    self._pending.append(request)
                    self._buffered = buffered = buffered + n
            if full:
                self.metrics.dropped.labels("buffer_full").inc(n)
                # Said here too: a writer thread stuck in a write that never answers
                # cannot report the buffer it is not emptying.
                self.metrics.buffered.set(buffered)
                return
            # The buffered gauge is the writer thread's to set (a multiprocess gauge
            # write per request is a cost the request path need not pay).
            if buffered >= self.settings.batch_records:
                self._wake.set()
        except Exception:  # noqa: BLE001 - capture must never fail a request
            self.metrics.dropped.labels("error").inc()

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> CaptureWriter:
        with self._lock:
            if self._open:
                return self
            self._open = True
            self._stop = False
        self._thread = threading.Thread(target=self._run, name="capture-writer", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float = 15.0) -> None:
        """Stop accepting records, write everything buffered, stop the thread; within
        ``timeout`` seconds to start the last write (a writer stuck in a write that never
        answers does not hold the service's shutdown past its stop timeout: what is still
        buffered then is dropped and counted as write_failed)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._open = False
            self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.flush(timeout=max(0.0, deadline - time.monotonic()))

    def _run(self) -> None:
        deadline = time.monotonic() + self.settings.flush_seconds
        while True:
            # Awake at least every GAUGE_SECONDS to report what is buffered.
            self._wake.wait(min(GAUGE_SECONDS, max(0.0, deadline - time.monotonic())))
            self._wake.clear()
            with self._lock:
                stop, buffered = self._stop, self._buffered
            if stop:
                return  # close() flushes the rest
            self.metrics.buffered.set(buffered)
            if buffered >= self.settings.batch_records or time.monotonic() >= deadline:
                try:
                    self.flush()
                except Exception as exc:  # noqa: BLE001 - the writer thread must live on
                    log.error("capture flush failed", error=str(exc)[:300])
                deadline = time.monotonic() + self.settings.flush_seconds

    # -- writing ------------------------------------------------------------------------
    def flush(self, timeout: float | None = None) -> int:
        """Write every buffered record now; returns how many were written. With a
        ``timeout``, a flush still running elsewhere after it drops what is buffered."""
        if not self._write_lock.acquire(timeout=-1 if timeout is None else timeout):
            with self._lock:
                pending, self._pending = self._pending, []
                self._buffered = 0
            lost = sum(len(r) for r in pending)
            if lost:
                log.warning("capture records dropped: a write did not finish in time",
                            records=lost, timeout_s=timeout)  # fmt: skip
                self.metrics.dropped.labels("write_failed").inc(lost)
            return 0
        try:
            with self._lock:
                pending, self._pending = self._pending, []
                self._buffered = 0
            self.metrics.buffered.set(0)
            written = 0
            for group in _group(pending):
                written += self._write_group(group)
            return written
        finally:
            self._write_lock.release()

    def _write_group(self, requests: list[_Request]) -> int:
        schema = requests[0].schema
        try:
            table = to_table(schema, requests)
        except Exception:  # noqa: BLE001 - a conversion bug must not kill the thread
            # One request's values (e.g. an integer beyond int64, which validation allows
            # up to float32's range) must not cost every other request of the batch:
            # convert them one by one and drop only those that fail.
            table = self._convert_each(schema, requests)
            if table is None:
                return 0
        written = 0
        batch = self.settings.batch_records
        for offset in range(0, table.num_rows, batch):
            part = table.slice(offset, batch)
            first = part.column("time")[0].as_py()
            key = capture.batch_key(
                self.platform,
                schema.project,
                self.env,
                schema.version,
                first,
                capture.new_batch_id(),
            )
            try:
                capture.put_batch(self.platform, key, part)
            except Exception as exc:  # noqa: BLE001 - S3 down: drop and count, keep serving
                log.warning("capture write failed", key=key, error=str(exc)[:300])
                self.metrics.dropped.labels("write_failed").inc(part.num_rows)
                continue
            self.metrics.written.inc(part.num_rows)
            self.metrics.files.inc()
            written += part.num_rows
        return written

    def _convert_each(self, schema: CaptureSchema, requests: list[_Request]) -> pa.Table | None:
        tables, lost, error = [], 0, ""
        for r in requests:
            try:
                tables.append(to_table(schema, [r]))
            except Exception as exc:  # noqa: BLE001 - see _write_group
                lost += len(r)
                error = error or str(exc)[:300]
        if lost:
            log.error("capture conversion failed", version=schema.version, records=lost,
                      error=error)  # fmt: skip
            self.metrics.dropped.labels("error").inc(lost)
        return pa.concat_tables(tables) if tables else None


def for_service(
    serving: ServingSettings,
    registry: CollectorRegistry,
    settings: CaptureSettings | None = None,
    *,
    platform: Platform,
) -> CaptureWriter | None:
    """The service's writer, or None when capture is off or has nowhere to write.

    Records go to the platform's artifact bucket under the env the service serves, so
    the env must be known (``MLOPS_ENV``, as the controller's task definition and pointer
    following set it); a service of a bare model folder captures nothing and says so."""
    settings = settings or CaptureSettings()
    if not settings.enabled:
        return None
    if serving.env is None:
        log.warning(
            "inference capture is off: the env is unknown",
            percent=settings.percent,
            hint="set MLOPS_PROJECT and MLOPS_ENV (the controller's task definitions do)",
        )
        return None
    log.info("inference capture on", percent=settings.percent, env=serving.env,
             bucket=platform.artifact_bucket)  # fmt: skip
    return CaptureWriter(settings, platform=platform, env=serving.env, registry=registry)


def _group(pending: list[_Request]) -> list[list[_Request]]:
    """Requests by (version, hour of their time): one file never spans either."""
    groups: dict[tuple[str, str, int], list[_Request]] = defaultdict(list)
    for r in pending:
        groups[(r.schema.project, r.schema.version, int(r.time // 3600))].append(r)
    return list(groups.values())


# -- conversion (background thread only) ------------------------------------------------
# Column by column over all the requests of a batch, not value by value per request: the
# writer thread shares its process (and its GIL) with the request path, so its Python
# work per record is what capture costs the service (benchmarks/capture.py).
def _input_columns(schema: CaptureSchema, requests: list[_Request]) -> list[list[Any]]:
    """Each input feature's values over ``requests``, in record order."""
    columns: list[list[Any]] = [[] for _ in schema.features]
    for is_matrix, group in groupby(requests, key=lambda r: isinstance(r.rows, np.ndarray)):
        run = list(group)
        if is_matrix:
            parts = [np.asarray(r.rows) for r in run]
            matrix = parts[0] if len(parts) == 1 else np.vstack(parts)
            for i, spec in enumerate(schema.features):
                columns[i].extend(_matrix_column(schema, spec.name, spec.type, matrix[:, i]))
        else:
            rows = [_mapping(row) for r in run for row in r.rows]
            for i, spec in enumerate(schema.features):
                name = spec.name
                columns[i].extend([row.get(name) for row in rows])
    return columns


def _matrix_column(schema: CaptureSchema, name: str, kind: str, col: np.ndarray) -> list[Any]:
    """One encoded column (category codes, NaN for missing) as the record's values."""
    missing = np.isnan(col)
    if kind == "category":
        cats = schema._categories[name]
        lookup = np.array([*cats, None], dtype=object)
        unknown = missing | (col < 0) | (col >= len(cats))
        codes = np.where(unknown, len(cats), np.where(missing, 0, col)).astype(np.intp)
        return list(lookup[codes])
    flags = missing.tolist()
    if kind == "integer":
        return [None if m else int(v) for v, m in zip(col.tolist(), flags, strict=True)]
    return [None if m else v for v, m in zip(col.tolist(), flags, strict=True)]


def _mapping(row: Any) -> Mapping[str, Any]:
    """A validated row: a mapping, or a request model (its fields)."""
    return row if isinstance(row, Mapping) else vars(row)


def _probability_items(
    schema: CaptureSchema, proba: Sequence[Mapping[str, float]] | np.ndarray
) -> list[list[tuple[str, float]]]:
    if isinstance(proba, np.ndarray):
        return [list(zip(schema.labels, row, strict=True)) for row in proba.tolist()]
    return [list(p.items()) for p in proba]


def to_table(schema: CaptureSchema, requests: list[_Request]) -> pa.Table:
    """The records of ``requests`` (all of one schema) as a table of the capture schema."""
    arrow = schema.arrow_schema
    input_type = arrow.field("input").type
    output_type = arrow.field("output").type
    n = sum(len(r) for r in requests)
    batch_id = capture.new_batch_id()
    inputs = pa.StructArray.from_arrays(
        [
            pa.array(values, type=input_type.field(i).type)
            for i, values in enumerate(_input_columns(schema, requests))
        ],
        fields=list(input_type),
    )
    predictions: list[Any] = []
    probabilities: list[Any] = []
    for r in requests:
        preds = r.predictions.tolist() if isinstance(r.predictions, np.ndarray) else r.predictions
        if schema.task == "classification":
            predictions.extend(None if p is None else str(p) for p in preds)
        else:
            predictions.extend(preds)
        if r.probabilities is None:
            probabilities.extend([None] * len(r))
        else:
            probabilities.extend(_probability_items(schema, r.probabilities))
    outputs = pa.StructArray.from_arrays(
        [
            pa.array(predictions, type=output_type.field("prediction").type),
            pa.array(probabilities, type=output_type.field("probabilities").type),
        ],
        fields=list(output_type),
    )
    times = np.repeat(
        np.array([int(r.time * 1_000_000) for r in requests], dtype=np.int64),
        [len(r) for r in requests],
    )
    request_ids = [r.request_id for r in requests for _ in range(len(r))]
    return pa.Table.from_arrays(
        [
            pa.array([f"{batch_id}-{i}" for i in range(n)], type=pa.string()),
            pa.array(times, type=pa.timestamp("us", tz="UTC")),
            pa.array([schema.version] * n, type=pa.string()),
            pa.array(request_ids, type=pa.string()),
            inputs,
            outputs,
        ],
        schema=arrow,
    )
