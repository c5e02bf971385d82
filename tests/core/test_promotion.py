"""Promotion gates and rollback over the SSM pointer's history."""

from __future__ import annotations

import pytest
from factories import make_artifacts, project_config

from mlops_core import aws
from mlops_core.claims import Claims
from mlops_core.errors import Conflict, GateFailed, InvalidInput, NotFound
from mlops_core.pointer import PointerStore
from mlops_core.promotion import promote, rollback
from mlops_core.promotion_log import PromotionLog
from mlops_core.registry import Registry


@pytest.fixture
def published(platform, tmp_path):
    reg = Registry(platform)
    reg.register_project(project_config(min_r2=0.5, max_regression=0.05))
    versions = {}
    for seed, r2 in [(1, 0.80), (2, 0.82), (3, 0.60), (4, 0.40)]:
        m = make_artifacts(tmp_path / str(seed), seed=seed, r2=r2)
        reg.publish(tmp_path / str(seed))
        versions[r2] = m.version
    return reg, versions


def test_promote_writes_the_pointer(published):
    reg, v = published
    pointer, results = promote("usedcar-price", "prod", v[0.80], registry=reg, actor="ci")
    assert all(r.passed for r in results)
    stored = PointerStore(reg.platform).get("usedcar-price", "prod")
    assert stored == pointer
    assert stored.version == v[0.80] and stored.promoted_by == "ci"
    assert stored.uri == reg.platform.version_uri("usedcar-price", v[0.80])


def test_gates_refuse_and_name_the_gate(published):
    reg, v = published
    with pytest.raises(GateFailed, match="min_r2"):
        promote("usedcar-price", "prod", v[0.40], registry=reg)
    assert PointerStore(reg.platform).get("usedcar-price", "prod") is None
    promote("usedcar-price", "prod", v[0.82], registry=reg)
    with pytest.raises(GateFailed, match="max_regression"):
        promote("usedcar-price", "prod", v[0.60], registry=reg)
    assert PointerStore(reg.platform).get("usedcar-price", "prod").version == v[0.82]


def test_force_needs_a_reason_and_records_it(published):
    reg, v = published
    with pytest.raises(InvalidInput, match="--reason"):
        promote("usedcar-price", "prod", v[0.40], registry=reg, force=True)
    pointer, _ = promote(
        "usedcar-price", "prod", v[0.40], registry=reg, force=True, reason="hotfix"
    )
    assert "FORCED past min_r2" in pointer.reason and "hotfix" in pointer.reason


def test_bad_targets_change_nothing(published):
    reg, v = published
    with pytest.raises(NotFound, match="not published"):
        promote("usedcar-price", "prod", "20990101T000000Z-abcdef0", registry=reg)
    with pytest.raises(NotFound, match="unknown project"):
        promote("other", "prod", v[0.80], registry=reg)
    with pytest.raises(InvalidInput, match="unknown env 'qa'"):
        promote("usedcar-price", "qa", v[0.80], registry=reg)
    assert PointerStore(reg.platform).history("usedcar-price", "prod") == []


def test_rollback_walks_history_like_a_stack(published):
    reg, v = published
    for version in (v[0.80], v[0.82]):
        promote("usedcar-price", "prod", version, registry=reg)
    promote("usedcar-price", "prod", v[0.60], registry=reg, force=True, reason="test")
    store = PointerStore(reg.platform)
    _, to = rollback("usedcar-price", "prod", registry=reg)
    assert to.version == v[0.82] and to.action == "rollback"
    _, to = rollback("usedcar-price", "prod", registry=reg)
    assert to.version == v[0.80]
    with pytest.raises(NotFound, match="no earlier version"):
        rollback("usedcar-price", "prod", registry=reg)
    assert store.get("usedcar-price", "prod").version == v[0.80]


def test_rollback_without_history_is_clear(published):
    reg, _ = published
    with pytest.raises(NotFound, match="no model pointer"):
        rollback("usedcar-price", "staging", registry=reg)


def test_a_pointer_created_empty_by_terraform_counts_as_unset(published):
    reg, v = published
    name = reg.platform.pointer_param("usedcar-price", "prod")
    aws.client("ssm").put_parameter(Name=name, Value="{}", Type="String")
    store = PointerStore(reg.platform)
    assert store.get("usedcar-price", "prod") is None
    pointer, _ = promote("usedcar-price", "prod", v[0.80], registry=reg)
    assert store.get("usedcar-price", "prod") == pointer
    assert [p.version for p in store.history("usedcar-price", "prod")] == [v[0.80]]


def test_an_owned_env_refuses_promote_and_rollback_unless_forced_with_a_reason(published):
    reg, v = published
    project, env = "usedcar-price", "prod"
    promote(project, env, v[0.80], registry=reg, actor="ci")
    promote(project, env, v[0.82], registry=reg, actor="ci")
    Claims(reg.platform).create(project, env, "ml/usedcar-prod", "kube:https://k8s")
    log = PromotionLog(reg.platform)
    before = log.history(project, env)
    for attempt in (
        lambda: promote(project, env, v[0.80], registry=reg),
        lambda: rollback(project, env, registry=reg),
    ):
        with pytest.raises(Conflict) as refused:
            attempt()
        message = refused.value.render()
        assert "owned by ModelDeployment ml/usedcar-prod (from kube:https://k8s)" in message
        assert "mlopsctl deploy --env prod" in message and "--force --reason" in message
        assert "claims/prod.json" in message  # where
    with pytest.raises(InvalidInput, match="--reason"):
        rollback(project, env, registry=reg, force=True)
    assert log.history(project, env) == before  # nothing written

    _, after = rollback(project, env, registry=reg, force=True, reason="incident 42")
    assert after.version == v[0.80] and after.owner == "ml/usedcar-prod"
    assert after.reason == "FORCED past the owner ml/usedcar-prod: incident 42"
    pointer, _ = promote(project, env, v[0.82], registry=reg, force=True, reason="fixed")
    assert pointer.owner == "ml/usedcar-prod" and "FORCED past the owner" in pointer.reason
    assert log.head(project, env) == pointer
    assert PointerStore(reg.platform).get(project, env) == pointer


def test_a_released_claim_lets_promote_through_again(published):
    reg, v = published
    claims = Claims(reg.platform)
    claims.create("usedcar-price", "prod", "ml/a")
    assert claims.release("usedcar-price", "prod", "ml/b") is False  # not b's to release
    assert claims.release("usedcar-price", "prod", "ml/a") is True
    pointer, _ = promote("usedcar-price", "prod", v[0.80], registry=reg)
    assert pointer.owner is None and "FORCED" not in pointer.reason


def test_a_version_live_before_is_a_rollback_not_judged_by_regression(published):
    reg, v = published
    project, env = "usedcar-price", "prod"
    promote(project, env, v[0.60], registry=reg)
    promote(project, env, v[0.82], registry=reg)
    # 0.60 is 0.22 below the live 0.82 (max_regression 0.05), but it was live at entry 1.
    pointer, results = promote(project, env, v[0.60], registry=reg, actor="oncall")
    assert pointer.version == v[0.60] and "FORCED" not in pointer.reason
    assert "rollback to" in pointer.reason and "entry 1" in pointer.reason
    verdicts = {r.name: r.verdict for r in results}
    assert verdicts["max_regression"] == "SKIP" and verdicts["min_r2"] == "PASS"
    (skip,) = [r for r in results if r.name == "max_regression"]
    assert "was live in prod before (promotion log entry 1)" in skip.detail
    # Another env's history does not make it a rollback here.
    promote(project, "staging", v[0.82], registry=reg)
    with pytest.raises(GateFailed, match="max_regression"):
        promote(project, "staging", v[0.60], registry=reg)


def test_a_rollback_still_meets_the_absolute_gates(published):
    reg, v = published
    project, env = "usedcar-price", "prod"
    promote(project, env, v[0.40], registry=reg, force=True, reason="bootstrap")
    promote(project, env, v[0.82], registry=reg)
    with pytest.raises(GateFailed) as refused:
        promote(project, env, v[0.40], registry=reg)
    message = refused.value.render()
    assert "min_r2" in message and "SKIP max_regression" in message
    assert refused.value.exit_code == 6
    assert PointerStore(reg.platform).get(project, env).version == v[0.82]
