"""Hostile input gets a 4xx naming what was wrong, never a 5xx, and a small answer."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest
from factories import make_artifacts
from structlog.testing import capture_logs

from serving.metrics import CONTENT_TYPE
from serving.schema import EXCERPT_CHARS, MAX_ERRORS

GOOD = {"year": 2019, "odometer": 25000.5, "make_encoded": 9, "model_encoded": 42}


@pytest.fixture
def client(tmp_path, serve):
    # The factory's schema has an unbounded number (odometer: min 0, no max).
    return serve(model_uri=str(make_artifacts(tmp_path / "m") and tmp_path / "m"))


def _post(client, raw: bytes, content_type: str = "application/json"):
    return client.post("/predict", content=raw, headers={"content-type": content_type})


def _only_error(response) -> dict:
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    return error


@pytest.mark.parametrize(
    ("token", "shown"), [("NaN", "NaN"), ("Infinity", "Infinity"), ("-Infinity", "-Infinity")]
)
def test_nan_and_infinity_are_422_naming_the_field(client, token, shown):
    raw = json.dumps(GOOD).replace("25000.5", token).encode()
    error = _only_error(_post(client, raw))
    assert error["loc"] == ["body", "odometer"]
    assert error["type"] == "finite_number"
    assert error["input"] == shown


def test_a_number_too_large_for_a_double_is_422_not_500(client):
    error = _only_error(_post(client, json.dumps(GOOD).replace("25000.5", "1e400").encode()))
    assert error["loc"] == ["body", "odometer"]


@pytest.mark.parametrize("value", ["1e308", "3.5e38", "1e39"])
def test_a_value_that_overflows_float32_is_422_with_the_limit(client, value):
    body = json.dumps(GOOD).replace("25000.5", value).encode()
    error = _only_error(_post(client, body))
    assert error["loc"] == ["body", "odometer"]
    assert "float32" in error["msg"] and "3.402823e+38" in error["msg"]


def test_an_integer_too_large_for_float32_is_422(client):
    error = _only_error(_post(client, json.dumps({**GOOD, "year": 10**40}).encode()))
    assert error["loc"] == ["body", "year"]


@pytest.mark.parametrize("value", [2**53 + 1, 10**20, 2**63])
def test_an_integer_beyond_what_a_double_holds_is_422(client, value):
    # make_encoded has no max: only the integer limit bounds it (captured, a bigger one
    # could not be converted with its batch, nor read by the drift job).
    error = _only_error(_post(client, json.dumps({**GOOD, "make_encoded": value}).encode()))
    assert error["loc"] == ["body", "make_encoded"]
    assert "2**53" in error["msg"]
    response = _post(client, json.dumps({**GOOD, "make_encoded": 2**53}).encode())
    assert response.status_code == 200, response.text


def test_largest_float32_is_still_accepted(client):
    # odometer: min 0, no max; float32's largest value is a valid, finite input.
    response = _post(client, json.dumps({**GOOD, "odometer": 3.4028234663852886e38}).encode())
    assert response.status_code == 200, response.text


def test_deep_nesting_is_refused_before_parsing_with_the_limit(client):
    response = _post(client, b"[" * 50_000 + b"]" * 50_000)
    error = _only_error(response)
    assert error["type"] == "too_deep" and "limit is 32" in error["msg"]
    # Brackets inside strings are not nesting.
    shallow = json.dumps({**GOOD, "condition": "[" * 100}).encode()
    assert _only_error(_post(client, shallow))["loc"] == ["body", "condition"]


def test_a_lone_surrogate_is_invalid_json(client):
    raw = json.dumps(GOOD)[:-1].encode() + b', "condition": "\\ud800"}'
    assert _only_error(_post(client, raw))["type"] == "json_invalid"


def test_the_422_echoes_only_a_bounded_excerpt(client):
    huge = "x" * 500_000  # under the body limit: refused by validation
    response = _post(client, json.dumps({**GOOD, "condition": huge}).encode())
    error = _only_error(response)
    assert len(response.content) < 2_000
    assert error["input"] == "x" * EXCERPT_CHARS + "…"
    key = _post(client, json.dumps({**GOOD, "k" * 100_000: 1}).encode())
    assert key.status_code == 422 and len(key.content) < 2_000


def test_errors_are_capped(client):
    response = _post(client, json.dumps([{"year": "x"}] * 200).encode())
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert len(detail) == MAX_ERRORS + 1
    assert detail[-1]["type"] == "too_many_errors"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
def test_a_body_not_declared_as_json_is_415(client, content_type):
    response = client.post(
        "/predict",
        content=json.dumps(GOOD).encode(),
        headers={"content-type": content_type} if content_type else {},
    )
    assert response.status_code == 415
    assert "application/json" in response.json()["detail"]
    ok = _post(client, json.dumps(GOOD).encode(), "application/json; charset=utf-8")
    assert ok.status_code == 200


def test_a_declared_oversized_body_is_413_with_the_limit(tmp_path, serve):
    make_artifacts(tmp_path / "m")
    client = serve(model_uri=str(tmp_path / "m"), max_body_bytes=4096)
    response = _post(client, json.dumps([GOOD] * 100).encode())
    assert response.status_code == 413
    assert "4096" in response.json()["detail"]


def test_a_chunked_oversized_body_is_413_while_reading(tmp_path, serve):
    make_artifacts(tmp_path / "m")
    client = serve(model_uri=str(tmp_path / "m"), max_body_bytes=4096)
    sent = []

    def chunks():
        for _ in range(1000):  # 1 MB in all, if it were read to the end
            sent.append(1)
            yield b" " * 1024

    response = client.post(
        "/predict", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert "4096" in response.json()["detail"]


def test_server_errors_never_happen_for_these_inputs(client):
    bodies = [
        b"",
        b"null",
        b"1",
        b'"x"',
        b"[]",
        b"{}",
        b"[[]]",
        b'{"instances": 3}',
        b'{"instances": [], "x": 1}',
        b"\xff\xfe",
        b'{"year": 1e999999}',
        b"[" * 40,
    ]
    for raw in bodies:  # fmt: skip
        assert _post(client, raw).status_code == 422, raw


# -- against a running server: slow and vanishing clients --------------------------------


def _connect(server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def test_slow_clients_are_cut_off_after_the_read_timeout(tmp_path, live_server):
    make_artifacts(tmp_path / "m")
    server = live_server(tmp_path / "m", MLOPS_READ_TIMEOUT_SECONDS="1")
    silent = _connect(server)  # connects and sends nothing
    dripping = _connect(server)
    dripping.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
    started = time.monotonic()
    for sock in (silent, dripping):
        sock.settimeout(10)
        assert sock.recv(1024) == b""  # closed by the server
    assert time.monotonic() - started < 8
    # Meanwhile, and afterwards, others are served.
    assert httpx.post(f"{server.url}/predict", json=GOOD).status_code == 200
    assert any(e.get("event") == "closed a slow client" for e in server.log_events())


def test_a_client_disconnect_is_not_an_error(tmp_path, live_server):
    make_artifacts(tmp_path / "m")
    server = live_server(tmp_path / "m")
    sock = _connect(server)
    sock.sendall(
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 1000\r\n\r\n{"year": 2019'
    )
    time.sleep(0.3)
    sock.close()  # gone before the body is complete
    time.sleep(0.5)
    assert httpx.post(f"{server.url}/predict", json=GOOD).status_code == 200
    events = server.log_events()
    assert any("disconnected" in e.get("event", "") for e in events)
    bad = [e for e in events if e.get("level") in ("error", "critical") or "exception" in e]
    assert bad == []


def test_openapi_lists_the_error_responses_and_the_metrics_media_type(client):
    schema = client.get("/openapi.json").json()
    predict = schema["paths"]["/predict"]["post"]["responses"]
    assert {"200", "413", "415", "422", "503"} <= set(predict)
    infer = schema["paths"]["/v2/models/{name}/infer"]["post"]["responses"]
    assert {"200", "413", "415", "422", "503"} <= set(infer)
    metrics = schema["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == [CONTENT_TYPE]
    assert CONTENT_TYPE.startswith("text/plain; version=")
    assert client.get("/metrics").headers["content-type"] == CONTENT_TYPE


def test_unhandled_errors_would_be_logged_but_none_occur(client):
    with capture_logs() as logs:
        for raw in (b"[" * 10_000, b'{"odometer": NaN}', b"\x00" * 100):
            assert _post(client, raw).status_code == 422
    assert [e for e in logs if e["log_level"] in ("error", "critical")] == []
