"""Declaring a version that was live before in the env is a rollback: its max_regression
is skipped (SKIP, with the reason, in the status), its absolute gates still apply, and
``spec.gates.override`` lets one version (only that one) past failed gates."""

from __future__ import annotations

from reconcile_support import PROJECT, cond, make_deployment

from controller.actions import MovePointer
from controller.observe import COMPLETED
from mlops_core.pointer import PointerStore
from mlops_core.promotion_log import PromotionLog


def _converge(rec, dep, st):
    st = rec.reconcile(dep, st).status
    st = rec.reconcile(dep, st).status
    assert cond(st, "Ready") == ("True", "RolloutComplete"), st
    return st


def test_an_earlier_version_that_scores_below_the_live_one_rolls_back(
    make_reconciler, versions, platform, mutations
):
    rec = make_reconciler()
    rec.observer.rollout = COMPLETED
    # worse (R² 0.60) goes live first: nothing to regress from.
    st = _converge(rec, make_deployment(version=versions.worse), None)
    st = _converge(rec, make_deployment(version=versions.better, generation=2), st)
    # Back to worse: 0.22 below the live 0.82 (max_regression 0.05), but live at entry 1.
    result = rec.reconcile(make_deployment(version=versions.worse, generation=3), st)
    assert not result.degraded, result.status
    assert MovePointer in [type(a) for a in result.actions]
    progressing = result.status.condition("Progressing").message
    assert "SKIP max_regression: rollback" in progressing
    assert "promotion log entry 1" in progressing
    pointer = PointerStore(platform).get(PROJECT, "prod")
    assert pointer.version == versions.worse
    assert "rollback to" in pointer.reason and "max_regression skipped" in pointer.reason
    st = result.status
    # Converged, it stays: no gate flips back to failing against the version it replaced.
    st = rec.reconcile(make_deployment(version=versions.worse, generation=3), st).status
    assert cond(st, "Ready") == ("True", "RolloutComplete")
    assert "SKIP max_regression" in st.condition("Ready").message
    mutations.clear()
    for fresh in (rec, make_reconciler()):  # a restarted controller reads the log anew
        fresh.observer.rollout = COMPLETED
        again = fresh.reconcile(make_deployment(version=versions.worse, generation=3), st)
        assert again.actions == [] and not again.degraded
    assert mutations == {}
    assert [e.version for e in PromotionLog(platform).history(PROJECT, "prod")] == [
        versions.worse,
        versions.better,
        versions.worse,
    ]


def test_a_rollback_still_meets_absolute_gates_unless_overridden(
    make_reconciler, versions, platform
):
    rec = make_reconciler()
    rec.observer.rollout = COMPLETED
    override = {"version": versions.bad, "reason": "incident 7", "by": "alice"}
    first = rec.reconcile(make_deployment(version=versions.bad, gates={"override": override}), None)
    assert not first.degraded, first.status
    assert "FORCED past min_r2 (override by alice: incident 7)" in (
        first.status.condition("Progressing").message
    )
    pointer = PointerStore(platform).get(PROJECT, "prod")
    assert pointer.reason.startswith("FORCED past min_r2: incident 7 (override by alice)")
    st = _converge(rec, make_deployment(version=versions.bad, gates={"override": override}), None)
    st = _converge(rec, make_deployment(version=versions.better, generation=2), st)

    # bad was live before, so max_regression is skipped, but min_r2 still refuses it.
    refused = rec.reconcile(make_deployment(version=versions.bad, generation=3), st)
    degraded = refused.status.condition("Degraded")
    assert (degraded.status, degraded.reason) == ("True", "GateFailed")
    assert "min_r2" in degraded.message and "SKIP max_regression" in degraded.message
    assert refused.actions == [] and PointerStore(platform).get(PROJECT, "prod").version == (
        versions.better
    )
    # An override bound to another version does not count.
    elsewhere = {**override, "version": versions.good}
    refused = rec.reconcile(
        make_deployment(version=versions.bad, generation=4, gates={"override": elsewhere}), st
    )
    assert cond(refused.status, "Degraded") == ("True", "GateFailed")
    forced = rec.reconcile(
        make_deployment(version=versions.bad, generation=5, gates={"override": override}), st
    )
    assert not forced.degraded and PointerStore(platform).get(PROJECT, "prod").version == (
        versions.bad
    )
