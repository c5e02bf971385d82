"""`make demo`'s script, run as `make demo` runs it: the golden path must stay green."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


# The whole demo trains two models and rolls out three versions; on a loaded 2-core
# machine it can take minutes.
@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_demo_reaches_ready_and_survives_a_broken_rollout_without_a_failed_request(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLOPS_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["TMPDIR"] = str(tmp_path)
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "demo.sh")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=840,
    )
    out, err = result.stdout, result.stderr
    assert result.returncode == 0, out[-4000:] + err[-4000:]
    # Ready through the controller, twice (v1, then v2 rolled out).
    assert out.count("usedcar-price-prod is Ready at") == 2
    assert len(re.findall(r"deploy -> Ready in [\d.]+ s", out)) == 2
    served = re.findall(r"-> price ([\d,]+) USD\s+\(model (\S+)\)", out)
    versions = [v for _, v in served]
    assert len(versions) == 3 and versions[0] != versions[1] == versions[2]  # v1, v2, v2
    # v3 failed its rollout: the circuit breaker and the controller rolled back to v2.
    assert "Degraded: RolloutFailed" in err
    assert "ECS deployment circuit breaker: tasks failed to start." in err
    assert f"restored {versions[1]}" in err
    assert f"service back on {versions[1]}" in out
    # The load through the load balancer never failed.
    (total, failed) = re.search(
        r"(\d+) requests through the load balancer, (\d+) failed", out
    ).groups()
    assert int(total) > 100 and int(failed) == 0
    answered = dict(
        (v, int(n)) for n, v in re.findall(r"^\s+(\d+) answered by (\S+)$", out, re.MULTILINE)
    )
    assert set(answered) == {versions[0], versions[1]}  # never by v3
    # The cost of the deployment it made: 2 tasks of 0.5 vCPU / 1 GB and a load balancer
    # in us-east-1 (moto has no Price List API: the shipped table, saying so).
    rows = [line for line in out.splitlines() if "usedcar-price-prod" in line and "$" in line]
    assert len(rows) == 1 and "$52.47" in rows[0], rows
    assert "prices: shipped price table taken" in out
    assert "monthly cost: $52.47 -> $88.51 (+36.04 USD/month)" in out
    assert "demo finished" in out
    # Everything it started is gone: its work folder (with the data plane's state) too.
    assert list(tmp_path.iterdir()) == []
