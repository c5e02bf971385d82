"""The registry against moto's server over HTTP: immutability, commit marker, digests,
signatures and the pins publication records."""

from __future__ import annotations

import threading

import pytest
from factories import make_artifacts, project_config

from mlops_core import aws
from mlops_core.artifacts import MANIFEST, MODEL_FILE, ONNX_FILE, sha256_file
from mlops_core.errors import Conflict, IntegrityError, NotFound
from mlops_core.publication import PUBLICATION, SIGNATURE
from mlops_core.registry import Registry, fetch_published

STORED = [MANIFEST, SIGNATURE, PUBLICATION]


@pytest.fixture
def registry(platform) -> Registry:
    reg = Registry(platform)
    reg.register_project(project_config())
    return reg


def _keys(platform, prefix: str) -> list[str]:
    resp = aws.client("s3").list_objects_v2(Bucket=platform.artifact_bucket, Prefix=prefix)
    return sorted(o["Key"] for o in resp.get("Contents", []))


def test_publish_writes_every_file_signs_and_records_pins_last(registry, platform, tmp_path):
    m = make_artifacts(tmp_path / "a")
    result = registry.publish(tmp_path / "a")
    assert result.created and result.version == m.version
    prefix = platform.version_prefix(m.project, m.version)
    assert _keys(platform, prefix) == sorted(prefix + n for n in [*m.files, *STORED])
    published = registry.get_published(m.project, m.version)
    assert published.manifest == m
    assert published.pins.manifest_sha256 == sha256_file(tmp_path / "a" / MANIFEST)
    # Every object is pinned by the version S3 gave it at publish time.
    versions = aws.client("s3").list_object_versions(Bucket=platform.artifact_bucket, Prefix=prefix)
    by_key = {v["Key"][len(prefix) :]: v["VersionId"] for v in versions["Versions"]}
    assert published.pins.objects == {k: v for k, v in by_key.items() if k != PUBLICATION}
    assert [v.version for v in registry.list_versions(m.project)] == [m.version]


def test_publishing_over_an_existing_version_is_refused_and_changes_nothing(
    registry, platform, tmp_path
):
    m = make_artifacts(tmp_path / "a")
    registry.publish(tmp_path / "a")
    s3 = aws.client("s3")
    key = platform.version_prefix(m.project, m.version) + MODEL_FILE
    before = s3.head_object(Bucket=platform.artifact_bucket, Key=key)["ETag"]
    with pytest.raises(Conflict, match="already published"):
        registry.publish(tmp_path / "a")
    assert s3.head_object(Bucket=platform.artifact_bucket, Key=key)["ETag"] == before
    # The controller's idempotent path accepts the identical version.
    assert registry.publish(tmp_path / "a", exist_ok=True).created is False


def test_tampered_model_is_refused_before_upload(registry, platform, tmp_path):
    m = make_artifacts(tmp_path / "a")
    (tmp_path / "a" / MODEL_FILE).write_bytes(b"not the model")
    with pytest.raises(IntegrityError, match="model.pkl"):
        registry.publish(tmp_path / "a")
    assert _keys(platform, platform.models_prefix(m.project)) == []


def test_interrupted_publish_is_invisible_and_a_rerun_completes_it(
    registry, platform, tmp_path, monkeypatch
):
    m = make_artifacts(tmp_path / "a")
    real_put = registry._put_once
    calls = []

    def dying_put(key, body, accept):
        if len(calls) == 2:
            raise KeyboardInterrupt("killed mid-publish")
        calls.append(key)
        return real_put(key, body, accept)

    monkeypatch.setattr(registry, "_put_once", dying_put)
    with pytest.raises(KeyboardInterrupt):
        registry.publish(tmp_path / "a")
    monkeypatch.undo()
    # Two files are in S3 but no publication record: readers see nothing.
    assert len(_keys(platform, platform.models_prefix(m.project))) == 2
    fresh = Registry(platform)
    assert fresh.list_versions(m.project) == []
    assert not fresh.exists(m.project, m.version)
    # A re-run accepts what is there and commits.
    assert fresh.publish(tmp_path / "a").created
    assert [v.version for v in fresh.list_versions(m.project)] == [m.version]


def test_two_concurrent_publishes_leave_exactly_one_complete_version(platform, tmp_path):
    Registry(platform).register_project(project_config())
    m = make_artifacts(tmp_path / "a")
    outcomes: list[object] = []
    barrier = threading.Barrier(2)

    def run():
        barrier.wait()
        try:
            outcomes.append(Registry(platform).publish(tmp_path / "a"))
        except Conflict as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    created = [o for o in outcomes if not isinstance(o, Exception) and o.created]
    assert len(created) == 1, outcomes
    assert [v.version for v in Registry(platform).list_versions(m.project)] == [m.version]
    prefix = platform.version_prefix(m.project, m.version)
    assert _keys(platform, prefix) == sorted(prefix + n for n in [*m.files, *STORED])
    # Both writers pinned the same objects: the loser accepted the winner's.
    assert len({len(_object_versions(platform, prefix)[k]) for k in m.files}) == 1


def _object_versions(platform, prefix: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    page = aws.client("s3").list_object_versions(Bucket=platform.artifact_bucket, Prefix=prefix)
    for v in page.get("Versions", []):
        out.setdefault(v["Key"][len(prefix) :], []).append(v["VersionId"])
    return out


def test_download_fetches_the_pinned_objects_and_only_the_served_file(registry, platform, tmp_path):
    m = make_artifacts(tmp_path / "a")
    registry.publish(tmp_path / "a")
    pins = registry.get_published(m.project, m.version).pins
    uri = platform.version_uri(m.project, m.version)
    got = fetch_published(
        uri, pins, tmp_path / "dl", signing_key=platform.model_signing_key, model_only=True
    )
    assert got == m
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == [MANIFEST, ONNX_FILE]
    assert (tmp_path / "dl" / ONNX_FILE).read_bytes() == (tmp_path / "a" / ONNX_FILE).read_bytes()
    # Overwrite the stored model (as if written behind the registry's back): every
    # reader refuses the version, though the pinned object is still the published one.
    key = platform.version_prefix(m.project, m.version) + MODEL_FILE
    aws.client("s3").put_object(Bucket=platform.artifact_bucket, Key=key, Body=b"evil")
    with pytest.raises(IntegrityError, match="model.pkl was overwritten"):
        Registry(platform).download(m.project, m.version, tmp_path / "dl2")
    with pytest.raises(IntegrityError, match="model.pkl was overwritten"):
        fetch_published(uri, pins, tmp_path / "dl3", signing_key=platform.model_signing_key)
    assert not (tmp_path / "dl2" / MODEL_FILE).exists()


def test_unknown_project_and_version_are_clear(registry):
    with pytest.raises(NotFound, match="unknown project 'nope'"):
        registry.get_project("nope")
    with pytest.raises(NotFound, match="not published"):
        registry.get_manifest("usedcar-price", "20990101T000000Z-abcdef0")
