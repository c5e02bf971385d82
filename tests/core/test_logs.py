"""Logging keeps working when the stream it was configured with goes away."""

from __future__ import annotations

import io
import json
import logging
import sys

from mlops_core import logs


def test_lines_follow_sys_stderr_even_after_the_first_stream_is_closed(monkeypatch):
    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    logs.configure(json=True)
    logs.get_logger().info("one", n=1)
    first.close()  # as pytest's capture does at the end of a test
    monkeypatch.setattr(sys, "stderr", second)
    logs.get_logger().info("two", n=2)
    logging.getLogger("uvicorn.error").warning("from %s", "stdlib")
    lines = [json.loads(line) for line in second.getvalue().splitlines()]
    assert [(line["event"], line.get("n")) for line in lines] == [("two", 2), ("from stdlib", None)]
    assert lines[1]["logger"] == "uvicorn.error" and lines[1]["level"] == "warning"
