"""`make demo`'s script, run as `make demo` runs it: the golden path must stay green."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.e2e
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
        timeout=600,
    )
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
    served = re.findall(r"-> price ([\d,]+) USD\s+\(model (\S+)\)", out)
    # v1, then v2 after promotion, then v1 again after the rollback.
    assert len(served) == 3, out
    (p1, v1), (p2, v2), (p3, v3) = served
    assert v1 != v2 and v3 == v1 and p3 == p1
    assert "rolled back" in out and "demo finished" in out
    # Everything it started is gone: its work folder (with the moto state file) too.
    assert list(tmp_path.iterdir()) == []
