"""A drain ends only once the load balancer has seen it: a late reader loses no request.

The local load balancer reads the endpoint between requests; on a busy machine a read can
come later than a target group's (scaled) deregistration delay. Here it reads every 4 s
while targets drain for 1.5 s (30 s at time scale 0.05), so a drain that ended on its
delay alone would stop a task the load balancer still sends requests to: 502s.
"""

from __future__ import annotations

from conftest import Load, wait_for

PLANE_SETTINGS = {"MLOPS_DATAPLANE_LB_REFRESH_SECONDS": "4"}


def test_a_task_scaled_in_under_load_stops_only_after_the_load_balancer_saw_it_drain(env):
    group = env.load_balancer()
    td = env.register("demo-prod", VERSION="v1")
    env.service("demo-prod", td, target_group=group, count=2)
    env.wait_rollout("demo-prod", "COMPLETED", timeout=120)
    url = env.url()
    with Load(url) as load:
        # Both targets answer before one is taken away.
        wait_for(lambda: len(load.versions) >= 40, timeout=60, what="load through both targets")
        before = load.total
        env.ecs().update_service(
            cluster=env.platform.ecs_cluster, service="demo-prod", desiredCount=1
        )
        stopped = wait_for(
            lambda: [
                t for t in env.tasks("demo-prod", status="STOPPED") if t["lastStatus"] == "STOPPED"
            ],
            timeout=90,
            what="one task to stop after draining",
        )
        # Requests kept flowing through the drain and past the stop, to the remaining task.
        at_stop = load.total
        wait_for(lambda: load.total - at_stop >= 100, timeout=60, what="load after the stop")
    assert load.total - before >= 100
    assert load.failed == 0, (load.codes, load.errors[:3])
    assert stopped[0]["stopCode"] == "ServiceSchedulerInitiated"
    assert len(env.tasks("demo-prod")) == 1
