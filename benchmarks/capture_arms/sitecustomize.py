"""Diagnostic arms of benchmarks/capture.py, applied to the services it starts.

``benchmarks/capture.py --diagnose`` starts two more arms of services with this folder on
their ``PYTHONPATH`` and ``MLOPS_BENCH_CAPTURE_ARM`` set; Python imports
``sitecustomize`` at start-up, before ``python -m serving`` imports anything; the change
below is made when serving imports :mod:`serving.capture` (not here: prometheus_client
must not be imported before the server sets its multiprocess directory), in the process
its workers are forked from. Both arms run at
100 % and differ from the **on** arm in one thing each, to split capture's cost:

* ``discard``: requests are sampled and buffered as in the on arm, and the writer
  thread takes every batch and drops it (counted as written, one "file" per batch)
  instead of handing it to the writer process to convert, encode and write: what the
  request path and the buffer cost on their own;
* ``primed``: capture as in the on arm until the worker has written its first file
  (the benchmark's warm-up sees to that in every worker), then nothing more is sampled:
  what a worker that has converted and written captured records costs afterwards, with
  no capture work left to do.

Nothing here is part of the product; without the variable this module does nothing.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys

ARM_VARIABLE = "MLOPS_BENCH_CAPTURE_ARM"
ARMS = ("discard", "primed")


def apply(arm: str) -> None:
    """Change :class:`serving.capture.CaptureWriter` for ``arm`` (one of :data:`ARMS`)."""
    from serving.capture import CaptureWriter

    if arm == "discard":

        def discard(self: CaptureWriter, batch, deadline=None) -> int:  # _write_bodies_elsewhere
            n = len(batch.bodies)
            self.metrics.written.inc(n)
            self.metrics.files.inc()
            return n

        CaptureWriter._write_bodies_elsewhere = discard  # type: ignore[method-assign]
    elif arm == "primed":
        sample = CaptureWriter.sample

        def then_stop(write):  # bodies (to the writer process) and rows (here) alike
            def wrapped(self: CaptureWriter, *args) -> int:
                written = write(self, *args)
                if written:
                    self._bench_primed = True  # type: ignore[attr-defined]
                return written

            wrapped.__name__ = f"{write.__name__}_then_stop"
            return wrapped

        def sample_until_primed(self: CaptureWriter) -> bool:
            return not getattr(self, "_bench_primed", False) and sample(self)

        CaptureWriter._write_table = then_stop(CaptureWriter._write_table)  # type: ignore[method-assign]
        CaptureWriter._write_bodies_elsewhere = then_stop(  # type: ignore[method-assign]
            CaptureWriter._write_bodies_elsewhere
        )
        CaptureWriter.sample = sample_until_primed  # type: ignore[method-assign]
    else:
        raise ValueError(f"{ARM_VARIABLE}={arm!r}: expected one of {', '.join(ARMS)}")


class _AfterImport(importlib.abc.MetaPathFinder):
    """Applies the arm right after :mod:`serving.capture` is executed."""

    def find_spec(self, name, path, target=None):
        if name != "serving.capture":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        loader, arm = spec.loader, os.environ[ARM_VARIABLE]

        class Loader(importlib.abc.Loader):
            def create_module(self, spec):
                return loader.create_module(spec)

            def exec_module(self, module):
                loader.exec_module(module)
                apply(arm)

        spec.loader = Loader()
        return spec


if os.environ.get(ARM_VARIABLE):
    if os.environ[ARM_VARIABLE] not in ARMS:
        raise SystemExit(f"{ARM_VARIABLE}={os.environ[ARM_VARIABLE]!r}: expected one of {ARMS}")
    sys.meta_path.insert(0, _AfterImport())
