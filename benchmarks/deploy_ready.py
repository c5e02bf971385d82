"""Time from ``deploy`` to ``Ready=True`` for two tasks on the local data plane.

    python benchmarks/deploy_ready.py [--repeats 3]

One data plane as ``mlopsctl dev up`` runs it (its default timings); the controller's
reconciler with the polling ``dev up`` exports (0.5 s during a rollout and after acting)
deploys one published version to a fresh env each repeat, and the clock runs from the
first reconcile (what follows a ``deploy``) until the status says Ready. The baseline,
measured in the same run: one serving process started by hand on the same version, from
spawn to its first 200 on ``/ready`` (the floor: a task cannot be ready sooner). Prints
one JSON line: medians, the ratio to the baseline, the goal (<= 10 s) and the 1-minute
load average (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import httpx  # noqa: E402
from reconcile import PROJECT, build_version  # noqa: E402

from controller.api import ModelDeployment  # noqa: E402
from controller.plan import NetworkConfig, Polling  # noqa: E402
from controller.reconcile import Reconciler  # noqa: E402
from mlops_core import logs  # noqa: E402
from mlops_core.config import PlatformSettings  # noqa: E402
from mlops_core.project import ProjectConfig  # noqa: E402
from mlops_core.registry import Registry  # noqa: E402
from mlopsctl import local_aws  # noqa: E402
from mlopsctl.cmd_dev import LOCAL_CONTROLLER_ENV  # noqa: E402

GOAL_SECONDS = 10.0
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlops/serving:bench"
ENVS = ("dev", "staging", "prod", "qa", "perf")


def cold_start(uri: str, sha: str, port: int) -> float:
    env = {**os.environ, "MODEL_URI": uri, "MODEL_SHA256": sha, "HOST": "127.0.0.1",
           "PORT": str(port), "MLOPS_LOG_LEVEL": "WARNING"}  # fmt: skip
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "serving"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                    return time.monotonic() - t0
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                raise SystemExit("serving exited while starting")
            time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def deploy_to_ready(rec: Reconciler, version: str, env: str) -> float:
    dep = ModelDeployment.model_validate(
        {
            "metadata": {"name": f"{PROJECT}-{env}", "generation": 1},
            "spec": {
                "project": PROJECT,
                "env": env,
                "model": {"version": version},
                "serving": {"image": IMAGE, "replicas": 2},
            },
        }
    )
    t0 = time.monotonic()
    status = None
    while time.monotonic() - t0 < 300:
        result = rec.reconcile(dep, status)
        status = result.status
        ready = status.condition("Ready")
        if ready is not None and ready.status == "True":
            return time.monotonic() - t0
        degraded = status.condition("Degraded")
        if degraded is not None and degraded.status == "True":
            raise SystemExit(f"deployment Degraded: {degraded.message}")
        time.sleep(result.requeue_after or 0.5)
    raise SystemExit("not Ready within 300 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    logs.configure(level="WARNING")
    port = local_aws.free_port()
    with tempfile.TemporaryDirectory(prefix="bench-deploy-") as tmp:
        work = Path(tmp)
        plane = local_aws.start_dataplane(port, work / "state", log_path=work / "plane.log")
        try:
            os.environ.update(local_aws.local_env(port))
            platform = PlatformSettings.load().names()
            res = local_aws.bootstrap(platform)
            registry = Registry(platform)
            registry.register_project(
                ProjectConfig.model_validate(
                    {
                        "name": PROJECT,
                        "data": {"source": "x.csv"},
                        "target": "y",
                        "features": [{"name": "x1"}, {"name": "x2"}],
                        "envs": list(ENVS),
                    }
                )  # fmt: skip
            )
            manifest = build_version(work / "v1", 1)
            version = registry.publish(work / "v1").version
            uri = platform.version_uri(PROJECT, version)
            baseline = [
                cold_start(uri, manifest.model_sha256, local_aws.free_port())
                for _ in range(args.repeats)
            ]
            network = NetworkConfig(
                subnets=tuple(res["subnets"].split(",")),
                security_groups=(res["security_groups"],),
                execution_role_arn=res["execution_role_arn"],
                load_balancers=LOCAL_CONTROLLER_ENV["MLOPS_LOAD_BALANCERS"],
            )
            polling = Polling(
                rollout=float(LOCAL_CONTROLLER_ENV["MLOPS_ROLLOUT_POLL_SECONDS"]),
                after_action=float(LOCAL_CONTROLLER_ENV["MLOPS_AFTER_ACTION_SECONDS"]),
            )
            rec = Reconciler(platform, network=network, polling=polling)
            runs = [deploy_to_ready(rec, version, ENVS[i % len(ENVS)]) for i in range(args.repeats)]
        finally:
            plane.terminate()
            plane.wait(timeout=60)
    median = statistics.median(runs)
    floor = statistics.median(baseline)
    print(
        json.dumps(
            {
                "benchmark": "deploy_ready",
                "tasks": 2,
                "deploy_to_ready_s": round(median, 2),
                "deploy_to_ready_s_runs": [round(r, 2) for r in runs],
                "baseline_serving_cold_start_s": round(floor, 2),
                "ratio_to_baseline": round(median / floor, 2),
                "goal_s": GOAL_SECONDS,
                "goal_met": median <= GOAL_SECONDS,
                "load_average_1m": round(os.getloadavg()[0], 1),
            }
        )
    )


if __name__ == "__main__":
    main()
