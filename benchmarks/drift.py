"""Benchmark the drift job; prints ONE JSON line.

    .venv/bin/python benchmarks/drift.py [--rows 1000000] [--repeats 5] [--format-rows 100000]

What runs, in this one invocation, against baselines measured in the same run:

* **KS**: 20 numeric features, ``--rows`` window values each against a 1,000-row
  reference. The job's path (sort the window once, then binary-search the sorted
  reference into it: ``monitoring.stats``) against ``scipy.stats.ks_2samp`` on the same
  arrays; medians of ``--repeats`` rounds, alternating; the largest difference of D.
  Goal: >= 5x faster, D equal within 1e-12.
* **The whole job**: a local endpoint (moto's server on a free port) holds a published
  version (22 features: 20 numbers, an integer, a category) and ``--rows`` captured
  records in Parquet batches of 5,000, one feature shifted. ``python -m monitoring``
  runs as the scheduled task does (a fresh process, settings from the environment);
  its wall time and peak RSS (``getrusage`` of the reaped child). Goal: <= 10 s and <= 1 GiB.
* **The capture format**: the same ``--format-rows`` records stored as Parquet (the
  contract) and as zstd JSON lines; the time to read each back from the endpoint into
  the drift job's columns (``capture.DRIFT_COLUMNS``), both in C++ with the same
  concurrent GETs (the lines with Arrow's JSON reader against the layout's types, the
  fastest JSON-lines reader at hand), and what each stores per record.
"""

from __future__ import annotations

import argparse
import json
import os
import platform as _platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
from scipy import stats as sps

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "support")]

from drift_data import (  # noqa: E402
    PROJECT,
    capture_schema,
    columns,
    publish_version,
    schema_features,
    window_table,
)

from mlops_core import aws, capture  # noqa: E402
from mlops_core.config import PlatformSettings  # noqa: E402
from mlops_core.naming import Platform  # noqa: E402
from mlopsctl import local_aws  # noqa: E402
from monitoring import stats  # noqa: E402

FEATURES_KS = 20
REFERENCE_ROWS = 1000
BATCH = 5000


def bench_ks(rows: int, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    windows = [rng.normal(0.05 * i, 1.0, rows) for i in range(FEATURES_KS)]
    refs = [np.sort(rng.normal(size=REFERENCE_ROWS)) for _ in range(FEATURES_KS)]

    def ours() -> list[float]:
        return [
            stats.ks_2samp_sorted(r, stats.sort_present(w)[0])[0]
            for r, w in zip(refs, windows, strict=True)
        ]

    def scipys() -> list[float]:
        return [float(sps.ks_2samp(r, w).statistic) for r, w in zip(refs, windows, strict=True)]

    t_ours, t_scipy = [], []
    for _ in range(repeats):
        for fn, out in ((ours, t_ours), (scipys, t_scipy)):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    diff = max(abs(a - b) for a, b in zip(ours(), scipys(), strict=True))
    ours_s, scipy_s = statistics.median(t_ours), statistics.median(t_scipy)
    return {
        "ks_features": FEATURES_KS,
        "ks_rows": rows,
        "ks_ours_s": round(ours_s, 4),
        "ks_scipy_s": round(scipy_s, 4),
        "ks_speedup": round(scipy_s / ours_s, 2),
        "ks_max_abs_diff": diff,
    }


def _put_tables(platform: Platform, schema, tables) -> None:
    def put(table) -> None:
        first = table.column("time")[0].as_py()
        key = capture.batch_key(
            platform, schema.project, "prod", schema.version, first, capture.new_batch_id()
        )
        capture.put_batch(platform, key, table)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, tables))


def _jsonl_read(platform: Platform, keys: list[str], schema: capture.CaptureSchema) -> int:
    """What a reader of the same records as zstd JSON lines would do at its fastest: get,
    decompress and parse each file with Arrow's JSON reader (C++) against the layout's
    types, the drift job's columns only, one file per pool thread as ``read_window``."""
    s3 = aws.client("s3")
    arrow = schema.arrow_schema
    output = pa.struct([arrow.field("output").type.field("prediction")])
    explicit = pa.schema([arrow.field("time"), arrow.field("input"), pa.field("output", output)])

    def one(key: str) -> pa.Table:
        body = s3.get_object(Bucket=platform.artifact_bucket, Key=key)["Body"].read()
        text = pa.input_stream(pa.BufferReader(body), compression="zstd").read()
        return pj.read_json(
            pa.BufferReader(text),
            read_options=pj.ReadOptions(use_threads=False, block_size=len(text) + 1),
            parse_options=pj.ParseOptions(
                explicit_schema=explicit, unexpected_field_behavior="ignore"
            ),
        )

    with ThreadPoolExecutor(capture.READ_WORKERS) as pool:
        table = pa.concat_tables(pool.map(one, keys))
    arrays = [pc.struct_field(table.column("input"), f.name).to_numpy() for f in schema.features]
    return len(arrays[0])


def _jsonl(part: pa.Table) -> bytes:
    """A table of the layout as JSON lines (``time`` in ISO 8601), zstd level 1."""
    rows = part.to_pylist()
    for row in rows:
        row["time"] = row["time"].strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    text = "".join(json.dumps(row) + "\n" for row in rows).encode()
    return pa.Codec("zstd", compression_level=1).compress(text, asbytes=True)


def bench_job(rows: int, format_rows: int, work: Path) -> dict:
    port = local_aws.free_port()
    env = local_aws.local_env(port)
    os.environ.update(env)
    for k in ("AWS_PROFILE", "MLOPS_PLATFORM", "MLOPS_ARTIFACT_BUCKET"):
        os.environ.pop(k, None)
    server = local_aws.start_server(port, log_path=work / "moto.log")
    try:
        platform = PlatformSettings.load().names()
        local_aws.bootstrap(platform)
        features = schema_features(numeric=20)
        manifest = publish_version(work, features)
        schema = capture_schema(manifest)
        end = datetime.now(UTC).replace(microsecond=0)
        start = end - timedelta(hours=2)
        span = timedelta(minutes=110)
        cols = columns(features, rows, seed=1, shift={"x7": 0.5})
        table = window_table(schema, cols, start + timedelta(minutes=5), span)
        del cols
        t0 = time.perf_counter()
        _put_tables(platform, schema, [table.slice(i, BATCH) for i in range(0, rows, BATCH)])
        setup_s = time.perf_counter() - t0

        job_env = {
            **os.environ,
            "MLOPS_PROJECT": PROJECT,
            "MLOPS_ENV": "prod",
            "MLOPS_DRIFT_WINDOW": "2h",
            # One drifted feature of 22 is drift here, so the job exits 1.
            "MLOPS_DRIFT_DRIFT_SHARE": "0.04",
            "MLOPS_LOG_FORMAT": "json",
        }
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "monitoring"],
            env=job_env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        out, err = proc.communicate()
        wall = time.perf_counter() - t0
        # communicate() reaped the job: it is the only child waited for (the endpoint is
        # still running), so RUSAGE_CHILDREN's peak is the job's.
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        if proc.returncode not in (0, 1):
            raise SystemExit(f"the job failed ({proc.returncode}):\n{err[-3000:]}")
        drifted = [line for line in out.splitlines() if line.startswith(("drift:", "no drift:"))]
        logs = {}
        for line in err.splitlines():
            if line.startswith("{"):
                event = json.loads(line)
                logs[event.get("event")] = event
        phases = {
            "job_read_s": logs.get("window read", {}).get("seconds"),
            "job_compute_s": logs.get("drift checked", {}).get("compute_seconds"),
            "job_write_s": logs.get("drift checked", {}).get("write_seconds"),
        }

        # The capture format: the same records as Parquet and as zstd JSON lines.
        names = [f.name for f in features]
        sub = table.slice(0, format_rows)
        fmt_schema = capture.CaptureSchema(PROJECT, manifest.version, tuple(features))
        fmt_env = "fmt"
        keys_jsonl = []
        jsonl_bytes = parquet_bytes = 0
        s3 = aws.client("s3")
        for i in range(0, format_rows, BATCH):
            part = sub.slice(i, BATCH)
            key = f"{PROJECT}/bench-jsonl/{i:08d}.jsonl.zst"
            lines = _jsonl(part)
            s3.put_object(Bucket=platform.artifact_bucket, Key=key, Body=lines)
            keys_jsonl.append(key)
            jsonl_bytes += len(lines)
            pkey = capture.batch_key(
                platform,
                PROJECT,
                fmt_env,
                manifest.version,
                part.column("time")[0].as_py(),
                f"{i:08d}",
            )
            parquet_bytes += capture.put_batch(platform, pkey, part)
        t0 = time.perf_counter()
        window = capture.read_window(
            platform, fmt_schema, fmt_env, start, end, capture.DRIFT_COLUMNS
        )
        arrays = [window.input_column(n).to_numpy() for n in names]
        parquet_s = time.perf_counter() - t0
        assert len(arrays[0]) == format_rows
        t0 = time.perf_counter()
        assert _jsonl_read(platform, keys_jsonl, fmt_schema) == format_rows
        jsonl_s = time.perf_counter() - t0
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {
        "job_rows": rows,
        "job_features": len(features),
        "job_files": -(-rows // BATCH),
        "job_wall_s": round(wall, 2),
        **phases,
        "job_peak_rss_mib": round(peak_mib, 1),
        "job_exit_code": proc.returncode,
        "job_summary": drifted[0].strip() if drifted else "",
        "setup_put_s": round(setup_s, 1),
        "format_rows": format_rows,
        "read_parquet_s": round(parquet_s, 3),
        "read_jsonl_zst_s": round(jsonl_s, 3),
        "read_parquet_speedup": round(jsonl_s / parquet_s, 2),
        "stored_bytes_per_record": {
            "parquet": round(parquet_bytes / format_rows, 1),
            "jsonl_zst": round(jsonl_bytes / format_rows, 1),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--format-rows", type=int, default=100_000)
    args = parser.parse_args()
    result: dict = {
        "benchmark": "drift",
        "python": _platform.python_version(),
        "cpus": os.cpu_count(),
        # Other work on the machine slows every figure alike; the ratios stand.
        "load_avg_1m_start": round(os.getloadavg()[0], 2),
    }
    result |= bench_ks(args.rows, args.repeats)
    with tempfile.TemporaryDirectory(prefix="bench-drift-") as tmp:
        result |= bench_job(args.rows, min(args.format_rows, args.rows), Path(tmp))
    result["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    result["goals"] = {
        "ks_speedup_ge_5": result["ks_speedup"] >= 5,
        "ks_equal_1e-12": result["ks_max_abs_diff"] <= 1e-12,
        "job_le_10s": result["job_wall_s"] <= 10,
        "job_le_1gib": result["job_peak_rss_mib"] <= 1024,
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
