"""spec.monitoring on the reconcile path: capture and drift rules pinned in the revision,
and the Drifted condition read from the newest drift result (reported, never acted on)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from drift_data import drift_result_for
from reconcile_support import PROJECT, RolloutObserver, cond, ecs_service, make_deployment

from controller.actions import RegisterTaskDefinition, UpdateService
from controller.api import ModelDeploymentStatus
from controller.drifted import DRIFTED, DriftObservation, with_drifted
from controller.observe import COMPLETED
from mlops_core import aws, drift_result
from mlops_core.drift_result import DriftResult
from mlops_core.registry import Registry

MONITORED = {"capturePercent": 25, "drift": {"alpha": 0.01, "correction": "bonferroni"}}


def revision_env(platform) -> dict[str, str]:
    arn = ecs_service(platform)["taskDefinition"]
    td = aws.client("ecs").describe_task_definition(taskDefinition=arn)["taskDefinition"]
    return {e["name"]: e["value"] for e in td["containerDefinitions"][0]["environment"]}


def result(version: str, drifted: list[str], verdict: str = "drift") -> DriftResult:
    return drift_result_for(PROJECT, "prod", version, drifted, verdict)


@pytest.fixture
def fresh(platform, clock, make_reconciler):
    """A reconciler whose observer re-reads drift results on every pass."""

    def make():
        observer = RolloutObserver(platform, Registry(platform), clock=clock, drift_ttl=0)
        observer.rollout = COMPLETED
        return make_reconciler(observer=observer)

    return make


def converged(rec, dep):
    st = rec.reconcile(dep, None).status
    return rec.reconcile(dep, st).status


def test_capture_and_drift_rules_are_pinned_and_a_change_rolls_a_revision(
    fresh, versions, platform, mutations
):
    rec = fresh()
    dep = make_deployment(version=versions.good, monitoring=MONITORED)
    st = converged(rec, dep)
    env = revision_env(platform)
    assert env["MLOPS_CAPTURE_PERCENT"] == "25"
    assert (env["MLOPS_DRIFT_ALPHA"], env["MLOPS_DRIFT_CORRECTION"]) == ("0.01", "bonferroni")
    mutations.clear()
    assert rec.reconcile(dep, st).actions == [] and mutations == {}

    more = make_deployment(
        version=versions.good, generation=2, monitoring={**MONITORED, "capturePercent": 100}
    )
    kinds = [type(a) for a in rec.reconcile(more, st).actions]
    assert kinds == [RegisterTaskDefinition, UpdateService]
    assert revision_env(platform)["MLOPS_CAPTURE_PERCENT"] == "100"


def test_without_capture_the_revision_is_unchanged_and_there_is_no_drifted_condition(
    fresh, versions, platform
):
    st = converged(fresh(), make_deployment(version=versions.good))
    assert not any(k.startswith(("MLOPS_CAPTURE_", "MLOPS_DRIFT_")) for k in revision_env(platform))
    assert st.condition(DRIFTED) is None


def test_drifted_follows_the_newest_result_and_never_acts(fresh, versions, platform, mutations):
    rec = fresh()
    dep = make_deployment(version=versions.good, monitoring=MONITORED)
    st = converged(rec, dep)
    assert cond(st, DRIFTED) == ("Unknown", "NoResult")

    drift_result.write(platform, result(versions.good, ["mileage", "year"]), "<html></html>")
    mutations.clear()
    out = rec.reconcile(dep, st)
    # Reported, never acted on: no action, no AWS write, Ready stays.
    assert out.actions == [] and mutations == {}
    assert cond(out.status, DRIFTED) == ("True", "Drifted")
    message = out.status.condition(DRIFTED).message
    assert "2 of 4 features drifted (mileage, year)" in message and "report.html" in message
    assert cond(out.status, "Ready") == ("True", "RolloutComplete")
    drifted_at = out.status.condition(DRIFTED).last_transition_time

    # A newer run finds none: False, and the transition time moves.
    later = result(versions.good, [], verdict="no_drift")
    later = later.model_copy(update={"window_end": later.window_end + timedelta(seconds=1)})
    drift_result.write(platform, later, "<html></html>")
    again = rec.reconcile(dep, out.status).status
    assert cond(again, DRIFTED) == ("False", "NoDrift")
    assert again.condition(DRIFTED).last_transition_time >= drifted_at


def test_drift_reads_are_cached_between_passes(platform, clock, make_reconciler, versions):
    observer = RolloutObserver(platform, Registry(platform), clock=clock)
    observer.rollout = COMPLETED
    rec = make_reconciler(observer=observer)
    dep = make_deployment(version=versions.good, monitoring=MONITORED)
    st = converged(rec, dep)
    observer.reads.clear()
    for _ in range(3):
        st = rec.reconcile(dep, st).status
    assert observer.reads["s3:drift"] == 0  # read once within drift_ttl, by the first passes


def test_the_condition_for_each_outcome():
    spec = make_deployment(version="20261128T064500Z-3f9a2c1", monitoring=MONITORED).spec
    v = "20261128T064500Z-3f9a2c1"
    empty = ModelDeploymentStatus()
    cases = [
        (DriftObservation(v), ("Unknown", "NoResult")),
        (DriftObservation(v, error="AccessDenied"), ("Unknown", "ResultUnreadable")),
        (
            DriftObservation(v, result(v, [], verdict="insufficient_data")),
            ("Unknown", "InsufficientData"),
        ),
        (DriftObservation(v, result(v, ["x"])), ("True", "Drifted")),
        (DriftObservation(v, result(v, [], verdict="no_drift")), ("False", "NoDrift")),
    ]
    for obs, want in cases:
        assert cond(with_drifted(empty, spec, obs, 1), DRIFTED) == want
    # Monitoring turned off: the condition goes.
    drifted = with_drifted(empty, spec, DriftObservation(v, result(v, ["x"])), 1)
    off = make_deployment(version=v).spec
    assert with_drifted(drifted, off, None, 1).condition(DRIFTED) is None


def test_a_turn_to_drifted_is_one_warning_event_and_staying_drifted_is_none():
    from controller.sources.kube import KubeSource

    class Client:
        server = "https://kube.test"

        def __init__(self):
            self.events: list[tuple[str, bool]] = []

        def post_event(self, involved, *, reason, message, warning):
            self.events.append((reason, warning))

    client = Client()
    source = KubeSource(client, lease=None)  # type: ignore[arg-type]
    source.observe("ADDED", {"metadata": {"name": "d", "namespace": "ml", "uid": "1"}})
    spec = make_deployment(version="20261128T064500Z-3f9a2c1", monitoring=MONITORED).spec
    v = "20261128T064500Z-3f9a2c1"
    unknown = with_drifted(ModelDeploymentStatus(), spec, DriftObservation(v), 1)
    drifted = with_drifted(unknown, spec, DriftObservation(v, result(v, ["x"])), 1)
    source.announce("ml/d", [], unknown, drifted)
    source.announce("ml/d", [], drifted, drifted)
    assert client.events == [("Drifted", True)]
