"""``mlopsctl deploy``: declare a deployment; the controller converges AWS onto it.

``deploy`` never touches ECS or the pointer itself. It writes (or updates) the
ModelDeployment manifest ``{project}-{env}`` in the controller's source (an S3 prefix or
a folder; ``MLOPS_DEPLOY_SOURCE``, default the platform bucket's ``deployments/``) and,
with ``--wait``, follows the status the controller writes back.
"""

from __future__ import annotations

import os
import time
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path

import typer

from mlops_core import aws
from mlops_core.errors import InvalidInput, MlopsError, NotFound
from mlops_core.naming import Platform
from mlops_core.registry import Registry
from mlopsctl.context import PROJECT_DIR_HELP, PROJECT_HELP, console, err, project_name

SOURCE_ENV = "MLOPS_DEPLOY_SOURCE"
IMAGE_ENV = "MLOPS_SERVING_IMAGE"


class DeployFailed(MlopsError):
    reason = "Degraded"
    exit_code = 1


def default_image(platform: Platform) -> str:
    """``MLOPS_SERVING_IMAGE``, else the platform's serving repository at this release."""
    if os.environ.get(IMAGE_ENV):
        return os.environ[IMAGE_ENV]
    try:
        tag = package_version("mlops-platform")
    except PackageNotFoundError:
        tag = "latest"
    ecr = aws.client("ecr")
    try:
        repo = ecr.describe_repositories(repositoryNames=[platform.ecr_serving_repository])
    except ecr.exceptions.RepositoryNotFoundException:
        raise NotFound(
            f"no ECR repository {platform.ecr_serving_repository!r} to take the image from",
            hint=f"pass --image or set {IMAGE_ENV}",
        ) from None
    return f"{repo['repositories'][0]['repositoryUri']}:{tag}"


def _desired(
    existing,
    *,
    name: str,
    project: str,
    env: str,
    model: dict,
    serving: dict,
):
    from controller.api import ModelDeployment

    if existing is not None:
        doc = existing.model_dump(mode="json", by_alias=True, exclude_none=True)
        doc.pop("status", None)
        doc["spec"]["model"] = model
        doc["spec"]["serving"].update(serving)
    else:
        doc = {
            "apiVersion": "mlops.platform.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": name, "labels": {"mlops.platform.io/project": project}},
            "spec": {"project": project, "env": env, "model": model, "serving": serving},
        }
    try:
        return ModelDeployment.model_validate(doc)
    except ValueError as exc:
        raise InvalidInput(f"the deployment would be invalid: {exc}") from None


def deploy(
    env: str = typer.Option(..., "--env", "-e", help="Environment, e.g. prod."),
    version: str = typer.Option(None, help="Published version (default: the newest)."),
    candidate: str = typer.Option(
        None, help="Trained artifacts folder (s3:// or path) for the controller to publish."
    ),
    project: str = typer.Option(None, "--project", "-p", help=PROJECT_HELP),
    project_dir_: Path = typer.Option(None, "--project-dir", help=PROJECT_DIR_HELP),
    image: str = typer.Option(None, help=f"Serving image (default: ${IMAGE_ENV} or ECR)."),
    cpu: int = typer.Option(None, help="Fargate CPU units."),
    memory: int = typer.Option(None, help="Fargate memory, MiB."),
    replicas: int = typer.Option(None, help="Running tasks."),
    source: str = typer.Option(
        None, help=f"Where the controller reads manifests (default: ${SOURCE_ENV} or s3)."
    ),
    wait: bool = typer.Option(False, help="Follow the controller's status until done."),
    until: str = typer.Option(
        "ready",
        help="With --wait: 'applied' (AWS updated, rollout under way) or 'ready' (rolled out).",
    ),
    timeout: float = typer.Option(600, help="With --wait: give up after this many seconds."),
) -> None:
    """Declare that ENV serves a model version; the controller makes it so."""
    from controller.sources import open_source

    if until not in ("applied", "ready"):
        raise InvalidInput(f"--until must be 'applied' or 'ready', not {until!r}")
    if version and candidate:
        raise InvalidInput("give --version or --candidate, not both")
    name = project_name(project, project_dir_)
    registry = Registry()
    config = registry.get_project(name)
    config.check_env(env)
    if candidate:
        model = {"candidate": candidate}
    else:
        if version is None:
            versions = registry.list_versions(name)
            if not versions:
                raise NotFound(f"{name} has no published version", hint="mlopsctl publish")
            version = versions[-1].version
        registry.get_manifest(name, version)  # fail here, not in the controller
        model = {"version": version}

    src = open_source(source or os.environ.get(SOURCE_ENV, "s3"), create=True)
    deployment_name = f"{name}-{env}"
    current = _read_existing(src, deployment_name)
    serving = {
        k: v
        for k, v in {"image": image, "cpu": cpu, "memory": memory, "replicas": replicas}.items()
        if v is not None
    }
    if current is None and "image" not in serving:
        serving["image"] = default_image(registry.platform)
    desired = _desired(
        current, name=deployment_name, project=name, env=env, model=model, serving=serving
    )
    put = src.put_manifest(desired)
    what = f"version {model['version']}" if "version" in model else f"candidate {candidate}"
    console.print(f"{deployment_name} now declares {what}, in {put.where}")
    if wait:
        _wait(src, put, until=until, timeout=timeout, version=model.get("version"))


def _read_existing(src, name: str):
    doc = src.read(name)
    # An invalid (or unreadable) manifest is replaced by a valid one.
    return doc.deployment if doc is not None else None


def _wait(src, put, *, until: str, timeout: float, version: str | None) -> None:
    from controller.sources import is_observed

    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        record = src.get_record(put.name)
        if is_observed(record, put.spec_hash):
            status = record.status
            conds = {c.type: c for c in status.conditions}
            line = ", ".join(f"{t}={c.status} ({c.reason})" for t, c in sorted(conds.items()))
            if line != last:
                err.print(f"  {put.name}: {line}")
                last = line
            degraded = conds.get("Degraded")
            if degraded is not None and degraded.status == "True":
                raise DeployFailed(
                    f"{put.name} is Degraded: {degraded.reason}: {degraded.message}",
                    hint="fix the deployment and run deploy again; "
                    "'mlopsctl controller run --once' shows every deployment",
                )
            ready = conds.get("Ready")
            if ready is not None and ready.status == "True":
                console.print(f"{put.name} is Ready at {status.current_version}")
                return
            applied = status.current_version is not None and (
                version is None or status.current_version == version
            )
            if until == "applied" and applied:
                console.print(
                    f"{put.name} applied: pointer and service name {status.current_version}; "
                    "rollout in progress"
                )
                return
        time.sleep(0.5)
    raise DeployFailed(
        f"{put.name} did not become {until} within {timeout:.0f}s",
        hint="is the controller running? 'mlopsctl controller run --source ...'",
    )
