"""benchmarks/reconcile.py runs end to end at a tiny size and reports what it promises.

No timing thresholds here (those are the benchmark's to report); only that the steady
pass makes no AWS write and that the JSON line carries every documented key.
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
}


@pytest.mark.e2e
def test_reconcile_benchmark_at_five_deployments():
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "MLOPS_"))  # the script starts its own endpoint
    }
    proc = subprocess.run(
        [sys.executable, "benchmarks/reconcile.py", "--deployments", "5", "--changes", "1"],
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
