"""A version declared while a traffic-shifting rollout of another one is in progress,
end to end on the local data plane: the rollout in progress is rolled back first (at its
pause, or by ECS's StopServiceDeployment when it has none), then the declared version
goes out alone. Two new revisions never share the canary's target group."""

from __future__ import annotations

import time

from conftest import wait_for
from factories import make_artifacts, project_config
from progressive_support import (
    PROJECT,
    Predictions,
    deployment,
    drive,
    endpoint,
    grace,
    ready,
    reason,
    reconciler,
)

from mlops_core.pointer import PointerStore
from mlops_core.registry import Registry

# No analysis and no approval: no pause to answer. A long bake (10 min: 30 s at the
# tests' time scale) holds the canary at its share while v3 is declared.
CANARY = {"type": "Canary", "canary": {"percent": 30, "bakeMinutes": 10}}


def test_a_version_declared_mid_canary_stops_it_and_then_goes_out_alone(env, tmp_path, monkeypatch):
    grace(monkeypatch)
    platform = env.platform
    registry = Registry(platform)
    registry.register_project(project_config())
    versions = []
    for seed in (1, 2, 3):
        make_artifacts(tmp_path / f"v{seed}", seed=seed, r2=0.8)
        versions.append(registry.publish(tmp_path / f"v{seed}").version)
    v1, v2, v3 = versions
    spec = {"strategy": CANARY}
    rec = reconciler(env)
    status = drive(rec, deployment(v1, 1, **spec), None, ready)
    service = platform.service_name(PROJECT, "prod")

    with Predictions(endpoint(env)) as load:
        # v2 takes its 30 %.
        status = drive(
            rec,
            deployment(v2, 2, **spec),
            status,
            lambda s: s.rollout is not None and s.rollout.canary_percent == 30.0,
        )
        wait_for(
            lambda: 0 < load.share(v2, time.monotonic() - 2, time.monotonic())[0] < 1,
            30,
            "v2 to answer part of the traffic",
        )
        # v3 is declared: v2's rollout is stopped (no hook to answer), rolled back to v1,
        # and only then does v3 go out.
        dep3 = deployment(v3, 3, **spec)
        status = rec.reconcile(dep3, status).status
        assert reason(status) == "True:Superseding", status.conditions
        assert "stopped and rolled back" in status.condition("Progressing").message
        assert rec.executor.writes["StopDeployment"] == 1
        served: set[str] = set()

        def watch(s) -> None:
            window = [v for t, v in load.answers if t >= time.monotonic() - 1]
            if v2 in window and v3 in window:
                served.add("both")

        status = drive(rec, dep3, status, ready, seen=watch, timeout=300)
        assert rec.executor.writes["StopDeployment"] == 1  # once, not at every pass
    assert load.failed == 0, (load.codes, load.errors[:5])
    assert "both" not in served  # v2 and v3 never answered side by side
    assert PointerStore(platform).get(PROJECT, "prod").version == v3
    assert status.rollout.canary_version == v3 and status.rollout.outcome == "Completed"
    deployments = env.ecs().list_service_deployments(cluster=platform.ecs_cluster, service=service)[
        "serviceDeployments"
    ]
    statuses = sorted(d["status"] for d in deployments)
    assert "ROLLBACK_SUCCESSFUL" in statuses, statuses
