"""The controller process killed (SIGKILL) in the middle of a canary's analysis, and
started again: the rollout goes on from where ECS and the status say it is. The step is
judged once, its hook answered once, its values kept, and no request fails."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from conftest import wait_for
from factories import make_artifacts, project_config
from progressive_support import NAME, PROJECT, Predictions, deployment, endpoint

from controller.sources.directory import DirectorySource
from mlops_core import aws
from mlops_core.pointer import PointerStore
from mlops_core.registry import Registry

SPEC = {
    "strategy": {"type": "Canary", "canary": {"percent": 30, "bakeMinutes": 1}},
    "analysis": {"minRequests": 60, "maxLatencyP99Ratio": 20, "timeoutMinutes": 60},
}


def _controller(folder: Path, log: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "MLOPS_LOAD_BALANCERS": "managed",
        "MLOPS_ROLLOUT_POLL_SECONDS": "0.5",
        "MLOPS_AFTER_ACTION_SECONDS": "0.2",
        # A real model loads in seconds on a busy machine (the tests' time scale makes
        # the usual grace period 3 s).
        "MLOPS_HEALTH_CHECK_GRACE_SECONDS": "600",
        "MLOPS_LOG_FORMAT": "json",
    }
    code = "from mlopsctl.cli import entry; entry()"
    args = ["controller", "run", "--source", str(folder), "--metrics-port", "0"]
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def _status(source: DirectorySource):
    record = source.read_status(NAME)
    return record.status if record is not None else None


def _events(log: Path, event: str) -> list[dict]:
    out = []
    for line in log.read_text().splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if doc.get("event") == event:
            out.append(doc)
    return out


def test_a_controller_killed_mid_analysis_resumes_it_and_repeats_nothing(
    env, tmp_path, monkeypatch
):
    platform = env.platform
    registry = Registry(platform)
    registry.register_project(project_config())
    versions = []
    for seed in (1, 2):
        make_artifacts(tmp_path / f"v{seed}", seed=seed, r2=0.8)
        versions.append(registry.publish(tmp_path / f"v{seed}").version)
    v1, v2 = versions
    source = DirectorySource(tmp_path / "deployments", create=True)
    log = tmp_path / "controller.log"
    monkeypatch.setenv("MLOPS_SUBNETS", ",".join(env.subnets))
    monkeypatch.setenv("MLOPS_SECURITY_GROUPS", env.security_group)
    proc = _controller(source.path, log)
    try:
        source.put_manifest(deployment(v1, 1, **SPEC))

        def ready_on(version: str):
            def check():
                s = _status(source)
                c = s.condition("Ready") if s is not None else None
                return c is not None and c.status == "True" and s.current_version == version

            return check

        wait_for(ready_on(v1), 180, f"Ready on {v1}", show=lambda: _status(source))
        with Predictions(endpoint(env)) as load:
            source.put_manifest(deployment(v2, 2, **SPEC))

            def measuring():
                s = _status(source)
                return s is not None and s.rollout is not None and s.rollout.measuring is not None

            wait_for(
                measuring, 180, "the canary's step to be measured", show=lambda: _status(source)
            )
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            before = _status(source)
            # Killed while the step was measured (or just after its verdict was written).
            assert before.rollout.canary_version == v2 and len(before.rollout.steps) <= 1
            proc = _controller(source.path, log)
            wait_for(ready_on(v2), 240, f"Ready on {v2}", show=lambda: _status(source))
        after = _status(source)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert load.failed == 0, (load.codes, load.errors[:5])
    # One judged step, passed, kept across the restart; its hook answered once.
    (step,) = after.rollout.steps
    assert step.verdict == "Pass" and step.canary.version == v2 and step.traffic_percent == 30.0
    assert step.canary.requests >= 60
    answered = _events(log, "hook answered")
    assert len(answered) == 1 and answered[0]["action"] == "CONTINUE", answered
    assert not _events(log, "hook already answered")
    ecs = aws.client("ecs")
    (sd,) = [
        d
        for d in ecs.list_service_deployments(
            cluster=platform.ecs_cluster, service=platform.service_name(PROJECT, "prod")
        )["serviceDeployments"]
        if d["serviceDeploymentArn"] == after.rollout.service_deployment
    ]
    assert sd["status"] == "SUCCESSFUL"
    assert PointerStore(platform).get(PROJECT, "prod").version == v2
