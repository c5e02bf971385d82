"""The HTTP surface: health, readiness, predictions, validation errors, request ids, metrics."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from serving.synthetic import FUELS, records


def test_health_and_ready_name_the_loaded_version(make_model, serve):
    folder, manifest = make_model()
    client = serve(model_uri=str(folder))
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200
    body = ready.json()
    assert body["model_version"] == manifest.version
    assert body["model_sha256"] == manifest.model_sha256
    assert body["project"] == manifest.project


def test_single_and_batch_predictions_equal_the_pipeline(make_model, serve, reference):
    folder, manifest = make_model()
    client = serve(model_uri=str(folder))
    recs = records(25, seed=7)
    want = reference(folder, manifest, recs)

    batch = client.post("/predict", json=recs)
    assert batch.status_code == 200, batch.text
    assert batch.json()["predictions"] == want
    assert batch.json()["model_version"] == manifest.version

    single = client.post("/predict", json=recs[3])
    assert single.status_code == 200
    assert single.json()["predictions"] == [want[3]]  # a list, even for one record

    wrapped = client.post("/predict", json={"instances": recs[:4]})
    assert wrapped.json()["predictions"] == want[:4]


def test_optional_feature_may_be_missing_or_null(make_model, serve, reference):
    folder, manifest = make_model()
    client = serve(model_uri=str(folder))
    rec = {"mileage": 50_000, "year": 2015, "fuel": "diesel"}
    want = reference(folder, manifest, [rec])
    assert client.post("/predict", json=rec).json()["predictions"] == want
    assert client.post("/predict", json={**rec, "engine_size": None}).json()["predictions"] == want


def _errors(response) -> dict[tuple, str]:
    assert response.status_code == 422, response.text
    return {tuple(e["loc"]): e["type"] for e in response.json()["detail"]}


GOOD = {"mileage": 42_000.5, "year": 2018, "fuel": "petrol", "engine_size": 1.4}


@pytest.mark.parametrize(
    ("body", "loc", "error_type"),
    [
        ({k: v for k, v in GOOD.items() if k != "year"}, ("body", "year"), "missing"),
        ({**GOOD, "year": "2018"}, ("body", "year"), "int_type"),
        ({**GOOD, "year": 2018.5}, ("body", "year"), "int_type"),
        ({**GOOD, "mileage": "far"}, ("body", "mileage"), "float_type"),
        ({**GOOD, "mileage": True}, ("body", "mileage"), "float_type"),
        ({**GOOD, "mileage": -1}, ("body", "mileage"), "greater_than_equal"),
        ({**GOOD, "year": 2031}, ("body", "year"), "less_than_equal"),
        ({**GOOD, "engine_size": 11}, ("body", "engine_size"), "less_than_equal"),
        ({**GOOD, "fuel": "coal"}, ("body", "fuel"), "literal_error"),
        ({**GOOD, "colour": "red"}, ("body", "colour"), "extra_forbidden"),
        ([GOOD, {**GOOD, "fuel": "steam"}], ("body", 1, "fuel"), "literal_error"),
        (
            {"instances": [GOOD, {**GOOD, "year": None}]},
            ("body", "instances", 1, "year"),
            "int_type",
        ),
        ([], ("body",), "too_short"),
    ],
)
def test_bad_input_gets_422_naming_the_field(model_dir, serve, body, loc, error_type):
    client = serve(model_uri=str(model_dir))
    assert _errors(client.post("/predict", json=body)).get(loc) == error_type


def test_misspelled_field_names_both_the_typo_and_the_missing_field(model_dir, serve):
    client = serve(model_uri=str(model_dir))
    body = {k: v for k, v in GOOD.items() if k != "mileage"} | {"milage": 42_000}
    errors = _errors(client.post("/predict", json=body))
    assert errors == {("body", "milage"): "extra_forbidden", ("body", "mileage"): "missing"}


def test_unknown_category_error_lists_the_allowed_values(model_dir, serve):
    client = serve(model_uri=str(model_dir))
    detail = client.post("/predict", json={**GOOD, "fuel": "coal"}).json()["detail"]
    assert all(f"'{fuel}'" in detail[0]["msg"] for fuel in FUELS)


def test_malformed_json_and_oversized_batch(model_dir, serve):
    client = serve(model_uri=str(model_dir), max_batch=3)
    bad = client.post(
        "/predict", content=b'{"mileage": ', headers={"content-type": "application/json"}
    )
    assert _errors(bad) == {("body",): "json_invalid"}
    assert _errors(client.post("/predict", json=[GOOD] * 4)) == {("body",): "too_long"}
    assert client.post("/predict", json=[GOOD] * 3).status_code == 200


def test_request_id_is_honoured_or_generated_and_echoed(model_dir, serve):
    client = serve(model_uri=str(model_dir))
    given = client.post("/predict", json=GOOD, headers={"X-Request-ID": "req-123"})
    assert given.headers["x-request-id"] == "req-123"
    assert given.json()["request_id"] == "req-123"
    made = client.post("/predict", json=GOOD)
    assert made.headers["x-request-id"] == made.json()["request_id"]
    assert len(made.json()["request_id"]) == 32
    other = client.post("/predict", json=GOOD)
    assert other.json()["request_id"] != made.json()["request_id"]
    # Also on errors and other routes.
    assert client.get("/health", headers={"X-Request-ID": "h-1"}).headers["x-request-id"] == "h-1"
    assert "x-request-id" in client.post("/predict", json={}).headers


def _samples(client) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def test_metrics_count_requests_predictions_and_name_the_model(make_model, serve):
    folder, manifest = make_model()
    client = serve(model_uri=str(folder))
    for _ in range(3):
        assert client.post("/predict", json=records(4)).status_code == 200
    assert client.post("/predict", json={"fuel": "coal"}).status_code == 422
    client.get("/nowhere")
    samples = _samples(client)

    def requests(route: str, method: str, status: str) -> float:
        labels = (("method", method), ("route", route), ("status", status))
        return samples.get(("mlops_serving_requests_total", labels), 0.0)

    assert requests("/predict", "POST", "200") == 3
    assert requests("/predict", "POST", "422") == 1
    assert requests("unmatched", "GET", "404") == 1
    latency = ("mlops_serving_request_duration_seconds_count", (("route", "/predict"),))
    assert samples[latency] == 4
    assert samples[("mlops_serving_prediction_value_count", ())] == 12
    assert samples[("mlops_serving_predicted_records_total", ())] == 12
    info = [labels for (name, labels) in samples if name == "mlops_serving_model_info"]
    assert dict(info[0])["version"] == manifest.version
    assert dict(info[0])["sha256"] == manifest.model_sha256
    assert samples[("mlops_serving_model_loaded", ())] == 1


def test_each_app_has_its_own_metrics(model_dir, serve):
    first = serve(model_uri=str(model_dir))
    second = serve(model_uri=str(model_dir))
    first.post("/predict", json=GOOD)
    first.post("/predict", json=GOOD)
    second.post("/predict", json=GOOD)
    key = (
        "mlops_serving_requests_total",
        (("method", "POST"), ("route", "/predict"), ("status", "200")),
    )
    assert _samples(first)[key] == 2
    assert _samples(second)[key] == 1


def test_openapi_documents_the_loaded_models_request_schema(model_dir, serve):
    schema = serve(model_uri=str(model_dir), max_batch=50).get("/openapi.json").json()
    record = schema["components"]["schemas"]["Record"]
    assert record["required"] == ["mileage", "year", "fuel"]
    assert record["additionalProperties"] is False
    assert record["properties"]["fuel"]["enum"] == FUELS
    assert record["properties"]["mileage"]["minimum"] == 0
    body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["anyOf"][1]["maxItems"] == 50
