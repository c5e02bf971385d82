"""Inference capture: a sampled share of predictions, written to S3 off the request path.

The request path calls :meth:`CaptureWriter.submit` with the rows it validated and the
predictions it made, or, for a request body of one record, :meth:`CaptureWriter.submit_body`
with the body it validated (cheaper: see :class:`_Bodies`). Either appends references to a
bounded in-memory buffer and returns: it never blocks on I/O, never raises and never
converts anything. A background thread takes the buffered requests when a batch is
full, at least every ``flush_seconds`` (at most a minute) and on :meth:`close`, and has
them turned into batches of records (:mod:`mlops_core.capture`, one Parquet file per
batch and hour) and written: one-record bodies by the writer's own process
(:mod:`serving.capture_process`, ``MLOPS_CAPTURE_WRITER_PROCESS``, on by default), other
requests by the thread itself.

When the buffer is full the new request's records are dropped and counted
(``mlops_serving_capture_dropped_records_total{reason="buffer_full"}``); a batch whose
write fails is counted the same way with ``reason="write_failed"``. Capture is
best-effort by design: serving must never slow down or fail because of it.

Configuration (one settings object, read at the edge): ``MLOPS_CAPTURE_PERCENT`` (share
of requests captured, 0-100, default 0 = off; the controller sets it from
``spec.monitoring.capturePercent``), ``MLOPS_CAPTURE_BUFFER_RECORDS``,
``MLOPS_CAPTURE_BATCH_RECORDS``, ``MLOPS_CAPTURE_FLUSH_SECONDS``,
``MLOPS_CAPTURE_WRITER_PROCESS``.

The service (:mod:`serving.app`) builds one writer per process with :func:`for_service`,
starts it with the app and closes it (flushing) on shutdown. Records name the version
that answered them (each request hands over its own model's :class:`CaptureSchema`), so
a hot swap needs nothing from the writer: records before and after it land under their
own version's prefix.
"""

from __future__ import annotations

import contextlib
import io
import random
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic_core import from_json

from mlops_core import aws, capture
from mlops_core.capture import CaptureSchema
from mlops_core.logs import get_logger
from mlops_core.naming import Platform
from serving.capture_process import WriterProcess
from serving.capture_settings import CaptureSettings

if TYPE_CHECKING:
    from serving.settings import ServingSettings

log = get_logger("serving.capture")

METRIC_PREFIX = "mlops_serving_capture"
#: How often the writer thread reports the buffered-records gauge, at least.
GAUGE_SECONDS = 1.0


def preload() -> None:
    """Pay the writer's one-off costs in the process that forks the workers, rather than
    in every worker at its first flush, under traffic: pyarrow's first conversion (it
    imports pandas: 0.2 s of CPU) and the S3 client (botocore loads S3's service model:
    0.1 s). The client opens no connection until its first call, in the worker, so
    nothing the fork shares is a socket."""
    pa.array([0])
    aws.client("s3")


#: Records per chunk of the buffer (one allocation of its columns; a request with more
#: records than this gets a chunk of its own size).
CHUNK_RECORDS = 4096


class _Chunk:
    """Buffered records of one schema, column by column, in numpy arrays.

    Buffering a record stores references to its values (numbers, strings) into these
    arrays and allocates no object that the cyclic GC tracks. That keeps the collector as
    idle as it is with capture off: a tuple, list or dataclass per buffered request made it
    run every few hundred requests and walk whatever was in flight, and its full
    collections walk the whole heap; measured, that cost as much CPU per record as the
    conversion and the write together."""

    #: The per-record columns, in the one order every copy and cut walks them.
    COLUMNS = ("inputs", "predictions", "probabilities", "times", "request_ids")
    __slots__ = ("schema", "capacity", "size", *COLUMNS)

    def __init__(self, schema: CaptureSchema, capacity: int):
        self.schema = schema
        self.capacity = capacity
        self.size = 0
        self.inputs = np.empty((capacity, len(schema.features)), dtype=object)
        labels = schema.task == "classification"
        self.predictions = np.empty(capacity, dtype=object if labels else np.float64)
        # Per record: None, the runtime's probability row, or a {label: p} mapping.
        self.probabilities = np.empty(capacity, dtype=object)
        self.times = np.empty(capacity, dtype=np.float64)
        self.request_ids = np.empty(capacity, dtype=object)

    def add(
        self,
        rows: Sequence[Mapping[str, Any]] | np.ndarray,
        predictions: Sequence[Any] | np.ndarray,
        probabilities: Sequence[Mapping[str, float]] | np.ndarray | None,
        request_id: str | None,
        at: float,
        n: int,
    ) -> None:
        """Append one request's ``n`` records; on an error nothing is appended."""
        k, names = self.size, self.schema.feature_names
        if n == 1 and not isinstance(rows, np.ndarray):  # the common case, kept short
            row = rows[0]
            self.inputs[k] = list(map((row if isinstance(row, Mapping) else vars(row)).get, names))
            self.predictions[k] = predictions[0]
            if probabilities is not None:
                self.probabilities[k] = probabilities[0]
            self.times[k] = at
            self.request_ids[k] = request_id
            self.size = k + 1
            return
        end = k + n
        if isinstance(rows, np.ndarray):
            self.inputs[k:end] = _decoded(self.schema, rows)
        else:
            self.inputs[k:end] = [
                list(map((row if isinstance(row, Mapping) else vars(row)).get, names))
                for row in rows
            ]
        self.predictions[k:end] = predictions
        if probabilities is not None:
            for j in range(n):
                self.probabilities[k + j] = probabilities[j]
        self.times[k:end] = at
        self.request_ids[k:end] = request_id
        self.size = end

    @classmethod
    def of(cls, schema: CaptureSchema, columns: dict[str, np.ndarray]) -> _Chunk:
        """A full chunk of ready ``columns`` (one array per name of :attr:`COLUMNS`)."""
        out = cls.__new__(cls)
        out.schema = schema
        out.capacity = out.size = len(columns["times"])
        for name in cls.COLUMNS:
            setattr(out, name, columns[name])
        return out

    def used(self) -> _Chunk:
        """This chunk cut to the records it holds (views, no copies)."""
        if self.size == self.capacity:
            return self
        return _Chunk.of(self.schema, {n: getattr(self, n)[: self.size] for n in self.COLUMNS})

    def take(self, index: np.ndarray) -> _Chunk:
        """The records at ``index`` (numpy fancy indexing: copies)."""
        return _Chunk.of(self.schema, {n: getattr(self, n)[index] for n in self.COLUMNS})


#: A one-record request body up to this size is buffered as its bytes
#: (:meth:`CaptureWriter.submit_body`); a larger one as its values, so that padding a
#: body with whitespace cannot make the bounded buffer hold megabytes per record.
BODY_MAX_BYTES = 2048
#: Cannot occur in a JSON text (a raw control character is neither whitespace nor
#: allowed in a string): the separator of bodies while newlines are taken out of them.
_SEPARATOR = b"\x1e"


class _Bodies:
    """Buffered one-record requests of one schema, as their bodies' bytes.

    The request path's cheapest capture: a few ``list.append`` calls under the lock,
    nothing converted, nothing kept that the cyclic GC tracks. The writer process (or,
    with it off, the writer thread) decodes a batch of bodies at once with Arrow's JSON
    reader against the capture layout's input types (:func:`_bodies_table`).

    Why bodies: timed inside the server under benchmarks/capture.py's load, storing a
    request's values into numpy columns (:meth:`CaptureWriter.submit`) took 11-12 us, 4-5
    times what it takes in a tight loop (numpy's item assignment is a long code path, cold
    in the caches whenever a request comes by); ``submit_body`` takes 4-5 us there."""

    __slots__ = ("schema", "bodies", "predictions", "probabilities", "times", "request_ids")

    def __init__(self, schema: CaptureSchema):
        self.schema = schema
        self.bodies: list[bytes] = []
        self.predictions: list[Any] = []
        self.probabilities: list[Any] = []  # per record: None or the runtime's row
        self.times: list[float] = []
        self.request_ids: list[str | None] = []

    def pack(self) -> tuple:
        """These records for the writer process (:mod:`serving.capture_process`): the
        bodies joined (a validated JSON text holds no :data:`_SEPARATOR`), the times as
        float64 bytes, numeric predictions and probability rows as one array each, the
        rest as lists. Pickled one by one, the runtime's numpy scalars and rows cost about
        1 and 1.5 us a record (in the worker's writer thread, on the request path's core),
        as arrays 0.02 and 0.2 us."""
        predictions: Any = self.predictions
        stacked = np.asarray(predictions) if predictions else None
        if stacked is not None and stacked.dtype.kind in "biuf" and stacked.ndim == 1:
            predictions = stacked
        probabilities: Any = self.probabilities
        if probabilities and all(row is not None for row in probabilities):
            with contextlib.suppress(ValueError):  # rows of different lengths: as a list
                probabilities = np.stack(probabilities)
        return (
            self.schema,
            _SEPARATOR.join(self.bodies),
            np.array(self.times, dtype=np.float64).tobytes(),
            predictions,
            probabilities,
            self.request_ids,
        )

    @classmethod
    def unpack(cls, packed: tuple) -> _Bodies:
        schema, bodies, times, predictions, probabilities, request_ids = packed
        out = cls(schema)
        out.bodies = bodies.split(_SEPARATOR)
        out.times = np.frombuffer(times, dtype=np.float64).tolist()
        if isinstance(predictions, np.ndarray):
            predictions = predictions.tolist()
        out.predictions = predictions
        out.probabilities = list(probabilities)
        out.request_ids = request_ids
        return out

    def by_hour(self) -> list[_Bodies]:
        """These records by the hour of their time (:func:`_hour_groups`)."""
        groups = _hour_groups(np.array(self.times, dtype=np.float64))
        if groups is None:
            return [self]
        out = []
        for index in groups:
            part = _Bodies(self.schema)
            for name in _Bodies.__slots__[1:]:
                values = getattr(self, name)
                setattr(part, name, [values[i] for i in index.tolist()])
            out.append(part)
        return out

    def as_chunk(self) -> tuple[_Chunk, int]:
        """The records decoded one by one, as serving's request parser decodes a body
        (same parser, so a key given twice keeps its last value, as it was validated),
        and how many could not be."""
        chunk, lost = _Chunk(self.schema, len(self.bodies)), 0
        # Validation made a number of a JSON integer (an int above 2**53 is a float the
        # parser accepted, which the capture layout's double column would refuse).
        numbers = [f.name for f in self.schema.features if f.type == "number"]
        for body, prediction, proba, at, request_id in zip(
            self.bodies, self.predictions, self.probabilities, self.times, self.request_ids,
            strict=True,
        ):  # fmt: skip
            probabilities = None if proba is None else proba[np.newaxis]
            try:
                record = from_json(body)
                for name in numbers:
                    if record.get(name) is not None:
                        record[name] = float(record[name])
                chunk.add([record], [prediction], probabilities, request_id, at, 1)
            except Exception:  # noqa: BLE001 - one body must not cost the others
                lost += 1
        return chunk, lost


def _bodies_table(batch: _Bodies) -> pa.Table | None:
    """A batch of bodies as a table of the capture layout, decoded by Arrow's JSON reader
    at once; None where that reader cannot take them all as serving's parser took them
    (a key given twice, which Arrow refuses), for :meth:`_Bodies.as_chunk` to decode.

    Each body was validated as one JSON object of exactly the schema's fields, and
    validation changes no value (strict numbers, categories as given), so what Arrow
    reads against the layout's types is what was validated."""
    schema = batch.schema
    input_type = schema.arrow_schema.field("input").type
    # One object per line: a body's newlines are whitespace (JSON allows none in a string).
    text = _SEPARATOR.join(batch.bodies)
    text = text.replace(b"\n", b" ").replace(b"\r", b" ").replace(_SEPARATOR, b"\n")
    try:
        read = pj.read_json(
            io.BytesIO(text),
            read_options=pj.ReadOptions(use_threads=False),
            parse_options=pj.ParseOptions(
                explicit_schema=pa.schema(list(input_type)), unexpected_field_behavior="error"
            ),
        )
    except pa.ArrowInvalid:
        return None
    if read.num_rows != len(batch.bodies):
        return None
    inputs = pa.StructArray.from_arrays(
        [read.column(f.name).combine_chunks() for f in input_type],
        fields=list(input_type),
    )
    n = len(batch.bodies)
    labels = schema.task == "classification"
    columns = {
        "inputs": np.empty((n, 0), dtype=object),  # converted already: see below
        "predictions": np.array(batch.predictions, dtype=object if labels else np.float64),
        "probabilities": np.fromiter(batch.probabilities, dtype=object, count=n),
        "times": np.array(batch.times, dtype=np.float64),
        "request_ids": np.fromiter(batch.request_ids, dtype=object, count=n),
    }
    return to_table(_Chunk.of(schema, columns), inputs)


def _concat(chunks: list[_Chunk]) -> _Chunk:
    """One chunk of all the records of ``chunks`` (of one schema), in order."""
    used = [c.used() for c in chunks]
    if len(used) == 1:
        return used[0]
    columns = {n: np.concatenate([getattr(c, n) for c in used]) for n in _Chunk.COLUMNS}
    return _Chunk.of(used[0].schema, columns)


def _decoded(schema: CaptureSchema, matrix: np.ndarray) -> np.ndarray:
    """An encoded matrix (category codes, NaN for missing) as rows of record values."""
    matrix = np.asarray(matrix, dtype=np.float64).reshape(len(matrix), len(schema.features))
    out = np.empty(matrix.shape, dtype=object)
    for i, spec in enumerate(schema.features):
        col = matrix[:, i]
        missing = np.isnan(col)
        if spec.type == "category":
            cats = schema._categories[spec.name]
            lookup = np.array([*cats, None], dtype=object)
            unknown = missing | (col < 0) | (col >= len(cats))
            codes = np.where(unknown, len(cats), np.where(missing, 0, col)).astype(np.intp)
            out[:, i] = lookup[codes]
        else:
            cast = int if spec.type == "integer" else float
            flags = missing.tolist()
            out[:, i] = [None if m else cast(v) for v, m in zip(col.tolist(), flags, strict=True)]
    return out


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
            # Summed over live workers: a dead worker's buffer is gone with it.
            multiprocess_mode="livesum",
        )
        # What capture costs the service, in its own terms: CPU seconds the writer spends
        # converting, encoding and writing (per written record: benchmarks/capture.py).
        self.cpu = Counter(
            f"{METRIC_PREFIX}_writer_cpu_seconds",
            "CPU time spent converting, encoding and writing captured records.",
            registry=registry,
        )
        for reason in ("buffer_full", "write_failed", "error"):
            self.dropped.labels(reason)

    def accounted(self) -> float:
        """Records this process's writer has written or counted as lost in a write:
        the difference across a write is what it accounted for (the values of this
        process's own counters, as prometheus_client keeps them in either mode)."""
        lost = (self.dropped.labels(r)._value.get() for r in ("write_failed", "error"))
        return float(self.written._value.get() + sum(lost))


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
        # The request path's reads of the (frozen) settings, as plain attributes.
        self._percent = settings.percent
        self._buffer_records = settings.buffer_records
        self._batch_records = settings.batch_records
        self.platform = platform
        self.env = env
        self.metrics = CaptureMetrics(registry)
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        # Buffered records by schema (the version that answered them), in chunks.
        self._pending: dict[int, list[_Chunk]] = {}
        self._bodies: dict[int, _Bodies] = {}  # one-record requests, by schema
        self._buffered = 0
        self._wake = threading.Event()
        self._stop = False
        self._open = False
        self._thread: threading.Thread | None = None
        self._write_lock = threading.Lock()  # one flush at a time (thread, close, tests)
        # Where one-record bodies are converted and written (started at the first).
        self._process = WriterProcess(platform, env, settings) if settings.writer_process else None

    # -- the request path ---------------------------------------------------------------
    def sample(self) -> bool:
        """Whether to capture the next request: one draw against ``percent``. Drawn
        before predicting, so that a classifier computes the probabilities of the requests
        it captures even when the client did not ask for them."""
        percent = self._percent
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
            at, key = time.time(), id(schema)
            with self._lock:
                buffered = self._buffered
                if not self._open or buffered + n > self._buffer_records:
                    full = True
                else:
                    full = False
                    chunks = self._pending.get(key)
                    if chunks is None:
                        chunks = self._pending[key] = []
                    if not chunks or chunks[-1].size + n > chunks[-1].capacity:
                        capacity = max(n, min(CHUNK_RECORDS, self.settings.buffer_records))
                        chunks.append(_Chunk(schema, capacity))
                    chunks[-1].add(rows, predictions, probabilities, request_id, at, n)
                    self._buffered = buffered = buffered + n
            self._submitted(full, buffered, n)
        except Exception:  # noqa: BLE001 - capture must never fail a request
            self.metrics.dropped.labels("error").inc()

    def submit_body(
        self,
        schema: CaptureSchema,
        body: bytes,
        prediction: Any,
        *,
        probabilities: np.ndarray | None = None,
        request_id: str | None = None,
    ) -> None:
        """Capture one answered request of one record by its body: the bytes its parser
        validated as a single JSON object of ``schema``'s fields (serving's request path,
        for bodies up to :data:`BODY_MAX_BYTES`). The caller has drawn :meth:`sample`;
        ``probabilities`` is the runtime's row for the record. Non-blocking; never raises.
        Anything else goes through :meth:`submit`."""
        # Every captured request comes by here: the appends and _submitted's common case
        # inline, the settings read as plain attributes (625 -> 506 ns with sample(), in
        # a loop; the request path pays 3-4 times that under load).
        try:
            at = time.time()
            with self._lock:
                buffered = self._buffered
                if self._open and buffered < self._buffer_records:
                    batch = self._bodies.get(id(schema))
                    if batch is None:
                        batch = self._bodies[id(schema)] = _Bodies(schema)
                    batch.bodies.append(body)
                    batch.predictions.append(prediction)
                    batch.probabilities.append(probabilities)
                    batch.times.append(at)
                    batch.request_ids.append(request_id)
                    self._buffered = buffered = buffered + 1
                    full = False
                else:
                    full = True
            if full:
                self._submitted(True, buffered, 1)
            elif buffered >= self._batch_records:
                self._wake.set()
        except Exception:  # noqa: BLE001 - capture must never fail a request
            self.metrics.dropped.labels("error").inc()

    def _submitted(self, full: bool, buffered: int, n: int) -> None:
        if full:
            self.metrics.dropped.labels("buffer_full").inc(n)
            # Said here too: a writer thread stuck in a write that never answers
            # cannot report the buffer it is not emptying.
            self.metrics.buffered.set(buffered)
            return
        # The buffered gauge is the writer thread's to set (a multiprocess gauge
        # write per request is a cost the request path need not pay).
        if buffered >= self._batch_records:
            self._wake.set()

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> CaptureWriter:
        with self._lock:
            if self._open:
                return self
            self._open = True
            self._stop = False
        if self._process is not None:
            self._process.start()
        self._thread = threading.Thread(target=self._run, name="capture-writer", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float = 15.0) -> None:
        """Stop accepting records, write everything buffered, stop the thread, end the
        writer process; within about ``timeout`` seconds (a writer stuck in a write that
        never answers does not hold the service's shutdown past its stop timeout: what is
        still buffered then, or still in the writer process, is counted as write_failed;
        a last write in the writer thread, with the process off, is bounded by its AWS
        call limits instead)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._open = False
            self._stop = True
        self._wake.set()
        try:
            if self._thread is not None:
                self._thread.join(timeout)
                self._thread = None
            self.flush(timeout=max(0.0, deadline - time.monotonic()))
        finally:  # the child ends whatever the last flush did
            if self._process is not None:
                self._process.close(timeout=max(1.0, deadline - time.monotonic()))

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
    def _take(self) -> list[_Chunk | _Bodies]:
        """Everything buffered, one chunk and one batch of bodies per schema; the buffer
        is empty after."""
        with self._lock:
            pending, self._pending, self._buffered = self._pending, {}, 0
            bodies, self._bodies = self._bodies, {}
        # A chunk made for a request whose add() failed holds no record: left out (its
        # empty columns have no first hour to file them under).
        merged = (_concat(chunks) for chunks in pending.values() if chunks)
        return [*(chunk for chunk in merged if chunk.size), *bodies.values()]

    def flush(self, timeout: float | None = None) -> int:
        """Write every buffered record now; returns how many were written. With a
        ``timeout``, a flush still running elsewhere after it drops what is buffered,
        and the writer process's writes must end within it too."""
        if not self._write_lock.acquire(timeout=-1 if timeout is None else timeout):
            lost = sum(_size(c) for c in self._take())
            if lost:
                log.warning("capture records dropped: a write did not finish in time",
                            records=lost, timeout_s=timeout)  # fmt: skip
                self.metrics.dropped.labels("write_failed").inc(lost)
            return 0
        deadline = None if timeout is None else time.monotonic() + timeout
        cpu, written, taken = time.thread_time(), 0, []
        try:
            taken = self._take()
            self.metrics.buffered.set(0)
            for group in taken:
                try:
                    parts = group.by_hour() if isinstance(group, _Bodies) else _by_hour(group)
                except Exception as exc:  # noqa: BLE001 - counted, and the flush goes on
                    log.error("capture write failed", records=_size(group), error=str(exc)[:300])
                    self.metrics.dropped.labels("error").inc(_size(group))
                    continue
                for part in parts:
                    written += self._write_part(part, deadline)
            return written
        finally:
            self._write_lock.release()
            if taken:
                self.metrics.cpu.inc(time.thread_time() - cpu)

    def _write_part(self, part: _Chunk | _Bodies, deadline: float | None) -> int:
        """One hour's records of one schema written, every one of them accounted for:
        what a bug let escape uncounted is counted as error (the rest of the flush goes
        on)."""
        before = self.metrics.accounted()
        try:
            if isinstance(part, _Bodies):
                return self._write_bodies_elsewhere(part, deadline)
            return self._write_group(part)
        except Exception as exc:  # noqa: BLE001 - the writer thread must live on
            uncounted = _size(part) - (self.metrics.accounted() - before)
            log.error("capture write failed", records=_size(part), error=str(exc)[:300])
            if uncounted > 0:
                self.metrics.dropped.labels("error").inc(uncounted)
            return 0

    def _write_bodies_elsewhere(self, batch: _Bodies, deadline: float | None = None) -> int:
        """Bodies to the writer process (here, with ``writer_process`` off); its counts
        become this writer's metrics."""
        if self._process is None:
            return self._write_bodies(batch)
        counts = self._process.write(batch, deadline)
        if counts is None:
            self.metrics.dropped.labels("write_failed").inc(len(batch.bodies))
            return 0
        self.metrics.written.inc(counts["written"])
        self.metrics.files.inc(counts["files"])
        self.metrics.cpu.inc(counts["cpu"])
        for reason in ("buffer_full", "write_failed", "error"):
            if counts[reason]:
                self.metrics.dropped.labels(reason).inc(counts[reason])
        return int(counts["written"])

    def _write_bodies(self, batch: _Bodies) -> int:
        try:
            table = _bodies_table(batch)
        except Exception as exc:  # noqa: BLE001 - a conversion bug must not kill the thread
            log.error("capture conversion failed", version=batch.schema.version,
                      error=str(exc)[:300])  # fmt: skip
            table = None
        if table is None:  # decoded one by one instead, as the request parser does
            chunk, lost = batch.as_chunk()
            if lost:
                self.metrics.dropped.labels("error").inc(lost)
            return self._write_group(chunk) if chunk.size else 0
        return self._write_table(batch.schema, table)

    def _write_group(self, chunk: _Chunk) -> int:
        try:
            table = to_table(chunk)
        except Exception:  # noqa: BLE001 - a conversion bug must not kill the thread
            # One record's values (e.g. an integer beyond int64, which serving's
            # validation refuses but another caller may not) must not cost every other
            # record of the batch: convert them one by one and drop only those that fail.
            table = self._convert_each(chunk)
            if table is None:
                return 0
        return self._write_table(chunk.schema, table)

    def _write_table(self, schema: CaptureSchema, table: pa.Table) -> int:
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

    def _convert_each(self, chunk: _Chunk) -> pa.Table | None:
        tables, lost, error = [], 0, ""
        for j in range(chunk.size):
            try:
                tables.append(to_table(chunk.take(np.array([j]))))
            except Exception as exc:  # noqa: BLE001 - see _write_group
                lost += 1
                error = error or str(exc)[:300]
        if lost:
            log.error("capture conversion failed", version=chunk.schema.version, records=lost,
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


def _size(group: _Chunk | _Bodies) -> int:
    return len(group.bodies) if isinstance(group, _Bodies) else group.size


def _hour_groups(times: np.ndarray) -> list[np.ndarray] | None:
    """The indexes of ``times`` by hour, or None when they all fall in one (the usual
    case): one file never spans two hours."""
    hours = (times // 3600).astype(np.int64)
    if hours[0] == hours[-1] and (hours == hours[0]).all():
        return None
    return [np.flatnonzero(hours == h) for h in np.unique(hours)]


def _by_hour(chunk: _Chunk) -> list[_Chunk]:
    """The chunk's records by the hour of their time."""
    groups = _hour_groups(chunk.times)
    return [chunk] if groups is None else [chunk.take(index) for index in groups]


# -- conversion (background thread only) ------------------------------------------------
# Whole columns at a time, handed to pyarrow as numpy arrays to convert in C++, never
# value by value in Python: the writer thread shares its process (and its GIL) with the
# request path, so its Python work per record is what capture costs the service
# (benchmarks/capture.py).
def _probability_items(schema: CaptureSchema, proba: Any) -> list[tuple[str, float]] | None:
    if proba is None:
        return None
    if isinstance(proba, np.ndarray):
        return list(zip(schema.labels, proba.tolist(), strict=True))
    return list(proba.items())


def to_table(chunk: _Chunk, inputs: pa.StructArray | None = None) -> pa.Table:
    """The records of ``chunk`` as a table of its schema's capture layout (``inputs``:
    their input column, already converted; else from ``chunk.inputs``)."""
    schema, n = chunk.schema, chunk.size
    arrow = schema.arrow_schema
    input_type = arrow.field("input").type
    output_type = arrow.field("output").type
    if inputs is None:
        inputs = pa.StructArray.from_arrays(
            [pa.array(chunk.inputs[:, i], type=f.type) for i, f in enumerate(input_type)],
            fields=list(input_type),
        )
    if schema.task == "classification":
        predictions = pa.array(
            [None if p is None else str(p) for p in chunk.predictions.tolist()],
            type=output_type.field("prediction").type,
        )
    else:
        predictions = pa.array(chunk.predictions, type=output_type.field("prediction").type)
    probability_type = output_type.field("probabilities").type
    proba = chunk.probabilities.tolist()
    if all(p is None for p in proba):  # (not list.count: an ndarray == None is no bool)
        probabilities = pa.nulls(n, probability_type)
    else:
        probabilities = pa.array(
            [_probability_items(schema, p) for p in proba], type=probability_type
        )
    event_ids = pc.binary_join_element_wise(
        f"{capture.new_batch_id()}-", pc.cast(pa.array(np.arange(n)), pa.string()), ""
    )
    return pa.Table.from_arrays(
        [
            event_ids,
            pa.array((chunk.times * 1_000_000).astype(np.int64), type=pa.timestamp("us", tz="UTC")),
            pa.repeat(pa.scalar(schema.version, pa.string()), n),
            pa.array(chunk.request_ids, type=pa.string()),
            inputs,
            pa.StructArray.from_arrays([predictions, probabilities], fields=list(output_type)),
        ],
        schema=arrow,
    )
