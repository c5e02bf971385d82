"""Loading a model: every refusal happens before unpickling and keeps the service unready."""

from __future__ import annotations

import pickle
import time

import pytest
import sklearn
from configured import env_platform
from structlog.testing import capture_logs

import serving.app
from mlops_core import aws
from mlops_core.artifacts import MANIFEST, MODEL_FILE, Manifest
from mlops_core.errors import IntegrityError, InvalidInput
from mlops_core.registry import Registry
from serving.loader import load_model
from serving.runtime import check_sklearn_compatible
from serving.settings import load_settings
from serving.synthetic import records


def _assert_refused(client, logs, *, reason: str, says: list[str]) -> str:
    """The documented refusal: alive, not ready (with the reason), no predictions, logged."""
    assert client.get("/health").status_code == 200
    ready = client.get("/ready")
    assert ready.status_code == 503
    text = ready.json()["reason"]
    for fragment in says:
        assert fragment in text
    assert client.post("/predict", json=records(1)).status_code == 503
    refusals = [e for e in logs if e["event"] == "model refused"]
    assert refusals and refusals[0]["log_level"] == "error"
    assert refusals[0]["reason"] == reason
    return text


def test_tampered_model_file_is_refused_before_unpickling(make_model, serve, monkeypatch):
    folder, _ = make_model()
    # A pickle that would run code when loaded: it must never be unpickled.
    (folder / MODEL_FILE).write_bytes(pickle.dumps(Exception("tampered")))
    monkeypatch.setattr(pickle, "loads", lambda *_: pytest.fail("unpickled an unverified file"))
    with capture_logs() as logs:
        client = serve(model_uri=str(folder))
        _assert_refused(client, logs, reason="IntegrityFailed", says=[MODEL_FILE, "sha256"])


def test_pinned_sha256_mismatch_is_refused(make_model, serve):
    folder, manifest = make_model()
    other = "f" * 64
    with capture_logs() as logs:
        client = serve(model_uri=str(folder), model_sha256=other)
        text = _assert_refused(
            client, logs, reason="IntegrityFailed", says=[other[:12], manifest.model_sha256[:12]]
        )
    assert "MODEL_SHA256" in text


def test_pinned_sha256_match_loads(make_model, serve):
    folder, manifest = make_model()
    client = serve(model_uri=str(folder), model_sha256=manifest.model_sha256)
    assert client.get("/ready").json()["model_version"] == manifest.version


def _edit_runtime(folder, **runtime: str | None) -> None:
    manifest = Manifest.model_validate_json((folder / MANIFEST).read_text())
    merged = {**manifest.runtime, **runtime}
    manifest = manifest.model_copy(
        update={"runtime": {k: v for k, v in merged.items() if v is not None}}
    )
    # The manifest names the other files' digests, not its own: they stay consistent.
    (folder / MANIFEST).write_text(manifest.to_json())


def test_onnx_model_does_not_depend_on_the_sklearn_version(make_model, serve):
    folder, _ = make_model()
    major, minor = sklearn.__version__.split(".")[:2]
    _edit_runtime(folder, **{"scikit-learn": f"{major}.{int(minor) + 1}.0"})
    client = serve(model_uri=str(folder))
    assert client.get("/ready").json()["model_format"] == "onnx"
    assert client.post("/predict", json=records(1)).status_code == 200


def test_other_sklearn_minor_version_is_refused_naming_both(make_model, serve):
    folder, _ = make_model(serving_format="skops")
    major, minor = sklearn.__version__.split(".")[:2]
    trained = f"{major}.{int(minor) + 1}.0"
    _edit_runtime(folder, **{"scikit-learn": trained})
    with capture_logs() as logs:
        client = serve(model_uri=str(folder))
        _assert_refused(
            client, logs, reason="InvalidSpec", says=[trained, sklearn.__version__, "minor"]
        )


def test_sklearn_patch_difference_is_accepted():
    major, minor = sklearn.__version__.split(".")[:2]
    manifest = Manifest.model_construct(
        project="p", version="v", runtime={"scikit-learn": f"{major}.{minor}.99"}
    )
    check_sklearn_compatible(manifest)
    with pytest.raises(InvalidInput, match="does not record"):
        check_sklearn_compatible(Manifest.model_construct(project="p", version="v", runtime={}))
    old = Manifest.model_construct(project="p", version="v", runtime={"sklearn": "1.3.2"})
    with pytest.raises(InvalidInput, match=r"scikit-learn 1\.3\.2.*scikit-learn 1\.4\.0"):
        check_sklearn_compatible(old, running="1.4.0")


def test_missing_folder_is_refused_not_crashed(tmp_path, serve):
    with capture_logs() as logs:
        client = serve(model_uri=str(tmp_path / "nothing"))
        _assert_refused(client, logs, reason="InvalidSpec", says=[MANIFEST])


def _pins(manifest) -> dict[str, str]:
    """What the controller's task definition gives serving besides MODEL_URI."""
    pins = Registry(env_platform()).get_published(manifest.project, manifest.version).pins
    return {
        "model_sha256": manifest.model_sha256,
        "model_manifest_sha256": pins.manifest_sha256,
        "model_object_versions": pins.objects_json(),
    }


def test_loads_from_s3_and_verifies_the_download(aws_env, make_model, serve, reference):
    folder, manifest = make_model()
    published = Registry(env_platform()).publish(folder)
    client = serve(model_uri=published.uri, **_pins(manifest))
    assert client.get("/ready").json()["model_version"] == manifest.version
    recs = records(5)
    got = client.post("/predict", json=recs).json()["predictions"]
    assert got == reference(folder, manifest, recs)


def test_tampered_object_in_s3_is_refused(aws_env, platform, make_model, serve):
    folder, manifest = make_model()
    published = Registry(env_platform()).publish(folder)
    pins = Registry(env_platform()).get_published(manifest.project, manifest.version).pins
    pinned = _pins(manifest)  # as the task definition recorded them before the tamper
    key = platform.version_prefix(manifest.project, manifest.version) + MODEL_FILE
    aws.client("s3").put_object(
        Bucket=platform.artifact_bucket, Key=key, Body=pickle.dumps({"not": "the model"})
    )
    with pytest.raises(IntegrityError, match=f"{MODEL_FILE} was overwritten"):
        load_model(
            published.uri,
            expected_sha256=manifest.model_sha256,
            pins=pins,
            signing_key=platform.model_signing_key,
        )
    # Without pins, a published version is not served at all.
    with pytest.raises(IntegrityError, match="only by its publication pins"):
        load_model(
            published.uri,
            expected_sha256=manifest.model_sha256,
            signing_key=platform.model_signing_key,
        )
    with capture_logs() as logs:
        client = serve(model_uri=published.uri, **pinned)
        _assert_refused(client, logs, reason="IntegrityFailed", says=[MODEL_FILE])


def test_an_s3_model_uri_without_its_pins_is_refused_naming_what_is_missing():
    with pytest.raises(InvalidInput, match="MODEL_SHA256, MODEL_MANIFEST_SHA256"):
        load_settings({"MODEL_URI": "s3://bucket/p/models/v/"})
    with pytest.raises(InvalidInput, match="MODEL_OBJECT_VERSIONS not set"):
        load_settings(
            {
                "MODEL_URI": "s3://bucket/p/models/v/",
                "MODEL_SHA256": "a" * 64,
                "MODEL_MANIFEST_SHA256": "b" * 64,
            }
        )


def test_refused_start_up_load_is_not_retried(make_model, serve, monkeypatch):
    monkeypatch.setattr(serving.app, "LOAD_RETRY_SECONDS", 0.05)
    folder, _ = make_model()
    with capture_logs() as logs:
        client = serve(model_uri=str(folder), model_sha256="f" * 64)
        time.sleep(0.5)  # ten retry periods
        assert client.get("/ready").status_code == 503
    assert len([e for e in logs if e["event"] == "loading model"]) == 1


def test_a_skops_model_serves_what_scikit_learn_predicts(make_model, serve, reference):
    folder, manifest = make_model(serving_format="skops")
    assert (manifest.model_file, manifest.model_format) == ("model.skops", "skops")
    client = serve(model_uri=str(folder))
    assert client.get("/ready").json()["model_format"] == "skops"
    recs = records(5)
    assert client.post("/predict", json=recs).json()["predictions"] == reference(
        folder, manifest, recs
    )


def test_a_skops_file_with_an_untrusted_type_is_refused(make_model):
    import skops.io
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    from mlops_core.artifacts import SKOPS_FILE
    from serving.runtime import SkopsRuntime

    folder, manifest = make_model(serving_format="skops")
    hostile = skops.io.dumps(make_pipeline(FunctionTransformer(print)))
    (folder / SKOPS_FILE).write_bytes(hostile)
    with pytest.raises(InvalidInput, match="types serving does not trust"):
        SkopsRuntime(hostile, manifest)


def test_serving_never_unpickles(make_model, serve, monkeypatch):
    folder, _ = make_model()
    monkeypatch.setattr(pickle, "loads", lambda *_: pytest.fail("serving unpickled"))
    monkeypatch.setattr(pickle, "load", lambda *_: pytest.fail("serving unpickled"))
    client = serve(model_uri=str(folder))
    assert client.post("/predict", json=records(2)).status_code == 200


def test_a_pickle_only_version_is_refused_by_serving(make_model, serve):
    folder, _ = make_model()
    manifest = Manifest.model_validate_json((folder / MANIFEST).read_text())
    legacy = manifest.model_copy(
        update={"model_file": MODEL_FILE, "model_format": "sklearn-pickle"}
    )
    (folder / MANIFEST).write_text(legacy.to_json())
    with capture_logs() as logs:
        client = serve(model_uri=str(folder))
        _assert_refused(client, logs, reason="InvalidSpec", says=["pickle", "never unpickles"])
