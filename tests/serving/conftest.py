"""Fixtures for the serving tests: small model version folders written like training does."""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mlops_core.artifacts import MODEL_FILE, Manifest
from mlops_core.features import FeatureEncoder
from mlops_core.modelformat import REGRESSION_ATOL_SCALE, REGRESSION_RTOL
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
