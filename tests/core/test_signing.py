"""Signatures against the local KMS over HTTP: only the platform key's signature over this
exact statement is accepted; candidates must carry one before the controller publishes."""

from __future__ import annotations

import json
import shutil

import pytest
from factories import make_artifacts, project_config

from mlops_core import aws, signing
from mlops_core.artifacts import MANIFEST, METRICS_FILE
from mlops_core.errors import IntegrityError, InvalidInput
from mlops_core.publication import SIGNATURE, version_statement
from mlops_core.registry import Registry, check_candidate_signed, sign_candidate


@pytest.fixture
def registry(platform) -> Registry:
    reg = Registry(platform)
    reg.register_project(project_config())
    return reg


def _other_key() -> str:
    kms = aws.client("kms")
    return kms.create_key(KeySpec=signing.KEY_SPEC, KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]


def test_only_the_platform_keys_signature_over_the_exact_statement_verifies(platform):
    key = platform.model_signing_key
    statement = version_statement("usedcar-price", "20261128T060100Z-abcdef0", "a" * 64)
    envelope = signing.sign(key, statement)
    signing.verify(key, envelope, statement, "here")
    # Another version's statement (a replayed signature), another digest: refused.
    for field, value in (("version", "20261128T060200Z-abcdef0"), ("manifest_sha256", "b" * 64)):
        with pytest.raises(IntegrityError, match="another statement"):
            signing.verify(key, envelope, {**statement, field: value}, "here")
    # A payload edited inside the envelope no longer matches its signature.
    edited = envelope.model_copy(update={"payload": {**statement, "manifest_sha256": "b" * 64}})
    with pytest.raises(IntegrityError, match="does not verify"):
        signing.verify(key, edited, edited.payload, "here")
    # A valid signature by another key (one a bucket writer could create): refused.
    foreign = signing.sign(_other_key(), statement)
    with pytest.raises(IntegrityError, match="not with the platform's key"):
        signing.verify(key, foreign, statement, "here")
    forged = foreign.model_copy(
        update={
            "signature": foreign.signature.model_copy(update={"key_id": envelope.signature.key_id})
        }
    )
    with pytest.raises(IntegrityError, match="does not verify"):
        signing.verify(key, forged, statement, "here")


def test_publishing_an_unsigned_candidate_without_signing_is_refused_and_writes_nothing(
    registry, platform, tmp_path
):
    m = make_artifacts(tmp_path / "a")
    with pytest.raises(IntegrityError, match="not signed"):
        registry.publish(tmp_path / "a", sign=False)
    listed = aws.client("s3").list_object_versions(
        Bucket=platform.artifact_bucket, Prefix=platform.models_prefix(m.project)
    )
    assert listed.get("Versions", []) == []
    sign_candidate(str(tmp_path / "a"), platform.model_signing_key)
    assert registry.publish(tmp_path / "a", sign=False).created


def test_a_signature_copied_onto_forged_metrics_is_refused(registry, platform, tmp_path):
    """The gates read the manifest's metrics: the signature covers them."""
    make_artifacts(tmp_path / "a")
    sign_candidate(str(tmp_path / "a"), platform.model_signing_key)
    forged = tmp_path / "forged"
    shutil.copytree(tmp_path / "a", forged)
    doc = json.loads((forged / MANIFEST).read_text())
    doc["metrics"]["model"]["r2"] = 0.99
    (forged / MANIFEST).write_text(json.dumps(doc))
    with pytest.raises(IntegrityError, match="another statement"):
        check_candidate_signed(str(forged), platform.model_signing_key)
    with pytest.raises(IntegrityError, match="another statement"):
        registry.publish(forged, sign=False)
    # Forging metrics.json alone breaks its digest in the signed manifest.
    shutil.rmtree(forged)
    shutil.copytree(tmp_path / "a", forged)
    (forged / METRICS_FILE).write_text('{"model": {"r2": 0.99}}')
    with pytest.raises(IntegrityError, match=METRICS_FILE):
        registry.publish(forged, sign=False)


def test_a_candidate_in_s3_is_signed_once_and_the_signature_is_kept(registry, platform, tmp_path):
    from mlops_core.registry import upload_candidate

    make_artifacts(tmp_path / "a")
    uri = upload_candidate(tmp_path / "a", f"s3://{platform.artifact_bucket}/runs/1/")
    with pytest.raises(IntegrityError, match="not signed"):
        check_candidate_signed(uri, platform.model_signing_key)
    where, created = sign_candidate(uri, platform.model_signing_key)
    assert created and where.endswith(SIGNATURE)
    assert sign_candidate(uri, platform.model_signing_key)[1] is False
    check_candidate_signed(uri, platform.model_signing_key)
    assert registry.publish_uri(uri).created


def test_manifest_file_names_are_the_layouts_never_paths(tmp_path):
    from mlops_core.artifacts import read_manifest

    make_artifacts(tmp_path / "a")
    doc = json.loads((tmp_path / "a" / MANIFEST).read_text())
    for evil in ("../../etc/cron.d/x", "/tmp/abs", "sub/model.onnx", "model.py"):
        bad = dict(doc, files={**doc["files"], evil: {"sha256": "0" * 64, "size": 1}})
        (tmp_path / "a" / MANIFEST).write_text(json.dumps(bad))
        with pytest.raises(InvalidInput, match="not part of the artifact layout"):
            read_manifest(tmp_path / "a")


def test_a_version_id_that_does_not_name_its_model_is_refused(registry, platform, tmp_path):
    """The suffix of a version id is its served model's digest: a manifest edited to
    pass another model off under an honest version id is neither signed nor published."""
    make_artifacts(tmp_path / "a")
    doc = json.loads((tmp_path / "a" / MANIFEST).read_text())
    doc["version"] = doc["version"][:-7] + "0000000"
    (tmp_path / "a" / MANIFEST).write_text(json.dumps(doc))
    with pytest.raises(IntegrityError, match="does not name its model"):
        sign_candidate(str(tmp_path / "a"), platform.model_signing_key)
    with pytest.raises(IntegrityError, match="does not name its model"):
        registry.publish(tmp_path / "a")
