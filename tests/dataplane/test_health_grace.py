"""The local ECS's health check grace period: the floor it adds for a local process's
start (imports, a model download) lasts only until the task's health checks get an
answer. A task that answers "not ready" is failed in seconds, as on ECS after the
service's grace period; one that is still starting is left alone."""

from __future__ import annotations

import time

from conftest import wait_for

# A floor far longer than the test: only the answers can end a task's grace early.
PLANE_SETTINGS = {
    "MLOPS_DATAPLANE_MIN_GRACE_SECONDS": "600",
    "MLOPS_DATAPLANE_ANSWERED_GRACE_SECONDS": "1",
}
FAILED = "Task failed ELB health checks in ("


def _failed_checks(env, name: str) -> list[str]:
    return [
        t["stoppedReason"]
        for t in env.tasks(name, status="STOPPED")
        if t.get("stoppedReason", "").startswith(FAILED)
    ]


def test_a_task_answering_not_ready_fails_at_once_and_a_slow_starter_keeps_its_grace(env):
    group = env.load_balancer()
    good = env.register("demo-prod", VERSION="good")
    env.service("demo-prod", good, target_group=group, count=1, grace=20)
    completed = env.wait_rollout("demo-prod", "COMPLETED", timeout=90)

    # Never ready, but answering: failed once the scaled grace (20 s x 0.05) and a second
    # of answers are over, far short of the 600 s floor; the breaker rolls back.
    bad = env.register("demo-prod", VERSION="bad", READY="503")
    ecs = env.ecs()
    ecs.update_service(cluster=env.platform.ecs_cluster, service="demo-prod", taskDefinition=bad)
    failed_id = env.primary("demo-prod")["id"]
    wait_for(
        lambda: env.primary("demo-prod")["id"] not in (failed_id, completed["id"]),
        timeout=90,
        what="the circuit breaker's rollback",
        show=lambda: env.deployments("demo-prod"),
    )
    assert len(_failed_checks(env, "demo-prod")) >= 3
    env.wait_rollout("demo-prod", "COMPLETED", timeout=60)

    # Still starting (nothing listens for 15 s): no answer, so the floor holds.
    before = len(_failed_checks(env, "demo-prod"))
    slow = env.register("demo-prod", VERSION="slow", LISTEN_AFTER="15")
    ecs.update_service(cluster=env.platform.ecs_cluster, service="demo-prod", taskDefinition=slow)
    time.sleep(10)
    assert len(_failed_checks(env, "demo-prod")) == before
    env.wait_rollout("demo-prod", "COMPLETED", timeout=90)
    assert env.describe("demo-prod")["taskDefinition"] == slow
    assert len(_failed_checks(env, "demo-prod")) == before
