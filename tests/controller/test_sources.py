"""Manifest sources (folder, S3 on the local endpoint), manifests and leases."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import kopf
import pytest
from configured import env_platform

from controller.api import ModelDeploymentStatus
from controller.leases import FileLock, Holder, S3Lease
from controller.manifests import dump_manifest, load_document, parse_manifest, spec_hash
from controller.sources import (
    DirectorySource,
    LockUnusable,
    S3Source,
    StatusRecord,
    is_observed,
    next_generation,
    open_source,
)
from mlops_core import aws
from mlops_core.errors import InvalidInput

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "crds" / "examples" / "usedcar-price-prod.yaml"
NAME = "usedcar-price-prod"


def example():
    return parse_manifest(EXAMPLE.read_text(), str(EXAMPLE), expected_name=NAME)


# -- manifests ----------------------------------------------------------------------
def test_dump_then_parse_round_trips_and_keeps_the_spec_hash():
    d = example()
    again = parse_manifest(dump_manifest(d), "dumped.yaml", expected_name=NAME)
    assert again == d
    assert spec_hash(again) == spec_hash(d)
    assert "status" not in dump_manifest(d)


def test_spec_hash_ignores_formatting_but_not_meaning():
    text = EXAMPLE.read_text()
    reformatted = text.replace("  # `mlopsctl models usedcar-price` lists versions", "")
    assert spec_hash(parse_manifest(reformatted, "x")) == spec_hash(example())
    changed = text.replace("replicas: 2", "replicas: 3")
    assert spec_hash(parse_manifest(changed, "x")) != spec_hash(example())


@pytest.mark.parametrize(
    ("edit", "field", "at"),
    [
        (("replicas: 2", "replica: 2"), "spec.serving.replica: unknown field", "replica:"),
        (("version: 20261128T064500Z-3f9a2c1", "version: latest"), "spec.model.version", "latest"),
        (("memory: 1024", "memory: 4096000"), "spec.serving: Value error, memory", "serving:"),
        (("cpu: 512", "cpu: 300"), "spec.serving.cpu", "cpu: 300"),
        (("image: 123456789012", "image: Not An Image 1234"), "spec.serving.image", "image:"),
        (("  env: prod", "  env: prod: x"), "invalid YAML", "prod: x"),
    ],
)
def test_invalid_manifests_name_file_line_and_field(edit, field, at):
    text = EXAMPLE.read_text().replace(*edit)
    assert text != EXAMPLE.read_text()
    with pytest.raises(InvalidInput) as exc:
        parse_manifest(text, "deployments/usedcar-price-prod.yaml")
    message = exc.value.render()
    assert field in message
    line = next(i for i, s in enumerate(text.splitlines(), 1) if at in s)
    assert f"deployments/usedcar-price-prod.yaml:{line}" in message


def test_metadata_name_must_match_the_file_name():
    with pytest.raises(InvalidInput, match="does not match the file name 'other'"):
        parse_manifest(EXAMPLE.read_text(), "other.yaml", expected_name="other")


# -- generation bookkeeping -----------------------------------------------------------
def test_generation_counts_spec_changes_and_the_manifest_wins():
    assert next_generation(None, "h1", None) == 1
    rec = StatusRecord(name="n", generation=4, spec_hash="h1")
    assert next_generation(None, "h1", rec) == 4
    assert next_generation(None, "h2", rec) == 5
    assert next_generation(9, "h2", rec) == 9


def test_is_observed_needs_the_same_spec_and_generation():
    status = ModelDeploymentStatus(observed_generation=2)
    rec = StatusRecord(name="n", generation=2, spec_hash="h", status=status)
    assert is_observed(rec, "h")
    assert not is_observed(rec, "other")
    assert not is_observed(rec.model_copy(update={"generation": 3}), "h")
    assert not is_observed(None, "h")


# -- folder source --------------------------------------------------------------------
def test_folder_source_lists_reads_writes_status_beside_the_manifest(tmp_path):
    src = open_source(str(tmp_path))
    assert isinstance(src, DirectorySource)
    put = src.put_manifest(example())
    assert put.where == str(tmp_path / f"{NAME}.yaml")
    (tmp_path / "notes.txt").write_text("not a manifest")
    (tmp_path / ".hidden.yaml").write_text("ignored")
    tokens = src.scan()
    assert list(tokens) == [NAME]
    assert src.read(NAME).deployment == example()

    record = StatusRecord(name=NAME, key=f"default/{NAME}", generation=1, spec_hash=put.spec_hash)
    src.write_status(NAME, record)
    status_file = tmp_path / f"{NAME}.status.json"
    assert json.loads(status_file.read_text())["specHash"] == put.spec_hash
    assert src.read_status(NAME).same_content(record)
    assert list(src.scan()) == [NAME], "status files are not manifests"

    (tmp_path / f"{NAME}.yaml").write_text(
        EXAMPLE.read_text().replace("replicas: 2", "replicas: 3")
    )
    assert src.scan()[NAME] != tokens[NAME], "an edit changes the change token"
    src.delete_status(NAME)
    assert src.get_status(NAME) is None


def test_a_duplicate_key_is_refused_naming_its_line():
    """A repeated field is an error, not "the last one wins" (an old `env:` line left
    above a new one would have deployed the other env)."""
    text = EXAMPLE.read_text().replace("  env: prod\n", "  env: prod\n  env: staging\n", 1)
    assert text != EXAMPLE.read_text()
    line = text.splitlines().index("  env: staging") + 1
    with pytest.raises(InvalidInput, match="duplicate key 'env'") as got:
        parse_manifest(text, "m.yaml", expected_name=NAME)
    assert f"m.yaml:{line}" in str(got.value)


def test_aliases_and_merge_keys_are_not_duplicates():
    bomb = "a: &a [1, 2, 3]\n" + "".join(
        f"{k}: &{k} [{', '.join([f'*{p}'] * 9)}]\n"
        for p, k in zip("abcdefgh", "bcdefghi", strict=True)
    )
    with pytest.raises(InvalidInput, match="unknown field"):  # fast: each node seen once
        parse_manifest(bomb, "bomb.yaml", expected_name=NAME)
    merged = EXAMPLE.read_text() + "x: &x {p: 1}\ny:\n  <<: *x\n  q: 2\n"
    with pytest.raises(InvalidInput, match="unknown field") as got:
        parse_manifest(merged, "m.yaml", expected_name=NAME)
    assert "duplicate" not in str(got.value)


def test_an_alias_bomb_in_an_annotation_is_not_expanded():
    """Nine levels of nine aliases is 9**9 strings once expanded: the loose read of the
    annotations (kept for the delete policy) must not str() it."""
    lines = ['x0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"x{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    lines += ["metadata:", f"  name: {NAME}", "  annotations:", "    boom: *a8", "    keep: yes"]
    doc = load_document("\n".join(lines).encode(), "bomb.yaml", NAME)
    assert doc.error is not None and "annotations.boom" in str(doc.error)
    assert doc.annotations == {"keep": "True"}


@pytest.mark.parametrize("body", [b"\xff\xfe{", b"{not json", b'{"name": 3}'])
def test_a_damaged_status_file_is_ignored_not_raised(tmp_path, body):
    """A status file that is not UTF-8 (as a hand edit or a bad copy leaves it) is as
    unreadable as one that is not JSON: the deployment starts over, nothing raises."""
    src = open_source(str(tmp_path))
    src.put_manifest(example())
    (tmp_path / f"{NAME}.status.json").write_bytes(body)
    assert src.read_status(NAME) is None
    assert src.get_status(NAME) is None


def test_folder_source_must_exist_unless_created(tmp_path):
    with pytest.raises(InvalidInput, match="does not exist"):
        open_source(str(tmp_path / "nope"))
    src = open_source(f"file://{tmp_path / 'new'}", create=True)
    assert Path(src.uri).is_dir()


def test_unknown_source_schemes_are_refused(tmp_path):
    with pytest.raises(InvalidInput, match="unsupported source"):
        open_source("gs://bucket/prefix")
    with pytest.raises(InvalidInput, match="Kubernetes operator"):
        open_source("kube")


def _try_lock(path: str, queue) -> None:
    lock = FileLock(Path(path))
    queue.put(lock.try_acquire())


@pytest.mark.parametrize("in_the_way", ["lock folder", "leases file"])
def test_a_lock_file_in_the_way_is_a_sentence_not_a_traceback(tmp_path, in_the_way):
    """.leases/NAME.lock a folder, or .leases a file: an MlopsError saying what to move
    (retried with backoff, no traceback), not IsADirectoryError/FileExistsError."""
    if in_the_way == "lock folder":
        (tmp_path / ".leases" / "a.lock").mkdir(parents=True)
        said = ".leases/a.lock is a folder"
    else:
        (tmp_path / ".leases").write_text("x")
        said = ".leases is not a folder"
    source = DirectorySource(tmp_path)
    with pytest.raises(LockUnusable, match=said) as raised, source.guard("a"):
        pass
    assert raised.value.hint == "rename or move what is in the way"


def test_a_lock_holder_is_printed_without_control_characters_and_read_only_in_part(tmp_path):
    """What a lock file says its holder is (anyone can edit it) reaches the terminal:
    escape sequences and newlines become '?', at most 200 characters, and a huge or
    sparse file is not read whole."""
    path = tmp_path / ".leases" / "a.lock"
    path.parent.mkdir()
    path.write_bytes(b"\xff evil\n\x1b[31mRED\x07" + b"A" * 500)
    who = DirectorySource(tmp_path).holder("a")
    assert who is not None
    described = who.describe()
    assert described.isprintable() and len(described) == 200
    assert described.startswith("\ufffd evil??[31mRED?AAA")
    with path.open("wb") as f:
        f.truncate(10**10)  # sparse: 10 GB of NUL
    sparse = DirectorySource(tmp_path).holder("a")
    assert sparse is not None and sparse.describe() == "an unidentified controller"
    assert Holder("x\ny", until=0).describe() == "x?y until 1970-01-01T00:00:00Z"


def test_a_symlink_loop_is_that_manifest_s_error_not_the_folder_s(tmp_path):
    """NAME.yaml a symlink to itself: scan lists it (the read says 'Too many levels of
    symbolic links', retried), and every other manifest is still listed; the scan used to
    raise OSError, which ended a --once pass with a traceback (a daemon: 'source
    unreachable' for ever, no manifest of the folder reconciled)."""
    (tmp_path / "a.yaml").symlink_to(tmp_path / "a.yaml")
    (tmp_path / "b.yaml").write_text("kind: ModelDeployment\n")
    source = DirectorySource(tmp_path)
    assert sorted(source.scan()) == ["a", "b"]
    doc = source.read("a")
    assert doc is not None and doc.transient
    assert "symbolic links" in doc.error.render()


def test_file_lock_excludes_another_process_until_released(tmp_path):
    path = tmp_path / ".leases" / "a.lock"
    lock = FileLock(path)
    assert lock.try_acquire()
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_try_lock, args=(str(path), q))
    p.start()
    assert q.get(timeout=120) is False
    p.join()
    lock.release()
    p = ctx.Process(target=_try_lock, args=(str(path), q))
    p.start()
    assert q.get(timeout=120) is True
    p.join()


def test_folder_guard_is_per_key(tmp_path):
    src = DirectorySource(tmp_path)
    other = DirectorySource(tmp_path)  # a second controller: flock is per open file
    with src.guard("a") as mine:
        assert mine
        with other.guard("a") as theirs:
            assert not theirs
        with other.guard("b") as theirs_b:
            assert theirs_b
    with other.guard("a") as theirs:
        assert theirs


# -- S3 source ------------------------------------------------------------------------
def test_s3_source_defaults_to_the_platform_prefix(platform):
    src = open_source("s3", platform=env_platform())
    assert isinstance(src, S3Source)
    assert src.uri == f"s3://{platform.artifact_bucket}/{platform.desired_state_prefix}"


def test_s3_source_lists_by_etag_and_keeps_status_and_lease_out_of_the_listing(platform):
    src = S3Source(f"s3://{platform.artifact_bucket}/gitops/prod")
    assert src.prefix == "gitops/prod/"
    put = src.put_manifest(example())
    assert put.where == f"s3://{platform.artifact_bucket}/gitops/prod/{NAME}.yaml"
    assert src.heartbeat()
    record = StatusRecord(name=NAME, key=f"default/{NAME}", generation=1, spec_hash=put.spec_hash)
    src.write_status(NAME, record)
    s3 = aws.client("s3")
    keys = {
        o["Key"]
        for o in s3.list_objects_v2(Bucket=platform.artifact_bucket, Prefix="gitops/")["Contents"]
    }
    assert keys == {
        f"gitops/prod/{NAME}.yaml",
        f"gitops/prod/.status/{NAME}.json",
        "gitops/prod/.leases/controller.json",
    }
    tokens = src.scan()
    assert list(tokens) == [NAME]
    assert src.read(NAME).deployment == example()
    assert src.get_record(NAME).same_content(record)
    assert src.get_status(f"default/{NAME}") == record.status

    s3.put_object(
        Bucket=platform.artifact_bucket,
        Key=f"gitops/prod/{NAME}.yaml",
        Body=EXAMPLE.read_text().replace("replicas: 2", "replicas: 3").encode(),
    )
    assert src.scan()[NAME] != tokens[NAME]
    assert src.read(NAME).deployment.spec.serving.replicas == 3, "a new ETag: a fresh GET"
    src.close()


def test_s3_source_reports_a_missing_bucket(aws_env):
    src = S3Source("s3://no-such-bucket-here/deployments/")
    with pytest.raises(InvalidInput, match="no-such-bucket-here"):
        src.check()


# -- S3 lease -------------------------------------------------------------------------
def _lease_body(bucket: str, key: str) -> dict:
    return json.loads(aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())


def test_s3_lease_is_exclusive_until_released(platform):
    bucket, key = platform.artifact_bucket, "deployments/.leases/controller.json"
    a = S3Lease(bucket, key, holder="a", ttl=30)
    b = S3Lease(bucket, key, holder="b", ttl=30)
    assert a.ensure()
    assert not b.ensure(), "a live lease held by another controller is refused"
    assert _lease_body(bucket, key)["holder"] == "a"
    a.release()
    assert _lease_body(bucket, key)["holder"] is None
    assert b.ensure(), "a released lease is taken at once"
    assert _lease_body(bucket, key)["holder"] == "b"
    assert not a.ensure()


def test_s3_lease_is_taken_over_after_expiry_and_the_old_holder_notices(platform):
    bucket, key = platform.artifact_bucket, "deployments/.leases/controller.json"
    a = S3Lease(bucket, key, holder="a", ttl=30)
    assert a.ensure()
    # Age a's lease as if it had stopped renewing 60 s ago (a crashed controller).
    body = _lease_body(bucket, key) | {"expiresAt": 1.0}
    aws.client("s3").put_object(Bucket=bucket, Key=key, Body=json.dumps(body).encode())
    b = S3Lease(bucket, key, holder="b", ttl=30)
    assert b.ensure()
    a._held.renewed -= 20  # a's renewal is due: its IfMatch put finds a new ETag
    assert not a.ensure()
    assert not a.held()


def test_s3_lease_conditional_put_loses_a_race(platform):
    """Two controllers read the same expired lease; only one conditional put wins."""
    bucket, key = platform.artifact_bucket, "deployments/.leases/controller.json"
    s3 = aws.client("s3")
    s3.put_object(Bucket=bucket, Key=key, Body=b'{"holder": null, "expiresAt": 0}')
    etag = s3.head_object(Bucket=bucket, Key=key)["ETag"]
    a = S3Lease(bucket, key, holder="a")
    b = S3Lease(bucket, key, holder="b")
    assert a.store.replace(a._record(30), etag) is not None
    assert b.store.replace(b._record(30), etag) is None, "IfMatch on a stale ETag must fail"
    assert a.store.create(a._record(30)) is None, "IfNoneMatch on an existing key must fail"


def test_every_source_implements_the_source_protocol(platform, tmp_path):
    from controller.kubeapi import KubeClient
    from controller.leases import Lease
    from controller.sources import ManifestStore, Source
    from controller.sources.kube import KubeLeaseStore, KubeSource

    assert isinstance(DirectorySource(tmp_path), ManifestStore)
    assert isinstance(S3Source("s3", platform=env_platform()), ManifestStore)
    client = KubeClient(kopf.ConnectionInfo(server="http://127.0.0.1:1"))
    kube = KubeSource(client, Lease(KubeLeaseStore(client, "mlops")))
    assert isinstance(kube, Source) and not isinstance(kube, ManifestStore)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("namespace", "../../etc x"),
        ("namespace", "Prod"),
        ("generation", -7),
        ("generation", 10**30),
    ],  # fmt: skip
)
def test_metadata_a_manifest_author_sets_is_held_to_what_kubernetes_allows(field, value):
    """From a folder or S3, namespace and generation are the author's: the key they make
    is written into the env's claim and the pointer, the generation into the status."""
    from pydantic import ValidationError

    from controller.api import ModelDeployment

    doc = {
        "metadata": {"name": "demo-prod", field: value},
        "spec": {
            "project": "demo",
            "env": "prod",
            "model": {"version": "20260101T000000Z-aaaaaaa"},
            "serving": {"image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/s:1"},
        },
    }
    with pytest.raises(ValidationError) as info:
        ModelDeployment.model_validate(doc)
    assert info.value.errors()[0]["loc"] == ("metadata", field)
    doc["metadata"][field] = "ml" if field == "namespace" else 3
    assert (
        ModelDeployment.model_validate(doc).metadata.model_dump()[field] == doc["metadata"][field]
    )


# -- limits: size, one parse, things that are not manifest files -----------------------
def _padded(size: int) -> bytes:
    """The example plus one comment line, ``size`` bytes in all."""
    body = EXAMPLE.read_bytes()
    return body + b"#" + b"x" * (size - len(body) - 2) + b"\n"


def test_a_manifest_above_the_cap_is_refused_naming_the_file_and_its_size(tmp_path):
    import time

    from controller.manifests import MAX_MANIFEST_BYTES

    src = DirectorySource(tmp_path)
    (tmp_path / f"{NAME}.yaml").write_bytes(_padded(MAX_MANIFEST_BYTES))
    assert src.read(NAME).deployment == example(), "at the cap: still a manifest"
    (tmp_path / f"{NAME}.yaml").write_bytes(_padded(8 * MAX_MANIFEST_BYTES))
    started = time.monotonic()
    doc = src.read(NAME)
    assert time.monotonic() - started < 0.5, "refused before parsing"
    assert doc.deployment is None and isinstance(doc.error, InvalidInput)
    message = doc.error.render()
    assert f"{8 * MAX_MANIFEST_BYTES:,} bytes" in message and "1 MiB" in message
    assert str(tmp_path / f"{NAME}.yaml") in message


def test_an_s3_manifest_above_the_cap_is_refused_naming_the_object_and_its_size(platform):
    from controller.manifests import MAX_MANIFEST_BYTES

    src = S3Source(f"s3://{platform.artifact_bucket}/big/")
    key = f"big/{NAME}.yaml"
    s3 = aws.client("s3")
    s3.put_object(Bucket=platform.artifact_bucket, Key=key, Body=_padded(MAX_MANIFEST_BYTES))
    src.scan()
    assert src.read(NAME).deployment == example(), "at the cap: still a manifest"
    s3.put_object(Bucket=platform.artifact_bucket, Key=key, Body=_padded(3 * MAX_MANIFEST_BYTES))
    src.scan()
    doc = src.read(NAME)
    assert doc.deployment is None and doc.error.reason == "InvalidSpec"
    message = doc.error.render()
    assert f"{3 * MAX_MANIFEST_BYTES:,} bytes" in message
    assert f"s3://{platform.artifact_bucket}/{key}" in message


@pytest.mark.parametrize(
    "edit",
    [
        None,  # valid
        ("replicas: 2", "replicas: two"),  # invalid field
        ("name: usedcar-price-prod", "name: other"),  # name mismatch (its line)
        ("  env: prod\n", "  env: prod\n  env: staging\n"),  # duplicate key
    ],
)
def test_a_manifest_is_parsed_once(monkeypatch, edit):
    """One compose, no second parse for the key, the annotations or the values: a slow
    manifest costs its parse once, not four times."""
    import yaml

    text = EXAMPLE.read_text()
    if edit:
        text = text.replace(*edit, 1)
    calls: list[str] = []
    for fn in ("compose", "safe_load", "load", "compose_all", "load_all", "safe_load_all"):
        real = getattr(yaml, fn)
        monkeypatch.setattr(
            yaml, fn, lambda *a, _r=real, _n=fn, **k: calls.append(_n) or _r(*a, **k)
        )
    doc = load_document(text.encode(), "m.yaml", NAME)
    assert (doc.error is None) == (edit is None)
    assert calls == ["compose"]
    assert doc.key == f"default/{NAME}" and doc.project == "usedcar-price"


def test_a_folder_named_like_a_manifest_is_an_invalid_spec_not_a_crash(tmp_path):
    (tmp_path / f"{NAME}.yaml").mkdir()
    src = DirectorySource(tmp_path)
    assert list(src.scan()) == [NAME], "reported, not silently skipped"
    doc = src.read(NAME)
    assert isinstance(doc.error, InvalidInput) and not doc.transient
    assert (
        doc.error.render().splitlines()[0].endswith(f"{NAME}.yaml is a folder, not a manifest file")
    )


def test_a_folder_where_the_status_file_goes_is_one_warning_not_a_traceback(tmp_path):
    import structlog

    from controller.runtime import Controller
    from controller.sources.base import StatusUnusable
    from controller.workqueue import WorkQueue

    class NoAws:
        def reconcile_many(self, items, fence=None):
            raise AssertionError("nothing may reach AWS")

        def retire(self, *args):
            raise AssertionError("nothing may reach AWS")

    (tmp_path / f"{NAME}.status.json").mkdir()
    src = DirectorySource(tmp_path)
    with pytest.raises(StatusUnusable, match="is a folder"):
        src.read_status(NAME)
    src.put_manifest(example())
    ctl = Controller(src, NoAws(), queue=WorkQueue(base_delay=0.01, max_delay=0.02))
    with structlog.testing.capture_logs() as logs:
        (outcome,) = ctl.run_once()
    assert outcome.failed and f"{NAME}.status.json is a folder" in outcome.error
    assert not [e for e in logs if e["event"] == "reconcile raised"], "no traceback"
    assert all("exc_info" not in e for e in logs)


# -- NAME.yaml and NAME.yml: one deployment, two files ---------------------------------
def _staging() -> str:
    return EXAMPLE.read_text().replace("  env: prod\n", "  env: staging\n", 1)


def test_name_yaml_and_name_yml_in_one_folder_are_a_conflict_naming_both(tmp_path):
    import structlog

    from controller.runtime import Controller

    class NoAws:
        def reconcile_many(self, items, fence=None):
            raise AssertionError("nothing may reach AWS for an ambiguous manifest")

        def retire(self, *args):
            raise AssertionError("nothing may reach AWS for an ambiguous manifest")

    (tmp_path / f"{NAME}.yaml").write_text(EXAMPLE.read_text())
    (tmp_path / f"{NAME}.yml").write_text(_staging())
    src = DirectorySource(tmp_path)
    assert list(src.scan()) == [NAME]
    with structlog.testing.capture_logs() as logs:
        (outcome,) = Controller(src, NoAws()).run_once()
    degraded = outcome.status.condition("Degraded")
    assert degraded.status == "True" and degraded.reason == "InvalidSpec"
    for name in (f"{NAME}.yaml", f"{NAME}.yml"):
        assert str(tmp_path / name) in degraded.message
    warned = [e for e in logs if e["log_level"] == "warning"]
    assert warned and f"{NAME}.yml" in warned[0]["error"] and f"{NAME}.yaml" in warned[0]["error"]

    tokens = src.scan()
    (tmp_path / f"{NAME}.yml").write_text(_staging().replace("replicas: 2", "replicas: 3"))
    assert src.scan() != tokens, "an edit of either file is a change"
    (tmp_path / f"{NAME}.yml").unlink()
    src.scan()
    assert src.read(NAME).deployment == example(), "one file left: it is the manifest"


def test_name_yaml_and_name_yml_under_one_s3_prefix_are_a_conflict_naming_both(platform):
    src = S3Source(f"s3://{platform.artifact_bucket}/both/")
    s3 = aws.client("s3")
    s3.put_object(Bucket=platform.artifact_bucket, Key=f"both/{NAME}.yml", Body=_staging().encode())
    src.scan()
    assert src.read(NAME).deployment.spec.env == "staging", "one file: it is the manifest"
    s3.put_object(
        Bucket=platform.artifact_bucket, Key=f"both/{NAME}.yaml", Body=EXAMPLE.read_bytes()
    )
    assert list(src.scan()) == [NAME]
    doc = src.read(NAME)
    assert doc.deployment is None and doc.error.reason == "InvalidSpec"
    message = doc.error.render()
    for key in (f"both/{NAME}.yaml", f"both/{NAME}.yml"):
        assert f"s3://{platform.artifact_bucket}/{key}" in message
    s3.delete_object(Bucket=platform.artifact_bucket, Key=f"both/{NAME}.yml")
    src.scan()
    assert src.read(NAME).deployment == example()
