"""Following an env's pointer: start-up from the pointer, hot swap, refusal, rollback."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
from configured import env_platform
from structlog.testing import capture_logs

from mlops_core import aws
from mlops_core.artifacts import MODEL_FILE
from mlops_core.pointer import ModelPointer, PointerStore, now
from mlops_core.registry import Registry
from serving.loader import load_model
from serving.synthetic import records

PROJECT, ENV = "usedcar-price", "dev"
POLL = 0.1


def _promote(manifest, uri: str, reason: str = "test", pins=None) -> None:
    """Write the pointer as promote does: with the pins publication recorded."""
    if pins is None:
        pins = Registry(env_platform()).get_published(PROJECT, manifest.version).pins
    PointerStore(env_platform()).put(
        PROJECT,
        ENV,
        ModelPointer(
            version=manifest.version,
            uri=uri,
            sha256=manifest.model_sha256,
            promoted_at=now(),
            promoted_by="tests",
            reason=reason,
            pins=pins,
        ),
    )


def _published(make_model):
    folder, manifest = make_model()
    return folder, manifest, Registry(env_platform()).publish(folder).uri


def _wait_for_version(client, version: str, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get("/ready").json()
        if body.get("model_version") == version:
            return body
        time.sleep(0.05)
    raise AssertionError(f"still serving {body} after {timeout}s, wanted {version}")


def test_no_pointer_means_not_ready_with_a_hint(aws_env, serve):
    client = serve(project=PROJECT, env=ENV)
    ready = client.get("/ready")
    assert ready.status_code == 503
    assert "promote" in ready.json()["reason"]


def test_serves_the_version_the_pointer_names(aws_env, make_model, serve, reference):
    folder, manifest, uri = _published(make_model)
    _promote(manifest, uri)
    client = serve(project=PROJECT, env=ENV)
    assert client.get("/ready").json()["model_version"] == manifest.version
    recs = records(3)
    assert client.post("/predict", json=recs).json()["predictions"] == reference(
        folder, manifest, recs
    )


def test_pointer_and_pinned_sha256_must_agree(aws_env, make_model, serve):
    _, manifest, uri = _published(make_model)
    _promote(manifest, uri)
    client = serve(project=PROJECT, env=ENV, model_sha256="e" * 64)
    assert client.get("/ready").status_code == 503
    assert "MODEL_SHA256" in client.get("/ready").json()["reason"]


def test_promotion_refusal_and_rollback_are_followed(aws_env, platform, make_model, serve):
    _, first, first_uri = _published(make_model)
    _, second, second_uri = _published(make_model)
    _promote(first, first_uri)
    client = serve(project=PROJECT, env=ENV, pointer_poll_seconds=POLL)
    assert client.get("/ready").json()["model_version"] == first.version

    # Promotion: served within a few polls, and /predict answers from the new version.
    _promote(second, second_uri)
    _wait_for_version(client, second.version)
    assert client.post("/predict", json=records(1)).json()["model_version"] == second.version

    # A version whose stored model was replaced after publication is never swapped in.
    _, bad, bad_uri = _published(make_model)
    key = platform.version_prefix(PROJECT, bad.version) + MODEL_FILE
    # Tampered before the pointer names it (serving polls fast enough to load it between
    # the two writes otherwise), with the pins publication recorded before the tamper.
    pins = Registry(env_platform()).get_published(PROJECT, bad.version).pins
    aws.client("s3").put_object(Bucket=platform.artifact_bucket, Key=key, Body=b"tampered")
    with capture_logs() as logs:
        _promote(bad, bad_uri, pins=pins)
        deadline = time.monotonic() + 20
        while not client.get("/ready").json().get("last_error") and time.monotonic() < deadline:
            time.sleep(0.05)
    ready = client.get("/ready").json()
    assert ready["model_version"] == second.version  # still serving the good one
    assert MODEL_FILE in ready["last_error"]
    assert [e["reason"] for e in logs if e["event"] == "model refused"] == ["IntegrityFailed"]

    # Back to the live version: nothing to load, and the refusal is no longer reported.
    _promote(second, second_uri, reason="undo")
    deadline = time.monotonic() + 20
    while client.get("/ready").json().get("last_error") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "last_error" not in client.get("/ready").json()

    # Rollback: the pointer goes back to the first version, and so does serving.
    _promote(first, first_uri, reason="rollback")
    body = _wait_for_version(client, first.version)
    assert "last_error" not in body
    assert client.post("/predict", json=records(1)).json()["model_version"] == first.version


class _SwapDuringPredict:
    """A runtime that swaps the live model while a request is inside predict()."""

    def __init__(self, inner, swap):
        self.inner, self.swap = inner, swap
        self.format, self.platform = inner.format, inner.platform

    def predict(self, matrix: np.ndarray, *, probabilities: bool = False):
        self.swap()
        return self.inner.predict(matrix, probabilities=probabilities)


def test_request_in_flight_finishes_on_the_model_it_started_with(make_model, serve):
    first_dir, first = make_model()
    second_dir, second = make_model()
    client = serve(model_uri=str(first_dir))
    manager = client.app.state.models
    old, new = manager.current, load_model(str(second_dir), signing_key="")
    swapping = _SwapDuringPredict(old.runtime, lambda: manager.swap(new))
    manager.swap(dataclasses.replace(old, runtime=swapping))

    recs = records(4)

    def direct(model) -> list[float]:
        return model.runtime.predict(model.parser.encoder.encode_float32(recs)).values

    during = client.post("/predict", json=recs).json()
    assert during["model_version"] == first.version
    assert during["predictions"] == direct(old)
    after = client.post("/predict", json=recs).json()
    assert after["model_version"] == second.version
    assert after["predictions"] == direct(new)
    assert after["predictions"] != during["predictions"]
