"""spec.strategy on ECS's own traffic-shifting deployments: the controller maps a Canary
ModelDeployment onto deploymentConfiguration and advancedConfiguration, ECS (the local
data plane) moves the production rule's weights, and the pointer follows the traffic."""

from __future__ import annotations

import time

from conftest import IMAGE, wait_for
from factories import make_artifacts, project_config

from controller import loadbalancing
from controller.api import ModelDeployment
from controller.plan import NetworkConfig
from controller.reconcile import Reconciler
from mlops_core.pointer import PointerStore
from mlops_core.registry import Registry

PROJECT = "usedcar-price"
STRATEGY = {"type": "Canary", "canary": {"percent": 50, "bakeMinutes": 1}}


def _deployment(version: str, generation: int) -> ModelDeployment:
    return ModelDeployment.model_validate(
        {
            "metadata": {"name": f"{PROJECT}-prod", "namespace": "ml", "generation": generation},
            "spec": {
                "project": PROJECT,
                "env": "prod",
                "model": {"version": version},
                "serving": {"image": IMAGE, "cpu": 256, "memory": 512, "replicas": 1},
                "strategy": STRATEGY,
            },
        }
    )


def _last_output(env) -> str:
    """The newest task's output, to say why a rollout failed."""
    logs = sorted(env.plane.state.rglob("output.log"), key=lambda p: p.stat().st_mtime)
    return logs[-1].read_text()[-1500:] if logs else ""


def _converge(rec, dep, status, *, env, seen=None, timeout=180):
    deadline = time.monotonic() + timeout
    while True:
        status = rec.reconcile(dep, status).status
        if seen is not None:
            seen()
        ready = status.condition("Ready")
        if ready is not None and ready.status == "True":
            return status
        degraded = status.condition("Degraded")
        assert degraded is None or degraded.status != "True", (degraded, _last_output(env))
        assert time.monotonic() < deadline, status.conditions
        time.sleep(0.3)


def test_a_canary_deployment_runs_on_ecs_and_the_pointer_follows_the_traffic(
    env, tmp_path, monkeypatch
):
    # A real model loads in seconds on a busy machine; at the tests' time scale (0.05) the
    # usual grace period is 3 s, so give the health checks 30 s before they count.
    monkeypatch.setattr(loadbalancing, "HEALTH_CHECK_GRACE_SECONDS", 600)
    platform = env.platform
    registry = Registry(platform)
    registry.register_project(project_config())
    versions = [
        registry.publish(
            make_artifacts(tmp_path / f"v{s}", seed=s, r2=0.8) and tmp_path / f"v{s}"
        ).version
        for s in (1, 2)
    ]
    network = NetworkConfig(
        subnets=tuple(env.subnets), security_groups=(env.security_group,), load_balancers="managed"
    )
    rec = Reconciler(platform, network=network)
    status = _converge(rec, _deployment(versions[0], 1), None, env=env)
    assert PointerStore(platform).get(PROJECT, "prod").version == versions[0]

    service = env.describe(platform.service_name(PROJECT, "prod"))
    config = service["deploymentConfiguration"]
    assert config["strategy"] == "CANARY"
    assert config["canaryConfiguration"] == {"canaryPercent": 50.0, "canaryBakeTimeInMinutes": 1}
    (lb,) = service["loadBalancers"]
    blue = loadbalancing.find_target_group(platform, PROJECT, "prod", "blue")
    green = loadbalancing.find_target_group(platform, PROJECT, "prod", "green")
    rule = loadbalancing.production_rule(platform, PROJECT, "prod")
    assert lb["targetGroupArn"] == blue and rule is not None
    assert lb["advancedConfiguration"] == {
        "alternateTargetGroupArn": green,
        "productionListenerRule": rule,
    }

    def weights() -> dict[str, int]:
        (found,) = env.elb().describe_rules(RuleArns=[rule])["Rules"]
        groups = found["Actions"][0]["ForwardConfig"]["TargetGroups"]
        return {g["TargetGroupArn"]: g["Weight"] for g in groups}

    assert weights()[blue] > 0 and weights()[green] == 0
    observed: list[tuple[str | None, dict[str, int]]] = []

    def record() -> None:
        pointer = PointerStore(platform).get(PROJECT, "prod")
        observed.append((pointer.version if pointer else None, weights()))

    _converge(rec, _deployment(versions[1], 2), status, env=env, seen=record)
    # The canary held half the traffic while the pointer still named the stable version,
    # and the pointer moved only once all traffic was on the new one.
    assert any(w == {blue: 500, green: 500} and v == versions[0] for v, w in observed), observed
    assert all(v == versions[0] for v, w in observed if w[green] < 999), observed
    assert PointerStore(platform).get(PROJECT, "prod").version == versions[1]
    wait_for(lambda: weights() == {blue: 0, green: 999}, what="all traffic on green")
