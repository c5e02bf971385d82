"""A BlueGreen ModelDeployment with spec.approval, end to end on the local data plane.

Each new revision starts beside the live one and waits, before any production traffic
moves, for 'mlopsctl approve' (then ECS switches all traffic, the controller judges the
step, the pointer moves and records the approval) or 'mlopsctl reject' (the new revision
never takes production traffic). A rollback to an earlier version that scores below the
live one is neither held nor analysed. Steady predictions flow through the load balancer
the whole time, and none of them fails.
"""

from __future__ import annotations

import json
import time

from botocore.exceptions import EndpointConnectionError
from conftest import wait_for
from factories import make_artifacts, project_config
from progressive_support import (
    NAME,
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

from controller.sources.directory import DirectorySource
from mlops_core.pointer import PointerStore
from mlops_core.promotion_log import PromotionLog
from mlops_core.registry import Registry
from mlopsctl.cli import main

SPEC = {
    "strategy": {"type": "BlueGreen", "bakeMinutes": 1},
    "approval": {"timeoutMinutes": 60},
    "analysis": {"minRequests": 40, "maxLatencyP99Ratio": 20, "timeoutMinutes": 60},
}


def _degraded(status, reason: str | None = None) -> bool:
    d = status.condition("Degraded")
    return d is not None and d.status == "True" and reason in (None, d.reason)


def test_blue_green_waits_for_approval_a_rejection_never_takes_traffic_and_a_rollback_is_not_held(
    env, tmp_path, monkeypatch, capsys
):
    grace(monkeypatch)
    monkeypatch.setenv("MLOPS_ACTOR", "ana@example.com")
    platform = env.platform
    registry = Registry(platform)
    registry.register_project(project_config())

    def publish(seed: int, r2: float) -> str:
        folder = tmp_path / f"v{seed}"
        make_artifacts(folder, seed=seed, r2=r2)
        return registry.publish(folder).version

    v1, v2, v3 = publish(1, 0.7), publish(2, 0.8), publish(3, 0.8)
    source = DirectorySource(tmp_path / "manifests", create=True)
    rec = reconciler(env)

    def declare(version: str, generation: int):
        dep = deployment(version, generation, **SPEC)
        source.put_manifest(dep)
        return dep

    def cli(*args: str) -> int:
        return main([*args, "--source", str(source.path)])

    status = drive(rec, declare(v1, 1), None, ready)  # the first revision takes all at once
    with Predictions(endpoint(env)) as load:
        # -- v2 waits for approval, with no production traffic.
        dep2 = declare(v2, 2)
        status = drive(rec, dep2, status, lambda s: reason(s) == "True:AwaitingApproval")
        message = status.condition("Progressing").message
        assert f"mlopsctl approve {NAME} --version {v2}" in message
        held_from = time.monotonic()
        for _ in range(5):
            status = rec.reconcile(dep2, status).status
            time.sleep(0.3)
        assert reason(status) == "True:AwaitingApproval"
        assert load.share(v2, held_from, time.monotonic())[0] == 0.0
        assert PointerStore(platform).get(PROJECT, "prod").version == v1

        # `mlopsctl status` shows the rollout: both versions, their shares, the pause.
        capsys.readouterr()
        assert main(["status", "--project", PROJECT, "-o", "json"]) == 0
        (prod,) = [e for e in json.loads(capsys.readouterr().out)["envs"] if e["env"] == "prod"]
        shift = prod["shift"]
        assert shift["strategy"] == "BLUE_GREEN" and shift["stage"] == "POST_TEST_TRAFFIC_SHIFT"
        assert shift["new"] == {"version": v2, "percent": 0.0}
        assert shift["stable"] == {"version": v1, "percent": 100.0}
        assert shift["paused_at_hook"]

        # The caller names the version they approve; another one is refused (exit 4).
        assert cli("approve", NAME, "--version", v3, "--reason", "x") == 4
        assert cli("approve", NAME, "--reason", "") == 2
        assert cli("approve", NAME, "--version", v2, "--reason", "reviewed the canary") == 0
        assert "approved" in capsys.readouterr().out
        assert cli("reject", NAME, "--reason", "too late") == 4  # decided once
        status = drive(rec, dep2, status, ready)
        assert status.rollout.approval.by == "ana@example.com"
        assert [s.verdict for s in status.rollout.steps] == ["Pass"]
        assert status.rollout.steps[0].traffic_percent == 100.0
        live = PointerStore(platform).get(PROJECT, "prod")
        assert live.version == v2
        assert live.approval["by"] == "ana@example.com"
        assert live.approval["reason"] == "reviewed the canary"
        assert PromotionLog(platform).head(PROJECT, "prod").approval == live.approval

        # -- v3 is rejected: rolled back before it ever serves production.
        dep3 = declare(v3, 3)
        status = drive(rec, dep3, status, lambda s: reason(s) == "True:AwaitingApproval")
        v3_from = time.monotonic()
        # The answer to ECS is lost once (it went through; the pass sees an error), as on a
        # read timeout: the failed pass keeps the decision, so the rollback is explained.
        # And the next pass reads the service as it was just before ECS's rollback began,
        # then the rollback's service deployment (ECS acting between two reads, as a busy
        # machine lets it): that rollback must not be taken for a new rollout either.
        answer, lost, raced = rec.executor.continue_deployment, [], []
        services, ecs = rec.observer._services, env.ecs()
        service = platform.service_name(PROJECT, "prod")

        def newest_service_deployment() -> str:
            listed = ecs.list_service_deployments(cluster=platform.ecs_cluster, service=service)
            return max(listed["serviceDeployments"], key=lambda d: d["createdAt"])[
                "serviceDeploymentArn"
            ]

        def services_read_before_the_rollback(names):
            raced.append(names)
            monkeypatch.setattr(rec.observer, "_services", services)
            return before[0]

        def answer_then_lose_the_reply(action, log):
            if lost:
                return answer(action, log)
            before.append(services({service}))
            rejected = newest_service_deployment()
            answer(action, log)
            lost.append(action.action)
            wait_for(lambda: newest_service_deployment() != rejected, 60, "ECS's rollback")
            monkeypatch.setattr(rec.observer, "_services", services_read_before_the_rollback)
            raise EndpointConnectionError(endpoint_url="http://ecs.local/")

        before: list = []
        monkeypatch.setattr(rec.executor, "continue_deployment", answer_then_lose_the_reply)
        assert cli("reject", NAME, "--version", v3, "--reason", "not this week") == 0
        status = drive(rec, dep3, status, lambda s: _degraded(s, "RolloutFailed"))
        degraded = status.condition("Degraded")
        assert lost == ["ROLLBACK"] and len(raced) == 1
        assert "rejected by ana@example.com: not this week" in degraded.message, degraded
        assert status.failed_version == v3 and status.rollout.outcome == "RolledBack"
        assert PointerStore(platform).get(PROJECT, "prod").version == v2
        wait_for(lambda: not env.tasks(platform.service_name(PROJECT, "prod"))[1:], 60,
                 "the rejected revision's task to stop")  # fmt: skip

        # -- back to v1, which scores below v2 but was live here: not held, not analysed.
        dep1 = declare(v1, 4)
        status = drive(rec, dep1, status, ready)
        assert PointerStore(platform).get(PROJECT, "prod").version == v1
        messages = [c.message for c in status.conditions]
        assert any("max_regression" in m or "live" in m for m in messages), messages
        assert status.rollout.canary_version == v1 and status.rollout.steps == []
        assert status.rollout.approval is None
    assert load.failed == 0, (load.codes, load.errors[:5])
    assert load.share(v3, v3_from, time.monotonic())[0] == 0.0
