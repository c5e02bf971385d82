"""benchmarks/reconcile.py runs end to end at a tiny size and reports what it promises.

No timing thresholds here (those are the benchmark's to report); only that the steady
pass makes no AWS write, that the naive baseline it is compared with really is the
costlier one in AWS reads and finds the converged state in sync, and that the JSON line
carries every documented key.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KEYS = {
    "deployments",
    "cold_converge_s",
    "steady_pass_s",
    "steady_writes",
    "reads_per_deployment",
    "change_latency_s",
    "change_latency_max_s",
    "change_latency_s_runs",
    "steady_pass_s_runs",
    "baseline_steady_pass_s",
    "baseline_steady_pass_s_runs",
    "baseline_reads_per_deployment",
    "steady_speedup",
    "reads_ratio",
    "goals",
}
GOALS = {
    "steady_pass_s<=10",
    "reads_per_deployment<=3",
    "change_latency_s<=2",
    "steady_writes==0",
}
REPEATS = 2


@pytest.mark.e2e
def test_reconcile_benchmark_at_five_deployments():
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "MLOPS_"))  # the script starts its own endpoint
    }
    args = ["--deployments", "5", "--changes", "1", "--repeats", str(REPEATS)]
    proc = subprocess.run(
        [sys.executable, "benchmarks/reconcile.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, "exactly one JSON line on stdout"
    result = json.loads(lines[0])
    assert set(result) >= KEYS
    assert result["deployments"] == 5
    assert result["degraded"] == 0
    assert result["cold_actions"] >= 15, "each deployment got a task definition, service, pointer"
    assert result["steady_writes"] == 0, result["steady_write_ops"]
    assert result["steady_status_writes"] == 0
    assert result["reads_per_deployment"] > 0
    # Every repeat is reported, for ours and for the baseline.
    assert len(result["steady_pass_s_runs"]) == REPEATS
    assert len(result["baseline_steady_pass_s_runs"]) == REPEATS
    assert len(result["change_latency_s_runs"]) == 1
    # The naive baseline reads every resource of every deployment itself: one pointer,
    # one service, one task definition, one registry manifest each, and writes nothing.
    ops = result["baseline_read_ops"]
    for op in ("GetParameter", "DescribeServices", "DescribeTaskDefinition", "GetObject"):
        assert ops.get(op) == 5, ops
    assert result["baseline_writes"] == 0
    assert result["baseline_drift"] == 0, "the converged state is in sync by the naive check too"
    assert result["baseline_reads_per_deployment"] >= result["reads_per_deployment"]
    assert result["reads_ratio"] >= 1
    assert set(result["goals"]) == GOALS
    assert result["goals"]["steady_writes==0"] is True
    assert result["goals"]["reads_per_deployment<=3"] == (result["reads_per_deployment"] <= 3)
