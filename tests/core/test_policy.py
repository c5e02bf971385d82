"""The project's registration as versioned policy, against moto's S3 over HTTP: publishing
registers once and never again, a refused publish writes nothing, ``Policy.set`` writes
revision N+1 with who and why, and concurrent writers of one revision cannot both win."""

from __future__ import annotations

import json
import threading
from dataclasses import replace

import pytest
from factories import make_artifacts, project_config

from mlops_core import aws, signing
from mlops_core.errors import Conflict, IntegrityError, InvalidInput
from mlops_core.policy import REVISION_TYPE, Registration
from mlops_core.registry import Registry

PROJECT = "usedcar-price"


def _bucket_versions(platform) -> list[tuple[str, str]]:
    """Every object version (and delete marker) in the whole bucket."""
    out: list[tuple[str, str]] = []
    pages = aws.client("s3").get_paginator("list_object_versions")
    for page in pages.paginate(Bucket=platform.artifact_bucket):
        for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
            out.append((v["Key"], v["VersionId"]))
    return sorted(out)


def _registration_keys(platform) -> list[str]:
    resp = aws.client("s3").list_objects_v2(
        Bucket=platform.artifact_bucket, Prefix=platform.registration_prefix(PROJECT)
    )
    return sorted(o["Key"] for o in resp.get("Contents", []))


def test_first_publish_registers_revision_1(platform, tmp_path):
    platform = replace(platform, actor="alice")  # MLOPS_ACTOR, as the CLI reads it
    make_artifacts(tmp_path / "a", seed=1)
    config = project_config(min_r2=0.6)
    result = Registry(platform).publish(tmp_path / "a", config=config)
    assert result.registered == 1 and result.policy_note is None
    assert _registration_keys(platform) == [f"{PROJECT}/registration/000001.json"]
    head = Registry(platform).registration(PROJECT)
    assert (head.revision, head.author, head.previous) == (1, "alice", None)
    assert head.config.gates.min_r2 == 0.6
    assert Registry(platform).get_project(PROJECT) == config


def test_later_publish_with_loosened_gates_changes_nothing_and_says_so(platform, tmp_path):
    registry = Registry(platform)
    make_artifacts(tmp_path / "a", seed=1)
    make_artifacts(tmp_path / "b", seed=2)
    registry.publish(tmp_path / "a", config=project_config(min_r2=0.6))
    before = (
        aws.client("s3")
        .get_object(Bucket=platform.artifact_bucket, Key=platform.registration_key(PROJECT, 1))[
            "Body"
        ]
        .read()
    )

    loosened = project_config(min_r2=0.0, max_regression=1.0)
    result = registry.publish(tmp_path / "b", config=loosened)
    assert result.created and result.registered is None
    assert result.policy_note is not None and "revision 1" in result.policy_note
    assert "mlopsctl policy set" in result.policy_note and "\n" not in result.policy_note
    assert _registration_keys(platform) == [f"{PROJECT}/registration/000001.json"]
    after = (
        aws.client("s3")
        .get_object(Bucket=platform.artifact_bucket, Key=platform.registration_key(PROJECT, 1))[
            "Body"
        ]
        .read()
    )
    assert after == before
    assert registry.get_project(PROJECT).gates.min_r2 == 0.6

    # Same envs and gates, another description: nothing to say.
    make_artifacts(tmp_path / "c", seed=3)
    same = project_config(min_r2=0.6).model_copy(update={"description": "other words"})
    assert registry.publish(tmp_path / "c", config=same).policy_note is None


def test_refused_publish_writes_nothing(platform, tmp_path):
    registry = Registry(platform)
    make_artifacts(tmp_path / "a", seed=1)
    registry.publish(tmp_path / "a", config=project_config(min_r2=0.6))
    before = _bucket_versions(platform)
    with pytest.raises(Conflict, match="already published"):
        registry.publish(tmp_path / "a", config=project_config(min_r2=0.0))
    assert _bucket_versions(platform) == before
    # A model of another project under this project.yaml: refused before any write too.
    make_artifacts(tmp_path / "o", project="other-proj", seed=4)
    with pytest.raises(InvalidInput, match="other-proj"):
        registry.publish(tmp_path / "o", config=project_config(min_r2=0.0))
    assert _bucket_versions(platform) == before


def test_refused_first_publish_registers_nothing(platform, tmp_path):
    """A project's first publish that is refused leaves no registration behind."""
    # Already published (by the controller, which registers nothing): refused first.
    make_artifacts(tmp_path / "c", seed=5)
    Registry(platform).publish(tmp_path / "c")
    before = _bucket_versions(platform)
    with pytest.raises(Conflict, match="already published"):
        Registry(platform).publish(tmp_path / "c", config=project_config())
    assert _bucket_versions(platform) == before
    assert _registration_keys(platform) == []
    make_artifacts(tmp_path / "a", seed=1)
    (tmp_path / "a" / "model.onnx").write_bytes(b"tampered")
    with pytest.raises(IntegrityError):
        Registry(platform).publish(tmp_path / "a", config=project_config())
    assert _bucket_versions(platform) == before


def test_set_writes_the_next_revision_with_author_and_reason(platform):
    Registry(platform).register_project(project_config(min_r2=0.6))
    registry = Registry(replace(platform, actor="bob"))
    change = registry.policy.set(project_config(min_r2=0.7), reason="prod needs 0.7")
    assert change.written is not None
    assert change.lines == [f"{env}: min_r2 0.6 -> 0.7" for env in ("dev", "staging", "prod")]
    head = registry.registration(PROJECT)
    assert (head.revision, head.previous, head.author, head.reason) == (
        2,
        1,
        "bob",
        "prod needs 0.7",
    )
    assert registry.get_project(PROJECT).gates.min_r2 == 0.7
    assert [r.revision for r in registry.policy.history(PROJECT)] == [2, 1]


def test_set_without_change_or_on_dry_run_writes_nothing(platform):
    registry = Registry(platform)
    registry.register_project(project_config(min_r2=0.6))
    before = _bucket_versions(platform)
    unchanged = registry.policy.set(project_config(min_r2=0.6), reason="again")
    assert not unchanged.changed and unchanged.written is None
    dry = registry.policy.set(project_config(min_r2=0.9), reason="try", dry_run=True)
    assert dry.changed and dry.written is None and dry.lines
    with pytest.raises(InvalidInput, match="reason"):
        registry.policy.set(project_config(min_r2=0.9), reason="  ")
    assert _bucket_versions(platform) == before


def test_envs_added_and_removed_are_named(platform):
    registry = Registry(platform)
    registry.register_project(project_config())
    wider = project_config().model_copy(update={"envs": ["dev", "prod", "canary"]})
    lines = registry.policy.set(wider, reason="canary env", dry_run=True).lines
    assert lines == ["canary: added", "staging: removed"]


def test_concurrent_writers_of_one_revision_one_wins_the_other_names_it(platform, monkeypatch):
    registry = Registry(platform)
    registry.register_project(project_config(min_r2=0.6))
    head = registry.registration(PROJECT)
    barrier = threading.Barrier(2)
    outcomes: dict[str, object] = {}

    def write(author: str, min_r2: float) -> None:
        barrier.wait()
        try:
            outcomes[author] = Registry(platform).policy.write(
                project_config(min_r2=min_r2), author=author, reason=author, previous=head
            )
        except Conflict as exc:
            outcomes[author] = exc

    threads = [threading.Thread(target=write, args=a) for a in (("carol", 0.7), ("dave", 0.8))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    won = [a for a, o in outcomes.items() if isinstance(o, Registration)]
    lost = [o for o in outcomes.values() if isinstance(o, Conflict)]
    assert len(won) == 1 and len(lost) == 1
    assert f"written first by {won[0]}" in str(lost[0])
    final = registry.registration(PROJECT)
    assert (final.revision, final.author) == (2, won[0])


def test_concurrent_sets_lose_no_revision(platform):
    """Every set that reports success is a revision in the history; the others conflict."""
    Registry(platform).register_project(project_config(min_r2=0.5))
    barrier = threading.Barrier(4)
    written: list[int] = []
    conflicts: list[Conflict] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            change = Registry(platform).policy.set(
                project_config(min_r2=0.6 + i / 100), reason=f"writer {i}", author=f"w{i}"
            )
            assert change.written is not None
            written.append(change.written.revision)
        except Conflict as exc:
            conflicts.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(written) + len(conflicts) == 4 and written
    assert len(set(written)) == len(written)
    history = Registry(platform).policy.history(PROJECT)
    assert sorted(r.revision for r in history if r.revision > 1) == sorted(written)
    assert all(r.previous == r.revision - 1 for r in history if r.revision > 1)


def test_register_project_is_quiet_when_identical_and_refuses_a_different_one(platform):
    registry = Registry(platform)
    assert registry.register_project(project_config(min_r2=0.6)).revision == 1
    before = _bucket_versions(platform)
    assert registry.register_project(project_config(min_r2=0.6)).revision == 1
    with pytest.raises(Conflict, match="policy set"):
        registry.register_project(project_config(min_r2=0.1))
    assert _bucket_versions(platform) == before


def test_legacy_project_json_is_read_until_a_revision_exists(platform):
    legacy = project_config(min_r2=0.4)
    aws.client("s3").put_object(
        Bucket=platform.artifact_bucket,
        Key=platform.legacy_registration_key(PROJECT),
        Body=legacy.model_dump_json().encode(),
    )
    registry = Registry(platform)
    head = registry.registration(PROJECT)
    assert head.revision == 0 and head.config == legacy
    assert registry.get_project(PROJECT).gates.min_r2 == 0.4
    change = registry.policy.set(project_config(min_r2=0.6), reason="versioned now")
    assert change.written is not None
    assert (change.written.revision, change.written.previous) == (1, 0)
    assert registry.get_project(PROJECT).gates.min_r2 == 0.6
    assert [r.revision for r in registry.policy.history(PROJECT)] == [1, 0]


def _stored(platform, revision: int = 1) -> bytes:
    return (
        aws.client("s3")
        .get_object(
            Bucket=platform.artifact_bucket, Key=platform.registration_key(PROJECT, revision)
        )["Body"]
        .read()
    )


def test_stored_revision_is_sealed_with_the_signing_key(platform):
    Registry(platform).register_project(project_config(min_r2=0.6))
    raw = _stored(platform)
    assert raw == json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":")).encode()
    sealed = json.loads(raw)
    assert set(sealed) == {"document", "signature"}
    assert set(sealed["document"]) == {
        "revision",
        "config",
        "author",
        "created_at",
        "reason",
        "previous",
    }
    document = signing.unseal(platform.model_signing_key, REVISION_TYPE, raw, "test")
    assert Registration.model_validate(document).config.gates.min_r2 == 0.6
    # The statement names the record's type: a registration's seal is not another record's.
    with pytest.raises(IntegrityError, match="does not verify"):
        signing.unseal(platform.model_signing_key, "mlops.platform.io/other/v1", raw, "test")


def _forge_next(platform, body: bytes) -> None:
    aws.client("s3").put_object(
        Bucket=platform.artifact_bucket, Key=platform.registration_key(PROJECT, 2), Body=body
    )


def test_a_revision_a_bucket_writer_adds_is_refused_not_obeyed(platform):
    """Write access to the bucket is not the publisher's key: a revision 2 that loosens
    the gates, unsealed, re-sealed with another key, or altered after sealing, is an
    integrity failure wherever the registration is read, never the policy in force."""
    registry = Registry(platform)
    registry.register_project(project_config(min_r2=0.6))
    head = registry.registration(PROJECT)
    loosened = head.model_copy(
        update={
            "revision": 2,
            "previous": 1,
            "config": project_config(min_r2=0.0, max_regression=1.0),
            "reason": "forged",
        }
    )
    document = loosened.model_dump(mode="json")

    _forge_next(platform, json.dumps(document).encode())
    with pytest.raises(IntegrityError, match="not a sealed record"):
        registry.get_project(PROJECT)

    other = aws.client("kms").create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")
    _forge_next(platform, loosened.sealed(other["KeyMetadata"]["Arn"]))
    with pytest.raises(IntegrityError, match="not with the platform's key"):
        registry.get_project(PROJECT)

    genuine = json.loads(head.sealed(platform.model_signing_key))
    genuine["document"] = document  # the publisher's signature, another document
    _forge_next(platform, json.dumps(genuine).encode())
    with pytest.raises(IntegrityError, match="does not verify"):
        registry.get_project(PROJECT)
    with pytest.raises(IntegrityError):
        registry.policy.set(project_config(min_r2=0.0), reason="loosen")


def test_a_revision_stored_under_another_number_is_an_integrity_failure(platform):
    registry = Registry(platform)
    registry.register_project(project_config(min_r2=0.6))
    raw = _stored(platform)
    # A bucket writer copies revision 1 to revision 7 to hide later revisions.
    aws.client("s3").put_object(
        Bucket=platform.artifact_bucket, Key=platform.registration_key(PROJECT, 7), Body=raw
    )
    with pytest.raises(IntegrityError, match="stored as revision 7"):
        registry.get_project(PROJECT)


def test_a_first_publish_refused_half_way_registers_nothing(platform, tmp_path):
    """Refused at the objects (one already there with other content): no revision."""
    m = make_artifacts(tmp_path / "a", seed=1)
    key = platform.version_prefix(m.project, m.version) + "baseline.json"
    aws.client("s3").put_object(Bucket=platform.artifact_bucket, Key=key, Body=b"squatted")
    with pytest.raises(Conflict, match="different content"):
        Registry(platform).publish(tmp_path / "a", config=project_config())
    assert _registration_keys(platform) == []


def test_a_revision_at_the_key_limit_stops_set_with_a_clear_reason(platform):
    """A registration/999999.json (sealed: written with the publisher's key, outside
    'policy set'): 'policy set' names it, no traceback."""
    registry = Registry(platform)
    registry.register_project(project_config())
    head = registry.registration("usedcar-price")
    forged = head.model_copy(update={"revision": 999_999, "previous": head.revision})
    aws.client("s3").put_object(
        Bucket=platform.artifact_bucket,
        Key=platform.registration_key("usedcar-price", 999_999),
        Body=forged.sealed(platform.model_signing_key),
    )
    with pytest.raises(IntegrityError, match="revision 999999, the last one"):
        registry.policy.set(project_config(min_r2=0.9), reason="tighten")
