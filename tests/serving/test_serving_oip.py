"""The Open Inference Protocol (V2) endpoints in their real request/response shapes."""

from __future__ import annotations

import pytest

from serving.synthetic import records

ROWS = records(3, seed=5)


def _columns(rows: list[dict], nested: bool = False) -> list[dict]:
    types = {"mileage": "FP64", "year": "INT64", "fuel": "BYTES", "engine_size": "FP32"}
    out = []
    for name, datatype in types.items():
        values = [r.get(name) for r in rows]  # null: an optional feature left out
        shape = [len(values), 1] if nested else [len(values)]
        data = [[v] for v in values] if nested else values
        out.append({"name": name, "shape": shape, "datatype": datatype, "data": data})
    return out


@pytest.fixture
def client(make_model, serve):
    folder, manifest = make_model()
    return serve(model_uri=str(folder)), manifest


def test_health_and_metadata(client):
    c, manifest = client
    assert c.get("/v2/health/live").json() == {"live": True}
    assert c.get("/v2/health/ready").json() == {"ready": True}
    assert c.get("/v2").json()["version"] == "2"
    meta = c.get(f"/v2/models/{manifest.project}").json()
    assert meta["name"] == manifest.project and meta["versions"] == [manifest.version]
    assert meta["platform"].startswith("onnxruntime")
    assert [i["name"] for i in meta["inputs"]] == ["mileage", "year", "fuel", "engine_size"]
    assert meta["outputs"] == [{"name": "predict", "datatype": "FP32", "shape": [-1]}]
    assert (
        c.get(f"/v2/models/{manifest.project}/versions/{manifest.version}/ready").status_code == 200
    )
    assert c.get(f"/v2/models/{manifest.project}/ready").json()["ready"] is True


def test_unknown_model_or_version_is_404(client):
    c, manifest = client
    missing = c.get("/v2/models/other")
    assert missing.status_code == 404 and manifest.project in missing.json()["error"]
    assert c.get(f"/v2/models/{manifest.project}/versions/nope").status_code == 404
    assert c.post("/v2/models/other/infer", json={"inputs": []}).status_code == 404


@pytest.mark.parametrize("nested", [False, True], ids=["flat", "nested"])
def test_infer_equals_predict(client, nested):
    c, manifest = client
    want = c.post("/predict", json=ROWS).json()["predictions"]
    body = {"id": "req-7", "inputs": _columns(ROWS, nested)}
    response = c.post(f"/v2/models/{manifest.project}/infer", json=body)
    assert response.status_code == 200, response.text
    out = response.json()
    assert out["model_name"] == manifest.project and out["model_version"] == manifest.version
    assert out["id"] == "req-7"
    (predict,) = out["outputs"]
    assert predict == {"name": "predict", "shape": [3], "datatype": "FP32", "data": want}
    versioned = c.post(
        f"/v2/models/{manifest.project}/versions/{manifest.version}/infer", json=body
    )
    assert versioned.json()["outputs"] == out["outputs"]


@pytest.mark.parametrize(
    ("change", "where", "says"),
    [
        (lambda b: b["inputs"][0].update(name="milage"), "name", "unknown input"),
        (lambda b: b["inputs"][1].update(datatype="FP64"), "datatype", "INT"),
        (lambda b: b["inputs"][0].update(shape=[2]), "shape", "does not match"),
        (lambda b: b["inputs"][0]["data"].__setitem__(1, -5.0), "data", "greater than or equal"),
        (lambda b: b["inputs"][2]["data"].__setitem__(0, "coal"), "data", "petrol"),
        (lambda b: b.update(outputs=[{"name": "nope"}]), "outputs", "unknown output"),
        (lambda b: b.pop("inputs"), "inputs", "Field required"),
    ],
)
def test_bad_infer_requests_are_422_naming_the_input(client, change, where, says):
    c, manifest = client
    body = {"inputs": _columns(ROWS)}
    change(body)
    response = c.post(f"/v2/models/{manifest.project}/infer", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert where in error and says in error


def test_not_ready_is_503(tmp_path, serve):
    c = serve(model_uri=str(tmp_path / "nothing"))
    assert c.get("/v2/health/ready").status_code == 503
    assert c.get("/v2/health/live").status_code == 200
    assert c.get("/v2/models/x").status_code == 503
