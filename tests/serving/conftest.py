"""Fixtures for the serving tests: small model version folders written like training does."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pickle
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from mlops_core.artifacts import MODEL_FILE, Manifest
from mlops_core.features import FeatureEncoder
from mlops_core.modelformat import REGRESSION_ATOL_SCALE, REGRESSION_RTOL
from mlopsctl.local_aws import free_port
from serving.app import create_app
from serving.settings import ServingSettings
from serving.synthetic import write_model_folder

T0 = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)


@pytest.fixture
def make_model(tmp_path: Path) -> Callable[..., tuple[Path, Manifest]]:
    """Write a version folder; each call trains on a different seed, one minute later."""
    count = 0

    def make(**kwargs) -> tuple[Path, Manifest]:
        nonlocal count
        count += 1
        folder = tmp_path / f"model-{count}"
        kwargs.setdefault("seed", count)
        kwargs.setdefault("created_at", T0 + timedelta(minutes=count))
        return folder, write_model_folder(folder, **kwargs)

    return make


@pytest.fixture
def model_dir(make_model) -> Path:
    return make_model()[0]


@pytest.fixture
def reference() -> Callable[[Path, Manifest, list[dict]], list]:
    """What the scikit-learn pipeline itself predicts for some records, called directly
    (the test reads model.pkl; serving never does), as values that compare equal to
    serving's within the parity tolerance."""

    def predict(folder: Path, manifest: Manifest, recs: list[dict]) -> list:
        pipeline = pickle.loads((folder / MODEL_FILE).read_bytes())
        matrix = FeatureEncoder(manifest.features).encode_records(recs)
        out = pipeline.predict(matrix)
        if manifest.task == "classification":
            return out.tolist()
        atol = REGRESSION_ATOL_SCALE * 1e5  # the synthetic prices are below 1e5
        return [pytest.approx(v, rel=REGRESSION_RTOL, abs=atol) for v in out.tolist()]

    return predict


@pytest.fixture
def serve() -> Iterator[Callable[..., TestClient]]:
    """Start an app (lifespan included) for the given settings; closed after the test."""
    clients: list[TestClient] = []

    def start(**settings) -> TestClient:
        client = TestClient(create_app(ServingSettings(**settings)))
        client.__enter__()
        clients.append(client)
        return client

    yield start
    for client in reversed(clients):
        client.__exit__(None, None, None)


@dataclasses.dataclass
class LiveServer:
    url: str
    port: int
    log: Path
    proc: subprocess.Popen

    def log_events(self) -> list[dict]:
        out = []
        for line in self.log.read_text().splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """Start ``python -m serving`` (as the container runs it) on a free port; stopped
    after the test. Keyword arguments are environment variables."""
    started: list[subprocess.Popen] = []

    def start(model_dir: Path, **env: str) -> LiveServer:
        port = free_port()
        log = tmp_path / f"serving-{port}.log"
        environ = {
            **os.environ,
            "MODEL_URI": str(model_dir),
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "MLOPS_LOG_FORMAT": "json",
            "MLOPS_WORKERS": "1",
            **env,
        }
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "serving"], env=environ, stdout=out, stderr=out
            )
        started.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                    return LiveServer(url, port, log, proc)
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"the server did not become ready:\n{log.read_text()}")

    yield start
    for proc in started:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
