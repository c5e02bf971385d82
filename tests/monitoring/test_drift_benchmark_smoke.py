"""benchmarks/drift.py runs end to end at a small size and reports what it promises.

No timing thresholds (those are the benchmark's to report): that the job it runs found
the one shifted feature, that both capture formats were read back in full (the
benchmark asserts the row counts itself, and exits non-zero if they differ), and that
the goals are judged from the figures it prints.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_drift_benchmark_prints_one_line_of_its_figures():
    proc = subprocess.run(
        [sys.executable, "benchmarks/drift.py", "--rows", "20000", "--format-rows", "10000",
         "--repeats", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stdout[-2000:]
    result = json.loads(lines[0])
    assert result["benchmark"] == "drift"
    assert result["job_exit_code"] == 1 and "(x7)" in result["job_summary"]
    assert result["ks_max_abs_diff"] <= 1e-12
    assert result["format_rows"] == 10000
    assert result["read_parquet_s"] > 0 and result["read_jsonl_zst_s"] > 0
    # The ratio is of the unrounded times; the printed ones are rounded to the ms.
    ratio = result["read_jsonl_zst_s"] / result["read_parquet_s"]
    assert abs(result["read_parquet_speedup"] - ratio) <= 0.05 * ratio + 0.01
    stored = result["stored_bytes_per_record"]
    assert stored["parquet"] > 0 and stored["jsonl_zst"] > 0
    assert result["goals"] == {
        "ks_speedup_ge_5": result["ks_speedup"] >= 5,
        "ks_equal_1e-12": True,
        "job_le_10s": result["job_wall_s"] <= 10,
        "job_le_1gib": result["job_peak_rss_mib"] <= 1024,
    }
