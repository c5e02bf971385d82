"""One process per core: the supervisor's workers share the port (SO_REUSEPORT) and
their metrics, a dead worker is replaced, and SIGTERM stops everything."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from serving.synthetic import records


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _predictions_total(url: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "mlops_serving_predicted_records_total":
                return sample.value
    return 0.0


def test_workers_share_the_port_and_the_metrics(model_dir, live_server):
    server = live_server(model_dir, MLOPS_WORKERS="2", MLOPS_ACCESS_LOG="false")
    deadline = time.monotonic() + 30
    while len(_children(server.proc.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    workers = _children(server.proc.pid)
    assert len(workers) == 2
    # Fresh connections are spread over both workers' sockets by the kernel.
    seen = set()
    for _ in range(60):
        with httpx.Client() as c:
            r = c.post(f"{server.url}/predict", json=records(1))
            assert r.status_code == 200
    for _ in range(40):
        with httpx.Client() as c:
            ready = c.get(f"{server.url}/ready")
            seen.add(ready.status_code)
    assert seen == {200}
    # Every scrape sums both workers, whichever answers it.
    totals = {_predictions_total(server.url) for _ in range(10)}
    assert totals == {60.0}

    # A worker that dies is replaced, and the service keeps answering.
    os.kill(workers[0], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = _children(server.proc.pid)
        if len(now) == 2 and workers[0] not in now:
            break
        time.sleep(0.1)
    assert len(_children(server.proc.pid)) == 2
    deadline = time.monotonic() + 30
    ok = 0
    while ok < 20 and time.monotonic() < deadline:
        try:
            with httpx.Client() as c:
                ok += c.get(f"{server.url}/ready").status_code == 200
        except httpx.TransportError:
            time.sleep(0.1)
    assert ok == 20

    # SIGTERM: the supervisor stops its workers and exits cleanly.
    children = _children(server.proc.pid)
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=30) == 0
    for pid in children:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()


def test_the_service_calls_aws_with_serving_limits(model_dir, monkeypatch):
    """Pointer reads and capture writes run with serving's own limits (short timeouts,
    few attempts, AWS_MAX_ATTEMPTS honoured), not the CLI's minutes of retries: a dead
    endpoint must cost a worker seconds while its health checks wait."""
    from mlops_core import aws
    from serving import server

    seen = []
    monkeypatch.setattr(
        server, "serve_worker", lambda settings, log_level: seen.append(aws.limits())
    )
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    try:
        server.serve(server.run_settings(model_dir=model_dir, workers=1))
    finally:
        aws.configure(aws.CLI)
    assert seen == [aws.CallLimits(connect_timeout=3, read_timeout=10, max_attempts=2)]
    assert aws.SERVING.worst_case() < aws.CLI.worst_case() / 4
