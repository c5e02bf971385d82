"""Every mlopsctl command starts by importing the CLI: the heavy libraries that only some
commands use (training, serving, the drift job's statistics) load when those run."""

from __future__ import annotations

import subprocess
import sys

# Each of these takes from a few hundred milliseconds to over a second to import.
HEAVY = ("scipy", "sklearn", "onnxruntime", "skl2onnx", "pandas", "fastapi", "uvicorn", "kopf")


def test_the_cli_imports_no_heavy_library_until_a_command_needs_it():
    code = f"import sys, mlopsctl.cli; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == [], f"imported when mlopsctl starts: {out}"
