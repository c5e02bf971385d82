"""Logging keeps working when the stream it was configured with goes away."""

from __future__ import annotations

import io
import json
import logging
import sys
import threading
import time

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


class _SlowStream:
    """A stream that yields to other threads inside every write, as a pipe can."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        time.sleep(0.001)
        self.parts.append(text)
        return len(text)

    def flush(self) -> None:
        pass


def test_lines_from_structlog_and_the_stdlib_in_two_threads_stay_whole(monkeypatch):
    stream = _SlowStream()
    monkeypatch.setattr(sys, "stderr", stream)
    logs.configure(json=True)

    def ours() -> None:
        for i in range(40):
            logs.get_logger().info("request", n=i)

    def theirs() -> None:
        for i in range(40):
            logging.getLogger("uvicorn.error").info("startup %d", i)

    threads = [threading.Thread(target=ours), threading.Thread(target=theirs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = "".join(stream.parts).splitlines()
    events = [json.loads(line)["event"] for line in lines]  # each line one JSON document
    assert sorted(events) == sorted(["request"] * 40 + [f"startup {i}" for i in range(40)])
