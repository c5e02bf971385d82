"""schemathesis against the running service: generated requests from the service's own
OpenAPI document (every route, valid and invalid bodies) never get a server error, and
every answer's status code and content type are ones the document lists."""

from __future__ import annotations

import subprocess

import pytest
from factories import make_artifacts
from tools import find_tool


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_no_server_errors_for_generated_requests(tmp_path, live_server, task):
    schemathesis = find_tool("schemathesis")
    if schemathesis is None:
        pytest.skip("schemathesis is not installed (it is in the dev extra: make install)")
    make_artifacts(tmp_path / "m", task=task)
    server = live_server(tmp_path / "m", MLOPS_ACCESS_LOG="false")
    result = subprocess.run(
        [
            schemathesis,
            "run",
            f"{server.url}/openapi.json",
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance",
            "--phases",
            "coverage,fuzzing",
            "--max-examples",
            "25",
            "--seed",
            "1",
            "--workers",
            "1",
            "--request-timeout",
            "10",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=240,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    assert " passed" in out and "failed" not in out.split("SUMMARY")[-1]
    errors = [e for e in server.log_events() if e.get("level") in ("error", "critical")]
    assert errors == []
