"""The promotion log: concurrent writers, depth beyond SSM's history, crash repair."""

from __future__ import annotations

import threading

import pytest
from factories import make_artifacts, project_config

from mlops_core import aws, signing
from mlops_core.errors import Conflict, IntegrityError, NotFound
from mlops_core.pointer import ModelPointer, PointerStore, now
from mlops_core.promotion import pointer_for, promote, rollback
from mlops_core.promotion_log import ENTRY_TYPE, PromotionLog, pushed
from mlops_core.registry import Registry

PROJECT, ENV = "usedcar-price", "prod"


@pytest.fixture
def published(platform, tmp_path):
    """A registered project with five versions that all pass its gates."""
    reg = Registry(platform)
    reg.register_project(project_config())
    versions = []
    for seed in range(1, 6):
        versions.append(make_artifacts(tmp_path / str(seed), seed=seed, r2=0.8).version)
        reg.publish(tmp_path / str(seed))
    return reg, versions


def _log(reg: Registry) -> PromotionLog:
    return PromotionLog(reg.platform)


def _ssm(reg: Registry) -> ModelPointer | None:
    return PointerStore(reg.platform).get(PROJECT, ENV)


def _run_all(n: int, work) -> list[object]:
    """Run ``work(i)`` in ``n`` threads at once; each result or the exception it raised."""
    results: list[object] = [None] * n
    start = threading.Barrier(n)

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = work(i)
        except Exception as exc:  # noqa: BLE001 - the test inspects what each one raised
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def test_of_concurrent_promotions_exactly_one_wins_and_the_others_name_it(published, monkeypatch):
    reg, versions = published
    assert len(versions) == 5
    # Every writer has read the (empty) head before any of them writes: a true race.
    all_read = threading.Barrier(len(versions), timeout=60)
    create = PromotionLog.create

    def create_after_all_read(self, project, env, entry):
        all_read.wait()
        return create(self, project, env, entry)

    monkeypatch.setattr(PromotionLog, "create", create_after_all_read)
    results = _run_all(
        len(versions),
        lambda i: promote(PROJECT, ENV, versions[i], registry=reg, actor=f"user{i}"),
    )
    won = [r for r in results if isinstance(r, tuple)]
    lost = [r for r in results if isinstance(r, Conflict)]
    assert len(won) == 1 and len(lost) == len(versions) - 1, results
    winner, _ = won[0]
    assert winner.seq == 1 and winner.back is None
    for exc in lost:
        assert exc.exit_code == 4
        assert winner.version in exc.what and winner.promoted_by in exc.what
        assert f"{winner.promoted_at:%Y-%m-%dT%H:%M:%SZ}" in exc.what
        assert "nothing was written" in (exc.hint or "")
    assert _ssm(reg) == winner
    assert [e.version for e in _log(reg).history(PROJECT, ENV)] == [winner.version]


def test_concurrent_rollbacks_each_pop_the_head_of_their_time(published):
    reg, versions = published
    pushes = [versions[i % 3] for i in range(30)]  # v0 v1 v2 v0 ...: 30 entries
    for v in pushes:
        promote(PROJECT, ENV, v, registry=reg)

    def roll_back_until_done(i: int) -> list[tuple[ModelPointer, ModelPointer]]:
        while True:  # a user whose rollback lost the race retries it
            try:
                return [rollback(PROJECT, ENV, registry=reg, actor=f"user{i}")]
            except Conflict:
                continue

    results = _run_all(24, roll_back_until_done)
    done = [pair for r in results if isinstance(r, list) for pair in r]
    assert len(done) == 24, results
    written = sorted((after for _, after in done), key=lambda e: e.seq or 0)
    assert [e.seq for e in written] == list(range(31, 55))  # no seq written twice
    for before, after in done:
        assert before.seq == (after.seq or 0) - 1  # computed from the head it replaced
    # The final state is the stack's: 24 pops of 30 pushes leaves the 6th push.
    stack = list(pushes)
    log = _log(reg)
    for e in written:
        stack.pop()
        assert e.version == stack[-1] and e.action == "rollback"
        replaced = log.entry(PROJECT, ENV, (e.seq or 0) - 1)
        assert replaced is not None and replaced.back is not None
        target = log.entry(PROJECT, ENV, replaced.back)
        assert target is not None and (target.version, target.back) == (e.version, e.back)
    head = log.head(PROJECT, ENV)
    assert head is not None and head.seq == 54 and head.version == pushes[5]
    assert _ssm(reg) == head


def test_rollback_reaches_further_back_than_ssm_keeps(published):
    reg, versions = published
    pushes = [versions[i % 3] for i in range(104)]
    for v in pushes:
        promote(PROJECT, ENV, v, registry=reg)
    name = reg.platform.pointer_param(PROJECT, ENV)
    ssm_history = PointerStore(reg.platform).history(PROJECT, ENV)
    assert len(ssm_history) <= 100  # SSM has forgotten the first values
    assert aws.client("ssm").get_parameter(Name=name)["Parameter"]["Version"] == 104
    for expected in reversed(pushes[:-1]):
        _, to = rollback(PROJECT, ENV, registry=reg)
        assert to.version == expected
    assert _ssm(reg).version == pushes[0] and _ssm(reg).back is None
    with pytest.raises(NotFound, match="no earlier version"):
        rollback(PROJECT, ENV, registry=reg)


def test_a_crash_between_the_log_and_ssm_is_repaired_by_the_next_reader(published):
    reg, versions = published
    first, _ = promote(PROJECT, ENV, versions[0], registry=reg)
    log = _log(reg)
    published = reg.get_published(PROJECT, versions[1])
    crashed = pushed(first, pointer_for(published, reg, reason="crashed", actor="ci"))
    log.create(PROJECT, ENV, crashed)  # the log write only: the writer died before SSM
    assert _ssm(reg) == first
    assert log.latest(PROJECT, ENV) == crashed and _ssm(reg) == first  # latest only reads
    assert log.head(PROJECT, ENV) == crashed
    assert _ssm(reg) == crashed


def test_a_crash_between_the_log_and_ssm_is_repaired_by_the_next_promote(published):
    reg, versions = published
    first, _ = promote(PROJECT, ENV, versions[0], registry=reg)
    log = _log(reg)
    published = reg.get_published(PROJECT, versions[1])
    log.create(PROJECT, ENV, pushed(first, pointer_for(published, reg, reason="crashed")))
    third, _ = promote(PROJECT, ENV, versions[2], registry=reg)
    assert (third.seq, third.back) == (3, 2)
    assert _ssm(reg) == third
    _, to = rollback(PROJECT, ENV, registry=reg)
    assert to.version == versions[1]  # the crashed writer's entry counts: it is the log


def test_a_writer_whose_ssm_put_was_overtaken_puts_the_real_head(published):
    """Writer A appends entry 2, writer B entry 3 and puts SSM; A's late SSM put must
    not leave SSM at entry 2."""
    reg, versions = published
    first, _ = promote(PROJECT, ENV, versions[0], registry=reg)
    log = _log(reg)
    a = pushed(first, pointer_for(reg.get_published(PROJECT, versions[1]), reg, reason="a"))
    b = pushed(a, pointer_for(reg.get_published(PROJECT, versions[2]), reg, reason="b"))
    log.create(PROJECT, ENV, a)
    log.write(PROJECT, ENV, b)
    log._publish(PROJECT, ENV, a)  # A's SSM put, arriving last
    assert _ssm(reg) == b


def test_an_ssm_pointer_from_before_the_log_is_adopted_as_entry_one(published):
    reg, versions = published
    manifest = reg.get_manifest(PROJECT, versions[0])
    legacy = ModelPointer(
        version=versions[0],
        uri=reg.platform.version_uri(PROJECT, versions[0]),
        sha256=manifest.model_sha256,
        promoted_at=now(),
        promoted_by="old-mlopsctl",
        reason="before the log",
    )
    PointerStore(reg.platform).put(PROJECT, ENV, legacy)
    second, _ = promote(PROJECT, ENV, versions[1], registry=reg)
    log = _log(reg)
    adopted = log.entry(PROJECT, ENV, 1)
    assert adopted == legacy.model_copy(update={"seq": 1, "back": None})
    assert (second.seq, second.back) == (2, 1)
    _, to = rollback(PROJECT, ENV, registry=reg)
    assert to.version == versions[0] and to.promoted_by != "old-mlopsctl"
    assert [e.seq for e in log.history(PROJECT, ENV)] == [3, 2, 1]


def test_ssm_written_by_hand_is_put_back_to_the_log_head(published):
    reg, versions = published
    first, _ = promote(PROJECT, ENV, versions[0], registry=reg)
    name = reg.platform.pointer_param(PROJECT, ENV)
    aws.client("ssm").put_parameter(Name=name, Value="not json", Type="String", Overwrite=True)
    assert _log(reg).head(PROJECT, ENV) == first
    assert _ssm(reg) == first
    forged = first.model_copy(update={"version": versions[3]})  # same seq, other version
    PointerStore(reg.platform).put(PROJECT, ENV, forged)
    assert _log(reg).head(PROJECT, ENV) == first and _ssm(reg) == first


def test_rollback_copies_every_field_of_the_entry_it_returns_to(published):
    reg, versions = published
    first, _ = promote(PROJECT, ENV, versions[0], registry=reg, reason="first", actor="ci")
    promote(PROJECT, ENV, versions[1], registry=reg)
    _, to = rollback(PROJECT, ENV, registry=reg, actor="ops", reason="bad latency")
    assert to.model_dump(exclude={"promoted_at", "promoted_by", "reason", "action", "seq"}) == (
        first.model_dump(exclude={"promoted_at", "promoted_by", "reason", "action", "seq"})
    )
    assert (to.promoted_by, to.reason, to.action, to.seq) == ("ops", "bad latency", "rollback", 3)


def test_history_is_newest_first_and_limited(published):
    reg, versions = published
    for v in versions[:3]:
        promote(PROJECT, ENV, v, registry=reg)
    rollback(PROJECT, ENV, registry=reg)
    entries = _log(reg).history(PROJECT, ENV)
    assert [(e.seq, e.version, e.action) for e in entries] == [
        (4, versions[1], "rollback"),
        (3, versions[2], "promote"),
        (2, versions[1], "promote"),
        (1, versions[0], "promote"),
    ]
    assert [e.seq for e in _log(reg).history(PROJECT, ENV, limit=2)] == [4, 3]
    assert _log(reg).history(PROJECT, "staging") == []


def _stored_entry(reg: Registry, seq: int) -> bytes:
    key = reg.platform.promotion_key(PROJECT, ENV, seq)
    return aws.client("s3").get_object(Bucket=reg.bucket, Key=key)["Body"].read()


def _forge_entry(reg: Registry, seq: int, body: bytes) -> None:
    key = reg.platform.promotion_key(PROJECT, ENV, seq)
    aws.client("s3").put_object(Bucket=reg.bucket, Key=key, Body=body)


def test_entries_are_sealed_with_the_promotion_key_not_the_publishers(published):
    reg, versions = published
    promote(PROJECT, ENV, versions[0], registry=reg)
    raw = _stored_entry(reg, 1)
    key = reg.platform.promotion_key(PROJECT, ENV, 1)
    document = signing.unseal(reg.platform.promotion_signing_key, ENTRY_TYPE, raw, "test", key)
    assert ModelPointer.model_validate(document).version == versions[0]
    # Two keys, two signers: the publisher's key does not vouch for a log entry.
    with pytest.raises(IntegrityError, match="not with the platform's key"):
        signing.unseal(reg.platform.model_signing_key, ENTRY_TYPE, raw, "test", key)
    # Sealed for its own place: not for another one.
    with pytest.raises(IntegrityError, match="does not verify"):
        signing.unseal(reg.platform.promotion_signing_key, ENTRY_TYPE, raw, "test")
    other = reg.platform.promotion_key(PROJECT, "staging", 1)
    with pytest.raises(IntegrityError, match="does not verify for"):
        signing.unseal(reg.platform.promotion_signing_key, ENTRY_TYPE, raw, "test", other)


def test_a_genuine_entry_copied_from_another_env_or_project_is_refused(published, tmp_path):
    """A bucket writer copies a genuine, sealed entry with the right seq from staging's
    log (or another project's) to prod's next seq: it must not become prod's head, or the
    next writer would repair SSM to a version nobody promoted to prod."""
    reg, versions = published
    for v in versions[:2]:
        promote(PROJECT, ENV, v, registry=reg)
    for v in versions[:3]:
        promote(PROJECT, "staging", v, registry=reg)
    other = "other-proj"
    reg.register_project(project_config(name=other))
    make_artifacts(tmp_path / "o", project=other, seed=9)
    promote(other, ENV, reg.publish(tmp_path / "o").version, registry=reg)
    s3 = aws.client("s3")
    target = reg.platform.promotion_key(PROJECT, ENV, 3)
    sources = [reg.platform.promotion_key(PROJECT, "staging", 3)]
    # The other project's entry 1, copied where prod's entry 1 of this project was.
    for source in sources:
        s3.copy_object(
            Bucket=reg.bucket, Key=target, CopySource={"Bucket": reg.bucket, "Key": source}
        )
        with pytest.raises(IntegrityError, match="copied here from another place") as exc:
            _log(reg).history(PROJECT, ENV)
        assert target in exc.value.where
        with pytest.raises(IntegrityError):
            promote(PROJECT, ENV, versions[3], registry=reg)
        with pytest.raises(IntegrityError):
            rollback(PROJECT, ENV, registry=reg)
        assert _ssm(reg).version == versions[1], "the pointer was not moved"
    s3.delete_object(Bucket=reg.bucket, Key=target)
    s3.copy_object(
        Bucket=reg.bucket,
        Key=reg.platform.promotion_key(PROJECT, ENV, 1),
        CopySource={"Bucket": reg.bucket, "Key": reg.platform.promotion_key(other, ENV, 1)},
    )
    with pytest.raises(IntegrityError, match="copied here from another place"):
        _log(reg).history(PROJECT, ENV)


def test_an_entry_a_bucket_writer_forges_stops_rollback_and_promote(published):
    """The attack the seal stops: a forged head whose ``back`` leads a rollback to an old
    version (signed, so its files verify) of the attacker's choosing."""
    reg, versions = published
    for v in versions[:3]:
        promote(PROJECT, ENV, v, registry=reg)
    genuine = PromotionLog(reg.platform).entry(PROJECT, ENV, 3)
    forged = genuine.model_copy(update={"seq": 4, "back": 1, "promoted_by": "someone-else"})
    attempts = [
        forged.to_json().encode(),  # unsealed
        signing.seal(reg.platform.model_signing_key, ENTRY_TYPE, forged.model_dump(mode="json")),
        # entry 3's genuine seal over another document
        _stored_entry(reg, 3).replace(b'"seq":3', b'"seq":4').replace(b'"back":2', b'"back":1'),
    ]
    for body in attempts:
        _forge_entry(reg, 4, body)
        with pytest.raises(IntegrityError):
            rollback(PROJECT, ENV, registry=reg)
        with pytest.raises(IntegrityError):
            promote(PROJECT, ENV, versions[4], registry=reg)
    assert _ssm(reg).version == versions[2], "the pointer was not moved"


def test_a_huge_object_as_the_next_entry_is_refused_unread(published):
    reg, versions = published
    promote(PROJECT, ENV, versions[0], registry=reg)
    _forge_entry(reg, 2, b"{" + b" " * (signing.MAX_SEALED_BYTES + 10) + b"}")
    with pytest.raises(IntegrityError, match="more than the") as exc:
        _log(reg).history(PROJECT, ENV)
    assert reg.platform.promotion_key(PROJECT, ENV, 2) in exc.value.where
    assert "stay refused on usedcar-price/prod until an administrator deletes it" in (
        exc.value.hint or ""
    )
    with pytest.raises(IntegrityError, match="more than the"):
        promote(PROJECT, ENV, versions[1], registry=reg)
    assert _ssm(reg).version == versions[0]


@pytest.mark.parametrize("which", ["missing alias", "the model-signing key"])
def test_a_wrong_promotion_key_is_a_clear_error_naming_its_setting(published, which):
    import dataclasses

    reg, versions = published
    promote(PROJECT, ENV, versions[0], registry=reg)
    key = "alias/no-such-key" if which == "missing alias" else reg.platform.model_signing_key
    wrong = PromotionLog(dataclasses.replace(reg.platform, promotion_log_key=key))
    with pytest.raises((NotFound, IntegrityError)) as exc:
        wrong.history(PROJECT, ENV)
    assert "MLOPS_PROMOTION_KEY" in exc.value.hint and exc.value.exit_code != 0
    if which == "missing alias":
        assert "promotion-signing key" in exc.value.what and "no-such-key" in exc.value.what
        with pytest.raises(NotFound, match="promotion-signing key"):
            wrong.create(PROJECT, "staging", pushed(None, _log(reg).head(PROJECT, ENV)))
        assert _log(reg).history(PROJECT, "staging") == []
