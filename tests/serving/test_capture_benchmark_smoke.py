"""benchmarks/capture.py runs end to end at a tiny size and reports what it promises.

No timing thresholds here (those are the benchmark's to report); only that both services
answered, that every request the capturing one answered was captured (nothing dropped),
that the goal is judged from the figures it prints, that --diagnose's arms and
--control's uncaptured arm report without being counted as the on arm's, and that the
JSON line carries every documented key.
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
    "instances_per_arm",
    "http",
    "per_service_rps",
    "paired",
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
        [
            sys.executable,
            "benchmarks/capture.py",
            "--seconds",
            "0.5",
            "--rounds",
            "1",
            "--instances",
            "1",
            # A small batch: the warm-up waits for every capturing worker's first file.
            "--on-env",
            "MLOPS_CAPTURE_BATCH_RECORDS=300",
            "--diagnose",
            "--control",
        ],
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
    assert result["on_env"] == {"MLOPS_CAPTURE_BATCH_RECORDS": "300"}
    for side in ("off", "on"):
        for c in ("c1", "c8"):
            assert result["http"][side][c]["rps"] > 0
    assert set(result["per_service_rps"]) == {"off1", "on1", "control1", "discard1", "primed1"}
    cap = result["capture"]
    assert cap["answered"] > 0
    assert cap["captured_records"] == cap["answered"], cap
    assert cap["files"] >= 1 and not any(cap["dropped"].values())
    assert cap["all_captured"] is True
    # Every capturing worker wrote its first file in the warm-up, before any measurement.
    assert cap["files_after_warm_up"]["on1"] >= result["workers_per_service"] >= 1
    # The diagnostic arms wrote (primed) or counted (discard) their first file too, and
    # none of their records is counted as the on arm's (an env of their own: the count
    # above would be off by their warm-up otherwise).
    for arm in ("discard1", "primed1"):
        assert cap["files_after_warm_up"][arm] >= result["workers_per_service"]
    diagnosis = result["diagnosis"]
    assert set(diagnosis) == {"on", "discard", "primed"}
    # The control arm runs with capture off, under the on arm's env: had it captured, the
    # bucket would hold more records than the on arm answered (all_captured above).
    control = result["control"]["c8"]
    control_rps = result["per_service_rps"]["control1"]["c8"]
    assert control["throughput_cost_median"] == pytest.approx(
        1 - control_rps / result["per_service_rps"]["off1"]["c8"], abs=2e-3
    )
    assert control["throughput_cost_range"] == [control["throughput_cost_median"]] * 2
    on_c8 = result["http"]["on"]["c8"]
    assert diagnosis["on"]["c8"]["throughput_cost_median"] == pytest.approx(
        1 - on_c8["rps"] / result["http"]["off"]["c8"]["rps"], abs=1e-3
    )
    cost = result["throughput_cost"]["c8"]
    assert cost == pytest.approx(1 - result["ratios"]["c8_rps_on_vs_off"], abs=1e-4)
    # One round: its paired cost is the median, and the interval is that one point.
    paired = result["paired"]["c8"]
    off, on = result["http"]["off"]["c8"]["rps"], result["http"]["on"]["c8"]["rps"]
    assert paired["throughput_cost_median"] == pytest.approx(1 - on / off, abs=1e-3)
    assert paired["throughput_cost_ci90"] == [paired["throughput_cost_median"]] * 2
    goal = result["goal"]
    assert result["goal_met"] == (
        paired["throughput_cost_median"] <= goal["c8_throughput_cost_max"] and cap["all_captured"]
    )
    assert goal["shown"] == (result["goal_met"] and paired["throughput_cost_ci90"][1] <= 0.05)
