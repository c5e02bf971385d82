"""`mlopsctl dev up|down` as a user runs it: a subprocess, then boto3 against its output."""

from __future__ import annotations

import os
import subprocess
import sys

import boto3

from mlopsctl import local_aws

MLOPSCTL = [sys.executable, "-m", "mlopsctl.cli"]


def _run(args, env, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*MLOPSCTL, *args], env=env, capture_output=True, text=True, timeout=300, **kw
    )


def _env(tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["MLOPS_STATE_DIR"] = str(tmp_path / "state")
    return env


def test_dev_up_bootstraps_and_prints_exports_then_down_stops(tmp_path):
    port = local_aws.free_port()
    env = _env(tmp_path)
    up = _run(["dev", "up", "--port", str(port)], env)
    try:
        assert up.returncode == 0, up.stderr
        exports = dict(
            line.removeprefix("export ").split("=", 1) for line in up.stdout.splitlines()
        )
        assert exports["AWS_ENDPOINT_URL"] == f"http://127.0.0.1:{port}"
        s3 = boto3.client(
            "s3",
            endpoint_url=exports["AWS_ENDPOINT_URL"],
            region_name=exports["AWS_REGION"],
            aws_access_key_id=exports["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=exports["AWS_SECRET_ACCESS_KEY"],
        )
        assert s3.get_bucket_versioning(Bucket="mlops-artifacts")["Status"] == "Enabled"
        # A second `up` finds the running server and changes nothing.
        again = _run(["dev", "up", "--port", str(port)], env)
        assert again.returncode == 0 and "already running" in again.stderr
    finally:
        down = _run(["dev", "down", "--port", str(port)], env)
    assert down.returncode == 0, down.stderr
    assert not local_aws.is_up(port)


def test_dev_up_without_moto_says_how_to_install_it(tmp_path):
    # A `moto` that fails to import stands in for a controller image without the extra.
    fake = tmp_path / "fake" / "moto"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named moto')\n")
    env = _env(tmp_path)
    env["PYTHONPATH"] = str(tmp_path / "fake")
    result = _run(["dev", "up", "--port", str(local_aws.free_port())], env)
    assert result.returncode == 1
    assert "mlops-platform[local]" in result.stderr
    assert "Traceback" not in result.stderr
