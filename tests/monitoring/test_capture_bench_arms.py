"""benchmarks/capture.py --diagnose's arms (benchmarks/capture_arms/sitecustomize.py) do
what the benchmark's figures say they do: ``primed`` stops sampling once the worker has
written a file, ``discard`` buffers and drops without writing; both are applied when
serving imports its capture module, in a fresh interpreter, and nowhere else."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_capture_writer import schema, value, window, writer  # noqa: F401 - fixture

from serving.capture import CaptureWriter

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "benchmarks" / "capture_arms"
BODY = b'{"x0": 1.5, "x1": 2, "items": 3, "color": "red"}'


def _arms(monkeypatch):
    """The module, with every CaptureWriter attribute it may replace restored after."""
    for name in ("sample", "_write_table", "_write_bodies_elsewhere"):
        monkeypatch.setattr(CaptureWriter, name, getattr(CaptureWriter, name))
    spec = importlib.util.spec_from_file_location("capture_arms_site", SITE / "sitecustomize.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.delenv("MLOPS_BENCH_CAPTURE_ARM", raising=False)
    spec.loader.exec_module(module)
    return module


def test_primed_stops_sampling_after_the_first_file(monkeypatch, platform, schema):  # noqa: F811
    _arms(monkeypatch).apply("primed")
    w, registry = writer(platform)
    w.start()
    assert w.sample()
    w.submit_body(schema, BODY, 1.0, request_id="r-1")
    assert w.flush() == 1
    assert not w.sample()
    w.close()
    assert window(platform, schema).rows == 1


def test_discard_buffers_and_writes_nothing(monkeypatch, platform, schema):  # noqa: F811
    _arms(monkeypatch).apply("discard")
    w, registry = writer(platform)
    w.start()
    for i in range(3):
        w.submit_body(schema, BODY, float(i), request_id=f"r-{i}")
    assert w.flush() == 3
    assert value(registry, "mlops_serving_capture_files_total") == 1
    assert w.sample()  # still sampling
    w.close()
    assert window(platform, schema).rows == 0


def test_an_unknown_arm_is_refused(monkeypatch):
    with pytest.raises(ValueError, match="discard, primed"):
        _arms(monkeypatch).apply("everything")


def test_the_arm_is_applied_when_serving_imports_capture_and_not_before():
    code = (
        "import sys, json; before = 'prometheus_client' in sys.modules; "
        "from serving.capture import CaptureWriter as W; "
        "print(json.dumps([before, W.sample.__name__, W._write_bodies_elsewhere.__name__]))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SITE), str(ROOT)])}
    got = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "MLOPS_BENCH_CAPTURE_ARM": "primed"},
        capture_output=True, text=True, check=True, cwd=ROOT,
    )  # fmt: skip
    assert json.loads(got.stdout) == [
        False, "sample_until_primed", "_write_bodies_elsewhere_then_stop"
    ]  # fmt: skip
    plain = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert json.loads(plain.stdout) == [False, "sample", "_write_bodies_elsewhere"]
