"""A Linear ModelDeployment with spec.analysis, end to end on the local data plane.

ECS (the data plane) adds ``stepPercent`` of production traffic every step, baking and
pausing at its PAUSE hook after each one; the controller judges every step on the
traffic it got and continues until all traffic is on the new revision. Real serving
tasks answer steady predictions through the load balancer the whole time.
"""

from __future__ import annotations

import time

from factories import make_artifacts, project_config
from progressive_support import (
    PROJECT,
    Predictions,
    deployment,
    drive,
    endpoint,
    grace,
    ready,
    reconciler,
)

from controller.api import ModelDeploymentStatus
from mlops_core.pointer import PointerStore
from mlops_core.registry import Registry

LINEAR = {"type": "Linear", "linear": {"stepPercent": 34, "stepBakeMinutes": 1}}
ANALYSIS = {
    "minRequests": 30,
    "maxErrorRateIncrease": 0.01,
    "maxLatencyP99Ratio": 20,  # two revisions on one busy 2-core machine: only gross changes
    "maxPredictionShift": 0.5,
    "timeoutMinutes": 60,  # 3 minutes at the tests' time scale
}
# The observed share of each step may differ from its weight by this much (a few hundred
# answers, round-robin between one task of each revision).
SHARE_TOLERANCE = 0.1


def test_a_linear_rollout_is_judged_at_every_step_and_the_shares_follow_the_weights(
    env, tmp_path, monkeypatch
):
    grace(monkeypatch)
    platform = env.platform
    registry = Registry(platform)
    registry.register_project(project_config())
    versions = []
    for seed in (1, 2):
        make_artifacts(tmp_path / f"v{seed}", seed=seed, r2=0.8)
        versions.append(registry.publish(tmp_path / f"v{seed}").version)
    v1, v2 = versions
    spec = {"strategy": LINEAR, "analysis": ANALYSIS}
    rec = reconciler(env)
    status = drive(rec, deployment(v1, 1, **spec), None, ready)

    # When the status first showed each share of the new revision (the controller's view
    # of ECS's listener rule), to compare with what the load balancer's answers show.
    seen: list[tuple[float, float | None]] = []

    def record(s: ModelDeploymentStatus) -> None:
        percent = s.rollout.canary_percent if s.rollout and s.rollout.outcome is None else None
        if not seen or seen[-1][1] != percent:
            seen.append((time.monotonic(), percent))

    with Predictions(endpoint(env)) as load:
        status = drive(rec, deployment(v2, 2, **spec), status, ready, seen=record, timeout=300)
        seen.append((time.monotonic(), None))
    assert load.failed == 0, (load.codes, load.errors[:5])

    # Two steps judged (34 %, 68 %), each on its own traffic; the last one (100 %) needs
    # no pause. The controller continued each hook once.
    assert [(s.traffic_percent, s.verdict) for s in status.rollout.steps] == [
        (34.0, "Pass"),
        (68.0, "Pass"),
    ], status.rollout.steps
    assert rec.executor.writes["ContinueDeployment"] == 2
    for step in status.rollout.steps:
        assert step.canary.version == v2 and step.stable.version == v1
        assert step.canary.requests >= ANALYSIS["minRequests"] and step.stable.requests > 0
        assert step.canary.error_rate == 0.0 and step.prediction_shift is not None
    # Each step's window starts when its share was first seen: later than the last one's.
    starts = [s.canary.window_start for s in status.rollout.steps]
    assert starts == sorted(starts) and len(set(starts)) == 2
    assert status.rollout.outcome == "Completed"
    assert PointerStore(platform).get(PROJECT, "prod").version == v2

    # The answers clients got while each share held match it too.
    windows = {
        percent: (start, end)
        for (start, percent), (end, _) in zip(seen, seen[1:], strict=False)
        if percent in (34.0, 68.0)
    }
    assert set(windows) == {34.0, 68.0}, seen
    for percent, (start, end) in windows.items():
        share, answers = load.share(v2, start, end)
        assert answers > 30 and abs(share - percent / 100) <= SHARE_TOLERANCE, (
            percent,
            share,
            answers,
        )
