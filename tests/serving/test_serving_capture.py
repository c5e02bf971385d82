"""Inference capture in the live service, over real HTTP against the local endpoint: the
records of /predict and V2 infer land under capture/{env}/{version}/yyyy/mm/dd/hh/ and
the drift job's reader reads them; a hot swap splits them by version; a full buffer
drops and counts in /metrics and never fails a request."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from factories import make_artifacts
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from test_serving_pointer import PROJECT, _promote, _published, _wait_for_version

from mlops_core import capture
from mlops_core.naming import Platform
from serving.app import create_app
from serving.capture import CaptureSettings
from serving.settings import ServingSettings
from serving.synthetic import records


def _window(platform: Platform, manifest, env: str) -> capture.Window:
    now = datetime.now(UTC)
    schema = capture.schema_for(manifest)
    return capture.read_window(
        platform, schema, env, now - timedelta(hours=1), now + timedelta(minutes=1),
        capture.DRIFT_COLUMNS,
    )  # fmt: skip


def _metric(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def test_predict_and_v2_infer_are_captured_and_flushed_on_shutdown(
    aws_env, platform, make_model, live_server
):
    folder, manifest = make_model()
    server = live_server(
        folder,
        MLOPS_PROJECT=manifest.project,
        MLOPS_ENV="prod",
        MLOPS_CAPTURE_PERCENT="100",
        MLOPS_CAPTURE_FLUSH_SECONDS="60",  # only the shutdown flush writes them
    )
    recs = records(3, seed=11)
    with httpx.Client(base_url=server.url, timeout=10) as client:
        answer = client.post("/predict", json=recs, headers={"x-request-id": "req-1"})
        assert answer.status_code == 200
        predictions = answer.json()["predictions"]
        v2 = client.post(
            f"/v2/models/{manifest.project}/infer",
            json={
                "id": "v2-1",
                "inputs": [
                    {"name": name, "shape": [1], "datatype": _datatype(value), "data": [value]}
                    for name, value in recs[0].items()
                ],
            },
        )
        assert v2.status_code == 200, v2.text
        # Nothing is written yet (the batch is not full, the interval not over).
        assert _window(platform, manifest, "prod").rows == 0
    _stop(server)

    window = _window(platform, manifest, "prod")
    assert window.rows == 4
    keys = capture.list_window(
        platform, manifest.project, "prod", manifest.version,
        datetime.now(UTC) - timedelta(hours=1), datetime.now(UTC) + timedelta(minutes=1),
    )  # fmt: skip
    pattern = rf"^{manifest.project}/capture/prod/{manifest.version}/\d{{4}}/\d\d/\d\d/\d\d/"
    assert keys and all(re.match(pattern, k) for k in keys), keys
    got = capture.records(
        capture.read_window(
            platform, capture.schema_for(manifest), "prod",
            window.start, window.end,
        ).table
    )  # fmt: skip
    assert [r["request_id"] for r in got] == ["req-1"] * 3 + ["v2-1"]
    assert [r["input"] for r in got[:3]] == [
        {f.name: rec.get(f.name) for f in manifest.features} for rec in recs
    ]
    assert [r["output"]["prediction"] for r in got[:3]] == pytest.approx(predictions)
    assert {r["model_version"] for r in got} == {manifest.version}


def test_a_classifier_captures_its_probabilities_without_putting_them_in_the_answer(
    aws_env, platform, live_server, tmp_path
):
    folder = tmp_path / "classifier"
    manifest = make_artifacts(folder, task="classification")
    server = live_server(
        folder, MLOPS_PROJECT=manifest.project, MLOPS_ENV="prod", MLOPS_CAPTURE_PERCENT="100"
    )
    recs = [
        {"year": 2000 + i * 5, "odometer": 20000.0 * i, "make_encoded": i, "model_encoded": 1}
        for i in range(6)
    ]
    with httpx.Client(base_url=server.url, timeout=10) as client:
        plain = client.post("/predict", json=recs[:2])
        asked = client.post("/predict?probabilities=true", json=recs[2:4])
        # One-record bodies: buffered as bytes, their probability rows sent to the
        # writer process as one array.
        singles = [
            client.post("/predict", json=recs[4]),
            client.post("/predict?probabilities=true", json=recs[5]),
        ]
    assert plain.status_code == asked.status_code == 200
    assert [r.status_code for r in singles] == [200, 200]
    assert "probabilities" not in plain.json(), "the client did not ask for them"
    answered = asked.json()["probabilities"] + singles[1].json()["probabilities"]
    _stop(server)

    window = _window(platform, manifest, "prod")
    got = capture.records(
        capture.read_window(
            platform, capture.schema_for(manifest), "prod", window.start, window.end
        ).table
    )
    assert len(got) == 6
    labels = {str(label) for label in manifest.labels or ()}
    for r in got:
        assert r["output"]["probabilities"] is not None
        proba = dict(r["output"]["probabilities"])  # a Parquet map: (label, probability) pairs
        assert set(proba) == labels
        assert sum(proba.values()) == pytest.approx(1.0, abs=1e-5)
        assert r["output"]["prediction"] in labels | set(manifest.labels or ())
    by_year = {r["input"]["year"]: r for r in got}
    assert [
        dict(by_year[rec["year"]]["output"]["probabilities"]) for rec in recs[2:4] + recs[5:]
    ] == [pytest.approx(p) for p in answered]
    assert [by_year[rec["year"]]["output"]["prediction"] for rec in recs[4:]] == [
        singles[0].json()["predictions"][0],
        singles[1].json()["predictions"][0],
    ]


def _stop(server) -> None:
    """SIGTERM, as ECS stops a task; uvicorn runs the app's shutdown, then re-raises it."""
    server.proc.terminate()
    server.proc.wait(timeout=30)
    assert any(e.get("event") == "Application shutdown complete." for e in server.log_events())


def _datatype(value) -> str:
    if isinstance(value, str):
        return "BYTES"
    return "INT64" if isinstance(value, int) else "FP64"


def test_a_hot_swap_splits_the_records_by_version(aws_env, platform, make_model):
    _, first, uri1 = _published(make_model)
    _promote(first, uri1)
    app = create_app(
        ServingSettings(project=PROJECT, env="dev", pointer_poll_seconds=0.1),
        capture=CaptureSettings(percent=100, flush_seconds=60),
    )
    with TestClient(app) as client:
        assert client.post("/predict", json=records(2, seed=1)).status_code == 200
        _, second, uri2 = _published(make_model)
        _promote(second, uri2)
        _wait_for_version(client, second.version)
        assert client.post("/predict", json=records(5, seed=2)).status_code == 200
    # Closed with the app: both versions' records written, each under its own prefix.
    assert _window(platform, first, "dev").rows == 2
    assert _window(platform, second, "dev").rows == 5


def test_a_full_buffer_drops_and_counts_and_every_request_answers(
    aws_env, platform, make_model, live_server
):
    folder, manifest = make_model()
    server = live_server(
        folder,
        MLOPS_PROJECT=manifest.project,
        MLOPS_ENV="prod",
        MLOPS_CAPTURE_PERCENT="100",
        MLOPS_CAPTURE_BUFFER_RECORDS="10",
        MLOPS_CAPTURE_BATCH_RECORDS="1000",  # never full: nothing leaves the buffer
        MLOPS_CAPTURE_FLUSH_SECONDS="60",
    )
    with httpx.Client(base_url=server.url, timeout=10) as client:
        statuses = [client.post("/predict", json=records(4, seed=i)).status_code for i in range(5)]
        assert statuses == [200] * 5
        # The writer thread reports what is buffered within a second or so.
        deadline = time.monotonic() + 10
        while _metric(text := client.get("/metrics").text,
                      "mlops_serving_capture_buffered_records") != 8:  # fmt: skip
            assert time.monotonic() < deadline, text
            time.sleep(0.2)
    # 4 + 4 fit in 10; the other three requests' 12 records are dropped and counted.
    name = "mlops_serving_capture_dropped_records_total"
    assert _metric(text, name, reason="buffer_full") == 12
    assert _metric(text, "mlops_serving_capture_buffered_records") == 8
    _stop(server)
    assert _window(platform, manifest, "prod").rows == 8


def test_capture_without_an_env_is_off_and_serving_is_unaffected(make_model, live_server):
    folder, _ = make_model()
    server = live_server(folder, MLOPS_CAPTURE_PERCENT="100")
    answer = httpx.post(f"{server.url}/predict", json=records(1), timeout=10)
    assert answer.status_code == 200
    assert "mlops_serving_capture" not in httpx.get(f"{server.url}/metrics", timeout=10).text
    assert any(
        e.get("event") == "inference capture is off: the env is unknown"
        for e in server.log_events()
    )


def test_with_several_workers_metrics_count_each_captured_record_once(
    aws_env, platform, make_model, live_server
):
    """Each worker's writer process reports its counts to its worker, whose metrics
    /metrics sums over the workers: the records written are the records answered, not
    twice as many (the child's own counters kept out of the workers' directory)."""
    folder, manifest = make_model()
    server = live_server(
        folder,
        MLOPS_PROJECT=manifest.project,
        MLOPS_ENV="prod",
        MLOPS_WORKERS="2",
        MLOPS_CAPTURE_PERCENT="100",
        MLOPS_CAPTURE_BATCH_RECORDS="5",
        MLOPS_CAPTURE_FLUSH_SECONDS="1",
    )
    sent = 0
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for rec in records(40, seed=5):
            # A new connection each time: the kernel spreads them over both workers.
            answer = httpx.post(f"{server.url}/predict", json=rec, timeout=10)
            assert answer.status_code == 200
            sent += 1
        written, deadline = 0.0, time.monotonic() + 30
        while time.monotonic() < deadline:
            written = _metric(client.get("/metrics").text,
                              "mlops_serving_capture_written_records_total")  # fmt: skip
            if written >= sent:
                break
            time.sleep(0.2)
        time.sleep(1.5)  # a flush interval more: nothing else comes
        text = client.get("/metrics").text
    assert _metric(text, "mlops_serving_capture_written_records_total") == sent
    assert _window(platform, manifest, "prod").rows == sent
    _stop(server)
