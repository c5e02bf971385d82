"""`mlopsctl deploy`: it writes desired state into the controller's source, nothing else."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import yaml
from configured import env_platform, env_reconciler
from factories import make_artifacts, project_config

from controller.runtime import Controller
from controller.sources import open_source
from mlops_core import aws
from mlops_core.claims import Claims
from mlops_core.pointer import PointerStore
from mlops_core.registry import Registry
from mlopsctl.cli import main

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlops/serving:0.1.0"


@pytest.fixture
def versions(platform, tmp_path) -> list[str]:
    registry = Registry(platform)
    registry.register_project(project_config())
    out = []
    for seed in (1, 2):
        make_artifacts(tmp_path / f"v{seed}", seed=seed, r2=0.8)
        out.append(registry.publish(tmp_path / f"v{seed}").version)
    return out


def _deploy(capsys, *argv: str) -> tuple[int, str]:
    code = main(["deploy", "--project", "usedcar-price", *argv])
    out, err = capsys.readouterr()
    return code, out + err


def test_deploy_writes_and_updates_the_manifest_only(versions, tmp_path, capsys):
    source = tmp_path / "deployments"
    code, out = _deploy(
        capsys, "--env", "prod", "--source", str(source), "--image", IMAGE, "--latest"
    )
    assert code == 0, out
    doc = yaml.safe_load((source / "usedcar-price-prod.yaml").read_text())
    assert doc["spec"]["model"] == {"version": versions[-1]}  # --latest: the newest
    assert doc["spec"]["serving"]["image"] == IMAGE
    # Nothing in AWS moved: that is the controller's job.
    assert PointerStore(env_platform()).get("usedcar-price", "prod") is None
    # A second deploy changes the version and keeps the rest of the spec.
    code, out = _deploy(capsys, "--env", "prod", "--source", str(source), "--version", versions[0])
    assert code == 0, out
    doc = yaml.safe_load((source / "usedcar-price-prod.yaml").read_text())
    assert doc["spec"]["model"] == {"version": versions[0]}
    assert doc["spec"]["serving"]["image"] == IMAGE


def test_deploy_wait_follows_the_controller_until_applied(
    versions, network_env, monkeypatch, tmp_path, capsys
):
    for name, value in network_env.items():
        monkeypatch.setenv(name, value)
    source = tmp_path / "deployments"
    source.mkdir()
    controller = Controller(
        open_source(str(source)), env_reconciler(), poll=0.2, resync=30, workers=2
    )
    stop = threading.Event()
    runner = threading.Thread(target=controller.run, args=(stop,), daemon=True)
    runner.start()
    try:
        code, out = _deploy(
            capsys, "--env", "prod", "--source", str(source), "--image", IMAGE,
            "--version", versions[1], "--wait", "--until", "applied", "--timeout", "60",
        )  # fmt: skip
    finally:
        stop.set()
        runner.join(timeout=30)
    assert code == 0, out
    assert f"pointer and service name {versions[1]}" in out
    assert PointerStore(env_platform()).get("usedcar-price", "prod").version == versions[1]


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["--env", "qa"], 2, "unknown env 'qa'"),
        (["--env", "prod", "--version", "20990101T000000Z-0000000"], 3, "not published"),
        (["--env", "prod", "--version", "v1", "--candidate", "s3://b/x/"], 2, "one of"),
        (["--env", "prod", "--version", "v1", "--latest"], 2, "one of"),
        (["--env", "prod"], 3, "nothing is live in usedcar-price/prod"),
        (["--env", "prod", "--latest", "--force"], 2, "--force needs --reason"),
        (
            ["--env", "prod", "--candidate", "s3://b/x/", "--force", "--reason", "x"],
            2,
            "published version",
        ),
        (["--env", "prod", "--wait", "--until", "soon"], 2, "--until"),
        # A spec the flags make invalid: the flag and the field, and no pydantic noise.
        (["--env", "prod", "--latest", "--replicas", "-1"], 2, "--replicas (spec.serving."),
        (["--env", "prod", "--latest", "--cpu", "300"], 2, "--cpu (spec.serving"),
    ],
)
def test_deploy_bad_input_writes_nothing(versions, tmp_path, capsys, argv, code, message):
    source = tmp_path / "deployments"
    got, out = _deploy(capsys, *argv, "--source", str(source), "--image", IMAGE)
    assert (got, message in out) == (code, True), out
    assert "errors.pydantic.dev" not in out and "input_value" not in out, out
    assert not source.exists() or not list(source.iterdir())


def test_bare_deploy_declares_the_live_version_and_force_binds_an_override(
    versions, platform, tmp_path, capsys
):
    from mlops_core.promotion import promote

    source = tmp_path / "deployments"
    promote("usedcar-price", "prod", versions[0], actor="ci", registry=Registry(platform))
    code, out = _deploy(capsys, "--env", "prod", "--source", str(source), "--image", IMAGE)
    assert code == 0, out
    doc = yaml.safe_load((source / "usedcar-price-prod.yaml").read_text())
    assert doc["spec"]["model"] == {"version": versions[0]}  # never "the newest"
    code, out = _deploy(
        capsys, "--env", "prod", "--source", str(source), "--version", versions[1],
        "--force", "--reason", "incident 9",
    )  # fmt: skip
    assert code == 0 and "gates overridden" in out, out
    doc = yaml.safe_load((source / "usedcar-price-prod.yaml").read_text())
    override = doc["spec"]["gates"]["override"]
    assert (override["version"], override["reason"]) == (versions[1], "incident 9")
    assert override["by"]
    # A later deploy without --force drops it: an override is bound to its version.
    code, out = _deploy(capsys, "--env", "prod", "--source", str(source), "--latest")
    assert code == 0, out
    doc = yaml.safe_load((source / "usedcar-price-prod.yaml").read_text())
    assert "override" not in doc["spec"].get("gates", {})


def test_deploy_wait_exits_6_when_the_controller_refuses_the_gates(
    versions, platform, network_env, monkeypatch, tmp_path, capsys
):
    for name, value in network_env.items():
        monkeypatch.setenv(name, value)
    make_artifacts(tmp_path / "low", seed=7, r2=0.05)  # below the project's min_r2 0.1
    low = Registry(platform).publish(tmp_path / "low").version
    source = tmp_path / "deployments"
    source.mkdir()
    controller = Controller(
        open_source(str(source)), env_reconciler(), poll=0.2, resync=30, workers=2
    )
    stop = threading.Event()
    runner = threading.Thread(target=controller.run, args=(stop,), daemon=True)
    runner.start()
    try:
        code, out = _deploy(
            capsys, "--env", "prod", "--source", str(source), "--image", IMAGE,
            "--version", low, "--wait", "--timeout", "60",
        )  # fmt: skip
    finally:
        stop.set()
        runner.join(timeout=30)
    assert code == 6, out
    assert "min_r2" in out and "mlopsctl gates check" in out
    assert PointerStore(platform).get("usedcar-price", "prod") is None


def test_deploy_wait_exits_6_when_the_controller_refuses_the_budget(
    versions, platform, network_env, monkeypatch, tmp_path, capsys
):
    """BudgetExceeded is a gate failure (GateFailed's exit 6) under --wait too, as in the
    dry run; nothing is written to AWS."""
    for name, value in network_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MLOPS_PRICES", "table")
    source = tmp_path / "deployments"
    source.mkdir()
    controller = Controller(
        open_source(str(source)), env_reconciler(), poll=0.2, resync=30, workers=2
    )
    stop = threading.Event()
    runner = threading.Thread(target=controller.run, args=(stop,), daemon=True)
    runner.start()
    try:
        # 2 tasks of 0.5 vCPU / 1 GB, no load balancer here: $36.04 a month in us-east-1.
        code, out = _deploy(
            capsys, "--env", "prod", "--source", str(source), "--image", IMAGE,
            "--version", versions[1], "--max-monthly-usd", "30", "--wait", "--timeout", "60",
        )  # fmt: skip
    finally:
        stop.set()
        runner.join(timeout=30)
    assert code == 6, out
    assert "exceeds the budget $30.00; nothing changed" in out
    assert "$36.04/month" in out and "lower serving.replicas" in out
    assert PointerStore(platform).get("usedcar-price", "prod") is None


def test_a_timeout_below_one_second_is_refused_before_anything_is_written(tmp_path, capsys):
    source = tmp_path / "deployments"
    version = "20260101T000000Z-aaaaaaa"
    args = ["--env", "prod", "--project", "demo", "--version", version, "--source", str(source)]
    code = main(["deploy", *args, "--timeout", "-1"])
    out = capsys.readouterr()
    assert code == 2 and "--timeout" in out.err, out
    assert not source.exists()


# -- the manifest that owns the env, whatever it is called ---------------------------------
def _a50(capsys, source: str, version: str) -> None:
    """A manifest named a50 that declares usedcar-price/prod (written by deploy under its
    default name, then renamed, as a user would have)."""
    code, out = _deploy(capsys, "--env", "prod", "--source", source, "--image", IMAGE,
                        "--version", version)  # fmt: skip
    assert code == 0, out
    src = open_source(source)
    doc = src.read("usedcar-price-prod")
    assert doc is not None and doc.deployment is not None
    meta = doc.deployment.metadata.model_copy(update={"name": "a50"})
    src.put_manifest(doc.deployment.model_copy(update={"metadata": meta}))
    if source.startswith("s3://"):
        bucket, _, prefix = source.removeprefix("s3://").partition("/")
        aws.client("s3").delete_object(Bucket=bucket, Key=f"{prefix}usedcar-price-prod.yaml")
    else:
        (Path(source) / "usedcar-price-prod.yaml").unlink()
    assert sorted(open_source(source).scan()) == ["a50"]


def _declared(source: str) -> dict[str, str]:
    src = open_source(source)
    return {n: src.read(n).deployment.spec.model.version for n in sorted(src.scan())}


@pytest.mark.parametrize("kind", ["folder", "s3"])
@pytest.mark.parametrize("claimed", [True, False], ids=["claimed", "unclaimed"])
def test_deploy_updates_the_manifest_that_owns_the_env_whatever_its_name(
    versions, platform, network_env, monkeypatch, tmp_path, capsys, kind, claimed
):
    for name, value in network_env.items():
        monkeypatch.setenv(name, value)
    source = (
        str(tmp_path / "deployments") if kind == "folder"
        else f"s3://{platform.artifact_bucket}/team-a/"
    )  # fmt: skip
    _a50(capsys, source, versions[0])
    if claimed:
        Claims(platform).create("usedcar-price", "prod", "default/a50", open_source(source).uri)
    code, out = _deploy(capsys, "--env", "prod", "--source", source, "--dry-run", "-o", "json",
                        "--version", versions[1])  # fmt: skip
    assert code == 0, out
    assert json.loads(out[: out.rindex("}") + 1])["deployment"] == "default/a50"
    code, out = _deploy(capsys, "--env", "prod", "--source", source, "--version", versions[1])
    assert code == 0, out
    assert "a50 now declares version" in out, out
    assert _declared(source) == {"a50": versions[1]}, "a50 updated, no second manifest"


@pytest.mark.parametrize("dry_run", [False, True], ids=["deploy", "dry-run"])
def test_deploy_refuses_an_env_owned_from_another_source_before_writing(
    versions, platform, tmp_path, capsys, dry_run
):
    source = tmp_path / "deployments"
    other = f"s3://{platform.artifact_bucket}/team-b/"
    Claims(platform).create("usedcar-price", "prod", "ml/a50", other)
    files = sorted(p.name for p in (tmp_path / "v1").iterdir())
    code, out = _deploy(
        capsys, "--env", "prod", "--source", str(source), "--image", IMAGE,
        "--candidate", str(tmp_path / "v1"), *(["--dry-run"] if dry_run else []),
    )  # fmt: skip
    assert code == 4, out
    assert "owned by ModelDeployment ml/a50, declared in " + other in out, out
    assert f"--source {other}" in out
    assert not source.exists() or not list(source.iterdir()), "nothing written"
    assert sorted(p.name for p in (tmp_path / "v1").iterdir()) == files, "nor signed"


@pytest.mark.parametrize("dry_run", [False, True], ids=["deploy", "dry-run"])
def test_deploy_refuses_to_write_over_a_manifest_of_another_env_named_like_this_one(
    versions, tmp_path, capsys, dry_run
):
    """usedcar-price-prod.yaml that declares usedcar-price/staging (a copy edited, an env
    changed): deploy --env prod refused (exit 4) naming both, nothing written; it used
    to replace the file, so staging lost its manifest (its service, pointer and claim
    left with none) and the staging owner's key suddenly declared prod."""
    source = tmp_path / "deployments"
    _a50(capsys, str(source), versions[0])
    text = (source / "a50.yaml").read_text()
    (source / "a50.yaml").unlink()
    assert "env: prod" in text
    staging = text.replace("name: a50", "name: usedcar-price-prod").replace(
        "env: prod", "env: staging"
    )
    (source / "usedcar-price-prod.yaml").write_text(staging)
    before = {p.name: p.read_bytes() for p in source.iterdir()}
    code, out = _deploy(
        capsys, "--env", "prod", "--source", str(source), "--version", versions[1],
        *(["--dry-run"] if dry_run else []),
    )  # fmt: skip
    assert code == 4, out
    assert "usedcar-price-prod.yaml declares usedcar-price/staging, not usedcar-price/prod" in out
    assert {p.name: p.read_bytes() for p in source.iterdir()} == before, "nothing written"


@pytest.mark.parametrize("dry_run", [False, True], ids=["deploy", "dry-run"])
def test_deploy_refuses_a_name_that_is_both_yaml_and_yml(versions, tmp_path, capsys, dry_run):
    """usedcar-price-prod.yaml and usedcar-price-prod.yml: the controller applies neither
    while both exist, so deploy says so (exit 2, naming both) and writes nothing; it
    used to rewrite the .yaml and say 'now declares', which nothing would ever apply."""
    source = tmp_path / "deployments"
    code, out = _deploy(capsys, "--env", "prod", "--source", str(source), "--image", IMAGE,
                        "--version", versions[0])  # fmt: skip
    assert code == 0, out
    path = source / "usedcar-price-prod.yaml"
    path.with_suffix(".yml").write_text(path.read_text())
    before = {p.name: p.read_bytes() for p in source.iterdir()}
    code, out = _deploy(
        capsys, "--env", "prod", "--source", str(source), "--version", versions[1],
        *(["--dry-run"] if dry_run else []),
    )  # fmt: skip
    assert code == 2, out
    assert "two manifests name the deployment usedcar-price-prod" in out, out
    assert "now declares" not in out
    assert {p.name: p.read_bytes() for p in source.iterdir()} == before, "nothing written"


# -- a version that failed in the spec as it is ---------------------------------------------
def _rolled_back(source, version: str, restored: str, reason: str = "RolloutFailed") -> None:
    """The status the controller writes after a rejected or failed rollout of
    ``version`` at the manifest's generation 1: restored, Degraded RolloutFailed."""
    from controller.api import degraded_status
    from controller.manifests import spec_hash
    from controller.sources import StatusRecord

    src = open_source(str(source))
    deployment = src.read("usedcar-price-prod").deployment
    status = degraded_status(None, 1, reason, f"{version} rejected by ci: no")
    status = status.model_copy(
        update={"current_version": restored, "failed_version": version,
                "failed_generation": 1, "observed_generation": 1}
    )  # fmt: skip
    src.write_status("usedcar-price-prod", StatusRecord(
        name="usedcar-price-prod", key=deployment.key, generation=1,
        spec_hash=spec_hash(deployment), project="usedcar-price", env="prod", status=status,
    ))  # fmt: skip


@pytest.mark.parametrize(("reason", "exit_code"), [("RolloutFailed", 1), ("GateFailed", 6)])
def test_deploy_of_the_version_that_failed_says_nothing_changed_and_retry_rolls_it_again(
    versions, platform, network_env, monkeypatch, tmp_path, capsys, reason, exit_code
):
    from controller.manifests import spec_hash
    from controller.sources import next_generation

    for name, value in network_env.items():
        monkeypatch.setenv(name, value)
    source = tmp_path / "deployments"
    path = source / "usedcar-price-prod.yaml"
    code, out = _deploy(capsys, "--env", "prod", "--source", str(source), "--image", IMAGE,
                        "--version", versions[1])  # fmt: skip
    assert code == 0, out
    _rolled_back(source, versions[1], versions[0], reason)
    before = path.read_bytes()

    for dry in ([], ["--dry-run"]):
        code, out = _deploy(capsys, "--env", "prod", "--source", str(source), "--no-wait",
                            "--version", versions[1], *dry)  # fmt: skip
        assert code == exit_code, out
        assert "now declares" not in out
        assert f"already declares version {versions[1]}, which failed at generation 1" in out
        assert "--retry" in out
        assert path.read_bytes() == before, "nothing written"

    # --retry: a new spec, so a new generation, in which the planner rolls it out again.
    code, out = _deploy(capsys, "--env", "prod", "--source", str(source), "--dry-run",
                        "-o", "json", "--version", versions[1], "--retry")  # fmt: skip
    assert code == 0, out
    plan = json.loads(out[: out.rindex("}") + 1])
    assert plan["generation"] == 2 and plan["actions"], plan
    code, out = _deploy(capsys, "--env", "prod", "--source", str(source),
                        "--version", versions[1], "--retry")  # fmt: skip
    assert code == 0 and f"now declares version {versions[1]}" in out, out
    src = open_source(str(source))
    declared = src.read("usedcar-price-prod").deployment
    assert declared.spec.retry == 1 and declared.spec.model.version == versions[1]
    assert next_generation(None, spec_hash(declared), src.read_status("usedcar-price-prod")) == 2


def test_retry_at_its_limit_wraps_to_one_rather_than_writing_an_invalid_manifest(
    versions, tmp_path, capsys
):
    """spec.retry at 2**31 - 1 (its le): --retry writes 1, a new spec the controller
    accepts, not 2**31, which it would refuse (and the next deploy would silently
    replace with a fresh manifest, dropping whatever else the spec said)."""
    from controller.api import ModelDeploymentSpec

    source = tmp_path / "deployments"
    path = source / "usedcar-price-prod.yaml"
    code, out = _deploy(capsys, "--env", "prod", "--source", str(source), "--image", IMAGE,
                        "--version", versions[0], "--retry")  # fmt: skip
    assert code == 0, out
    limit = ModelDeploymentSpec.model_fields["retry"].metadata[-1].le
    path.write_text(path.read_text().replace("retry: 1", f"retry: {limit}"))
    code, out = _deploy(capsys, "--env", "prod", "--source", str(source),
                        "--version", versions[0], "--retry")  # fmt: skip
    assert code == 0, out
    doc = open_source(str(source)).read("usedcar-price-prod")
    assert doc.error is None and doc.deployment is not None, doc.error
    assert doc.deployment.spec.retry == 1


def test_a_spec_without_retry_keeps_the_hash_it_had():
    """spec.retry came later: unset, it must not change any spec's hash (a new hash is a
    new generation, which would roll every failed version out again on upgrade)."""
    import hashlib

    from controller.manifests import parse_manifest, spec_hash

    text = (Path(__file__).parents[2] / "crds/examples/usedcar-price-prod.yaml").read_text()
    deployment = parse_manifest(text, "usedcar-price-prod.yaml")
    dumped = deployment.spec.model_dump(mode="json", by_alias=True)
    dumped.pop("retry")
    old = hashlib.sha256(json.dumps(dumped, sort_keys=True, separators=(",", ":")).encode())
    assert spec_hash(deployment) == old.hexdigest()
    bumped = deployment.spec.model_copy(update={"retry": 1})
    assert spec_hash(deployment.model_copy(update={"spec": bumped})) != old.hexdigest()


def test_deploy_refuses_an_unclaimed_env_that_two_manifests_declare(versions, tmp_path, capsys):
    source = tmp_path / "deployments"
    _a50(capsys, str(source), versions[0])
    text = (source / "a50.yaml").read_text()
    (source / "b50.yaml").write_text(text.replace("name: a50", "name: b50"))
    before = {p.name: p.read_bytes() for p in source.iterdir()}
    code, out = _deploy(capsys, "--env", "prod", "--source", str(source), "--version", versions[1])
    assert code == 4, out
    assert "2 manifests declare usedcar-price/prod: default/a50" in out and "default/b50" in out
    assert {p.name: p.read_bytes() for p in source.iterdir()} == before, "nothing written"
