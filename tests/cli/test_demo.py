"""`make demo`'s script, run as `make demo` runs it: the golden path must stay green."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


# The whole demo trains several models; on a loaded 2-core machine it can take minutes.
@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_demo_script_runs_the_golden_path_and_cleans_up(tmp_path):
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
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
    served = re.findall(r"-> price ([\d,]+) USD\s+\(model (\S+)\)", out)
    # CLI: v1, v2 after promotion, v1 after rollback; then through the controller: v2, v1.
    assert len(served) == 5, out
    versions = [v for _, v in served]
    v1, v2 = versions[0], versions[1]
    assert v1 != v2 and versions == [v1, v2, v1, v2, v1]
    prices = {v: p for p, v in served}
    assert all(prices[v] == p for p, v in served)  # one version, one answer
    assert out.count("applied: pointer and service name") == 2
    assert "rolled back" in out and "demo finished" in out
    # Everything it started is gone: its work folder (with the moto state file) too.
    assert list(tmp_path.iterdir()) == []
