"""Rolling deployments on the local data plane, over real HTTP through its load balancer."""

from __future__ import annotations

from collections import Counter

from conftest import Load, wait_for


def test_rolling_update_of_two_tasks_loses_no_request(env):
    group = env.load_balancer()
    v1 = env.register("demo-prod", VERSION="v1")
    env.service("demo-prod", v1, target_group=group)
    first = env.wait_rollout("demo-prod", "COMPLETED")
    assert (first["runningCount"], first["desiredCount"]) == (2, 2)
    url = env.url()

    with Load(url) as load:
        wait_for(lambda: load.versions.count("v1") >= 20, what="v1 to serve")
        v2 = env.register("demo-prod", VERSION="v2")
        env.ecs().update_service(
            cluster=env.platform.ecs_cluster, service="demo-prod", taskDefinition=v2
        )
        done = env.wait_rollout("demo-prod", "COMPLETED")
        assert done["taskDefinition"] == v2
        wait_for(lambda: load.versions[-20:] == ["v2"] * 20, what="only v2 to answer")

    assert load.failed == 0, (load.codes, load.errors[:3])
    assert load.total >= 40 and set(load.versions) == {"v1", "v2"}
    svc = env.describe("demo-prod")
    # Steady state: one deployment, two v2 tasks, each healthy in the target group.
    assert [d["id"] for d in svc["deployments"]] == [done["id"]]
    assert (svc["runningCount"], svc["pendingCount"]) == (2, 0)
    running = env.tasks("demo-prod")
    assert {t["taskDefinitionArn"] for t in running} == {v2}
    assert all(t["lastStatus"] == "RUNNING" and t["startedBy"] == done["id"] for t in running)
    health = env.elb().describe_target_health(TargetGroupArn=group)["TargetHealthDescriptions"]
    assert sorted(h["TargetHealth"]["State"] for h in health) == ["healthy", "healthy"]
    # The old tasks were drained and stopped by the scheduler, not failed.
    stopped = env.tasks("demo-prod", status="STOPPED")
    assert len(stopped) == 2 and {t["taskDefinitionArn"] for t in stopped} == {v1}
    assert {t["stopCode"] for t in stopped} == {"ServiceSchedulerInitiated"}
    messages = [e["message"] for e in svc["events"]]
    assert any("has begun draining connections" in m for m in messages)
    assert messages[0].endswith("has reached a steady state.")
    # Both rollouts are recorded as service deployments, newest first.
    ecs = env.ecs()
    listed = ecs.list_service_deployments(cluster=env.platform.ecs_cluster, service="demo-prod")
    arns = [d["serviceDeploymentArn"] for d in listed["serviceDeployments"]]
    described = ecs.describe_service_deployments(serviceDeploymentArns=arns)["serviceDeployments"]
    assert [d["status"] for d in described] == ["SUCCESSFUL", "SUCCESSFUL"]
    assert described[0]["targetServiceRevision"]["runningTaskCount"] == 2


def test_the_circuit_breaker_rolls_back_a_version_that_never_gets_healthy(env):
    group = env.load_balancer()
    good = env.register("demo-prod", VERSION="good")
    env.service("demo-prod", good, target_group=group)
    completed = env.wait_rollout("demo-prod", "COMPLETED")

    with Load(env.url()) as load:
        wait_for(lambda: len(load.versions) >= 20, what="traffic")
        bad = env.register("demo-prod", VERSION="bad", READY="503")
        env.ecs().update_service(
            cluster=env.platform.ecs_cluster, service="demo-prod", taskDefinition=bad
        )
        failed_id = env.primary("demo-prod")["id"]
        # The bad deployment fails; ECS starts a deployment of the last completed one.
        rollback = wait_for(
            lambda: (p := env.primary("demo-prod"))["id"] not in (failed_id, completed["id"]) and p,
            timeout=90,
            what="a rollback deployment",
            show=lambda: (env.deployments("demo-prod"), env.describe("demo-prod")["events"][:3]),
        )
        assert rollback["taskDefinition"] == good
        assert rollback["rolloutStateReason"] == (
            f"ECS deployment circuit breaker: rolling back to deploymentId {completed['id']}."
        )
        failed = next(d for d in env.describe("demo-prod")["deployments"] if d["id"] == failed_id)
        assert failed["rolloutState"] == "FAILED"
        assert (
            failed["rolloutStateReason"] == "ECS deployment circuit breaker: tasks failed to start."
        )
        assert failed["failedTasks"] >= 3  # ECS's minimum threshold
        env.wait_rollout("demo-prod", "COMPLETED", timeout=60)

    # Traffic never reached the bad tasks, and never failed.
    assert load.failed == 0, (load.codes, load.errors[:3])
    assert set(load.versions) == {"good"}
    svc = env.describe("demo-prod")
    assert svc["taskDefinition"] == good
    assert len(svc["deployments"]) == 1
    bad_tasks = [
        t for t in env.tasks("demo-prod", status="STOPPED") if t["taskDefinitionArn"] == bad
    ]
    # At least the breaker's threshold failed their health checks; any other bad task
    # still starting when it tripped was stopped by the rollback.
    reasons = [t["stoppedReason"] for t in bad_tasks]
    failed_checks = [r for r in reasons if r.startswith("Task failed ELB health checks in (")]
    assert len(failed_checks) >= 3, reasons
    assert all(r in failed_checks or r.startswith("Scaling activity initiated by") for r in reasons)
    ecs = env.ecs()
    listed = ecs.list_service_deployments(cluster=env.platform.ecs_cluster, service="demo-prod")
    statuses = Counter(d["status"] for d in listed["serviceDeployments"])
    assert statuses == Counter({"SUCCESSFUL": 2, "ROLLBACK_SUCCESSFUL": 1})
    rolled = next(d for d in listed["serviceDeployments"] if d["status"] == "ROLLBACK_SUCCESSFUL")
    (doc,) = ecs.describe_service_deployments(
        serviceDeploymentArns=[rolled["serviceDeploymentArn"]]
    )["serviceDeployments"]
    assert doc["deploymentCircuitBreaker"]["status"] == "TRIGGERED"
    assert doc["deploymentCircuitBreaker"]["threshold"] == 3
    assert doc["rollback"]["reason"] == "ECS deployment circuit breaker: tasks failed to start."


def test_draining_lets_requests_in_flight_finish_before_the_task_stops(env):
    group = env.load_balancer()
    # A stop timeout well past the app's own shutdown time (6 s at time scale 0.05), so a
    # busy machine's slow interpreter exit is not taken for a task that ignored SIGTERM.
    td = env.register("demo-prod", VERSION="v1", SLOW_SECONDS="1", stop_timeout=120)
    env.service("demo-prod", td, target_group=group, count=1)
    env.wait_rollout("demo-prod", "COMPLETED")
    url = env.url()
    (task,) = env.tasks("demo-prod")

    import threading

    import httpx

    answers: list[int] = []
    inflight = threading.Thread(
        target=lambda: answers.append(httpx.get(f"{url}/slow", timeout=10).status_code)
    )
    inflight.start()
    wait_for(lambda: "GET /slow" in _output(env, task), what="the slow request to arrive")
    env.ecs().update_service(cluster=env.platform.ecs_cluster, service="demo-prod", desiredCount=0)
    # Deregistered: draining for the target group's delay (30 s at time scale 0.05).
    health = wait_for(
        lambda: [
            h
            for h in env.elb().describe_target_health(TargetGroupArn=group)[
                "TargetHealthDescriptions"
            ]
            if h["TargetHealth"]["State"] == "draining"
        ],
        what="the target to drain",
    )
    assert health[0]["TargetHealth"]["Reason"] == "Target.DeregistrationInProgress"
    (draining,) = env.tasks("demo-prod", status="STOPPED")
    assert draining["lastStatus"] == "DEACTIVATING"
    # No new request goes to a draining target: with no other target, the ALB says 503.
    # The load balancer learns of the deregistration at its next look at the endpoint (as
    # an ALB takes a moment to propagate one), so wait for that, not for a fixed instant.
    wait_for(
        lambda: httpx.get(f"{url}/", timeout=10).status_code == 503,
        what="the load balancer to stop routing to the draining target",
    )
    inflight.join(timeout=10)
    assert answers == [200]
    stopped = wait_for(
        lambda: [
            t for t in env.tasks("demo-prod", status="STOPPED") if t["lastStatus"] == "STOPPED"
        ],
        what="the task to stop after draining",
    )
    assert stopped[0]["stopCode"] == "ServiceSchedulerInitiated"
    assert stopped[0]["containers"][0]["exitCode"] == 0  # it stopped on SIGTERM, cleanly
    assert not env.elb().describe_target_health(TargetGroupArn=group)["TargetHealthDescriptions"]


def _output(env, task) -> str:
    path = env.plane.state / "tasks" / task["taskArn"].rpartition("/")[2] / "output.log"
    return path.read_text() if path.is_file() else ""
