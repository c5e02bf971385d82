"""Static checks of serving/Dockerfile (no Docker engine here) and the container entry."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from mlops_core.errors import InvalidInput
from mlopsctl.local_aws import free_port
from serving.server import DEV_POLL_SECONDS, run_settings
from serving.settings import DEFAULT_PORT, ServingSettings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "serving" / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())  # join continuation lines
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def _one(keyword: str) -> str:
    values = [rest for kw, rest in _instructions() if kw == keyword]
    assert len(values) == 1, f"expected one {keyword}, found {values}"
    return values[0]


def test_base_image_is_pinned_like_training():
    base = _one("FROM")
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", base), base
    training = (ROOT / "training" / "Dockerfile").read_text()
    assert f"FROM {base}" in training


def test_runs_as_a_non_root_user():
    user = [rest for kw, rest in _instructions() if kw == "USER"][-1]
    assert user.split(":")[0] not in ("root", "0")


def test_exposed_port_and_healthcheck_match_the_settings():
    assert _one("EXPOSE") == str(DEFAULT_PORT)
    assert ServingSettings(model_uri="x").port == DEFAULT_PORT
    health = _one("HEALTHCHECK")
    assert "/health" in health and "urllib" in health and "curl" not in health
    assert json.loads(_one("CMD")) == ["python", "-m", "serving"]


def test_copied_sources_exist():
    for kw, rest in _instructions():
        if kw == "COPY":
            *sources, _dest = rest.split()
            for src in sources:
                assert (ROOT / src).exists(), f"COPY source {src} missing"


def _entry(env: dict[str, str]) -> subprocess.Popen:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MODEL_", "MLOPS_"))}
    return subprocess.Popen(
        [sys.executable, "-m", "serving"],
        env={**clean, "MLOPS_LOG_FORMAT": "json", **env},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_container_entry_without_a_model_exits_with_the_reason():
    proc = _entry({})
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "MODEL_URI" in err and "Traceback" not in err


@pytest.mark.e2e
def test_container_entry_serves_over_http(model_dir):
    port = free_port()
    proc = _entry({"MODEL_URI": str(model_dir), "HOST": "127.0.0.1", "PORT": str(port)})
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.communicate()[1]
                assert time.monotonic() < deadline, "the service did not start"
                time.sleep(0.1)
        assert ready.status_code == 200
        response = httpx.post(
            f"http://127.0.0.1:{port}/predict",
            json={"mileage": 1000, "year": 2020, "fuel": "electric"},
            headers={"x-request-id": "entry-1"},
        )
        assert response.status_code == 200 and len(response.json()["predictions"]) == 1
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    events = {line["event"] for line in lines}
    assert {"model loaded", "request"} <= events
    assert any(line.get("request_id") == "entry-1" for line in lines)
    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal.
    assert "Application shutdown complete" in err
    assert proc.returncode in (0, -signal.SIGTERM)


def test_cli_run_settings(model_dir, monkeypatch):
    for var in ("MODEL_URI", "MODEL_SHA256", "MLOPS_PROJECT", "MLOPS_ENV"):
        monkeypatch.delenv(var, raising=False)
    local = run_settings("127.0.0.1", 9001, model_dir=model_dir)
    assert (local.model_uri, local.port, local.follows_pointer) == (str(model_dir), 9001, False)
    monkeypatch.setenv("MODEL_URI", "s3://left/over/")
    follow = run_settings(project="usedcar-price", env="dev")
    assert follow.follows_pointer and follow.pointer_poll_seconds == DEV_POLL_SECONDS
    assert (
        run_settings(project="usedcar-price", env="dev", poll_seconds=0).pointer_poll_seconds == 0
    )
    with pytest.raises(InvalidInput, match="not both"):
        run_settings(model_dir=model_dir, model_uri="s3://b/p/")
    monkeypatch.delenv("MODEL_URI")
    with pytest.raises(InvalidInput, match="MLOPS_ENV"):
        run_settings(project="usedcar-price")
    with pytest.raises(InvalidInput) as bad:
        run_settings(model_dir=model_dir, model_sha256="nope")
    assert bad.value.where == "MODEL_SHA256"
