"""benchmarks/capture.py runs end to end at a tiny size and reports what it promises.

No timing thresholds here (those are the benchmark's to report); only that both services
answered, that every request the capturing one answered was captured (nothing dropped),
that the goal is judged from the figures it prints, and that the JSON line carries every
documented key.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KEYS = {
    "benchmark",
    "machine",
    "model",
    "load_generator",
    "seconds_per_run",
    "rounds",
    "http",
    "ratios",
    "throughput_cost",
    "p50_ms_added",
    "capture",
    "goal",
    "goal_met",
}


@pytest.mark.e2e
@pytest.mark.skipif(shutil.which("hey") is None, reason="the load generator hey is missing")
def test_capture_benchmark_at_one_short_round():
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "MLOPS_"))  # the script starts its own endpoint
    }
    proc = subprocess.run(
        [sys.executable, "benchmarks/capture.py", "--seconds", "0.5", "--rounds", "1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, "exactly one JSON line on stdout"
    result = json.loads(lines[0])
    assert set(result) >= KEYS
    assert result["benchmark"] == "capture" and result["rounds"] == 1
    for side in ("off", "on"):
        for c in ("c1", "c8"):
            assert result["http"][side][c]["rps"] > 0
    cap = result["capture"]
    assert cap["answered"] > 0
    assert cap["captured_records"] == cap["answered"], cap
    assert cap["files"] >= 1 and not any(cap["dropped"].values())
    assert cap["all_captured"] is True
    cost = result["throughput_cost"]["c8"]
    assert cost == pytest.approx(1 - result["ratios"]["c8_rps_on_vs_off"], abs=1e-4)
    assert result["goal_met"] == (cost <= result["goal"]["c8_throughput_cost_max"])
