"""``mlopsctl deploy``: declare a deployment; the controller converges AWS onto it.

``deploy`` never touches ECS or the pointer itself. It updates the ModelDeployment
manifest that owns the env in the controller's source (an S3 prefix or a folder;
``MLOPS_DEPLOY_SOURCE``, default the platform bucket's ``deployments/``): the one the
env's claim names, or, unclaimed, the one whose spec names the env, whatever its file is
called; with none, it writes ``{project}-{env}``. An env owned from another source is
refused (exit 4, naming the owner) before anything is written. With ``--wait`` it follows
the status the controller writes back.

``--dry-run`` writes nothing at all: it builds the same manifest, has the controller's
own reconciler observe and plan it (``Reconciler.dry_run``: AWS reads only), and prints
the actions it would take and the monthly cost before and after. A spec over its
``--max-monthly-usd`` (``spec.budget.maxMonthlyUSD``) is refused there as the controller
would refuse it (exit 6, BudgetExceeded).

Which version: ``--version V``; with none, the env's live version again (never "the
newest": right after a rollback that would undo it); ``--latest`` for the newest
published one. A version live in the env before is a rollback, which the controller does
not judge by max_regression (``mlops_core.gates.check``). ``--force --reason TEXT``
records ``spec.gates.override`` for that one version, so it goes live although gates
fail; the override is recorded in the pointer and the promotion log.

A version that failed (rolled back, rejected) at the declared generation is not rolled
out again while the spec stays as it is: deploying it again changes nothing, and says so
(exit 1); ``--retry`` bumps ``spec.retry``, a new spec and generation, which rolls it out
again (and so gets a rejected rollout a new decision).

Exit codes follow :mod:`mlops_core.exits`: a gate failure is 6 (GateFailed), whether
the dry run or ``--wait`` sees it.
"""

from __future__ import annotations

import time
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path

import typer

from mlops_core import aws
from mlops_core.errors import Conflict, GateFailed, InvalidInput, MlopsError, NotFound
from mlops_core.naming import Platform
from mlops_core.pointer import PointerStore
from mlops_core.registry import Registry, sign_candidate
from mlopsctl import context
from mlopsctl.context import (
    PROJECT_DIR_HELP,
    PROJECT_HELP,
    Output,
    console,
    err,
    output_option,
    print_document,
    project_name,
)

SOURCE_ENV = "MLOPS_DEPLOY_SOURCE"
IMAGE_ENV = "MLOPS_SERVING_IMAGE"


GATE_HINT = (
    "'mlopsctl gates check VERSION --env ENV' shows every gate; train a better model, or "
    "deploy --force --reason TEXT to override for this version (recorded)"
)


class DeployFailed(MlopsError):
    reason = "Degraded"
    exit_code = 1


def default_image(platform: Platform, configured: str | None) -> str:
    """``MLOPS_SERVING_IMAGE`` (``configured``), else the platform's serving repository at
    this release."""
    if configured:
        return configured
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
    namespace: str | None = None,
    serving: dict,
    budget: dict | None = None,
    monitoring: dict | None = None,
    override: dict | None = None,
):
    from pydantic import ValidationError

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
            "metadata": {
                "name": name,
                **({"namespace": namespace} if namespace else {}),
                "labels": {"mlops.platform.io/project": project},
            },
            "spec": {"project": project, "env": env, "model": model, "serving": serving},
        }
    if budget:
        doc["spec"].setdefault("budget", {}).update(budget)
    if monitoring:
        doc["spec"].setdefault("monitoring", {}).update(monitoring)
    # An override is bound to the version it was given with: a deploy without --force
    # drops an earlier one.
    gates = doc["spec"].setdefault("gates", {})
    gates.pop("override", None)
    if override:
        gates["override"] = override
    try:
        return ModelDeployment.model_validate(doc)
    except ValidationError as exc:
        # One line per problem, named by the flag that set it where one did (pydantic's
        # own text ends each with a documentation URL and the input's Python repr).
        problems = [_problem(e) for e in exc.errors(include_url=False)]
        raise InvalidInput(
            "the deployment would be invalid: " + "; ".join(problems),
            hint="fix the flags above, or the existing manifest if no flag names the field",
        ) from None


# The flags of `deploy` that set a spec field, for its error messages.
_FLAGS = {
    ("spec", "serving", "cpu"): "--cpu",
    ("spec", "serving", "memory"): "--memory",
    ("spec", "serving", "replicas"): "--replicas",
    ("spec", "serving", "image"): "--image",
    ("spec", "budget", "maxMonthlyUSD"): "--max-monthly-usd",
    ("spec", "monitoring", "capturePercent"): "--capture-percent",
    ("spec", "gates", "override", "reason"): "--reason",
}


def _problem(error) -> str:
    loc = tuple(str(p) for p in error["loc"])
    field = ".".join(loc) or "(document)"
    flag = next((f for path, f in _FLAGS.items() if loc[: len(path)] == path), None)
    return f"{flag} ({field}): {error['msg']}" if flag else f"{field}: {error['msg']}"


def deploy(
    env: str = typer.Option(..., "--env", "-e", help="Environment, e.g. prod."),
    version: str = typer.Option(
        None, help="Published version (default: the one live in ENV; see --latest)."
    ),
    latest: bool = typer.Option(False, "--latest", help="Declare the newest published version."),
    candidate: str = typer.Option(
        None,
        help="Trained artifacts folder (s3:// or path) for the controller to publish; "
        "signed here with the publisher's key.",
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
    timeout: float = typer.Option(600, min=1, help="With --wait: give up after this many seconds."),
    max_monthly_usd: float = typer.Option(
        None,
        "--max-monthly-usd",
        min=0.01,
        help="Budget: the controller refuses a spec whose estimated monthly cost is higher.",
    ),
    capture_percent: float = typer.Option(
        None,
        "--capture-percent",
        min=0,
        max=100,
        help="Share of requests serving captures for the drift job "
        "(spec.monitoring.capturePercent; 0 = off).",
    ),
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="Print the controller's plan and the monthly cost change; write nothing.",
    ),
    force: bool = typer.Option(
        False,
        "--force",
        help="Let this version go live although gates fail (needs --reason; recorded in "
        "spec.gates.override, the pointer and the promotion log).",
    ),
    reason: str = typer.Option("", "--reason", help="With --force: why, recorded."),
    retry: bool = typer.Option(
        False,
        "--retry",
        help="Roll the version out again although it failed (rolled back, rejected) in "
        "the spec as it is: bumps spec.retry, a new generation.",
    ),
    output: Output = output_option(),
) -> None:
    """Declare that ENV serves a model version; the controller makes it so."""
    from controller.sources import open_source

    if until not in ("applied", "ready"):
        raise InvalidInput(f"--until must be 'applied' or 'ready', not {until!r}")
    if sum(map(bool, (version, candidate, latest))) > 1:
        raise InvalidInput("give one of --version, --latest or --candidate")
    reason = context.check_reason(reason)
    if force and not reason:
        raise InvalidInput(
            "--force needs --reason TEXT saying why the gates are overridden",
            hint="the reason is recorded in spec.gates.override, the pointer and the promotion log",
        )
    if force and candidate:
        raise InvalidInput(
            "--force applies to a published version",
            hint="publish the candidate, then deploy --version V --force --reason TEXT",
        )
    if dry_run and wait:
        raise InvalidInput("--dry-run writes nothing, so there is nothing to --wait for")
    name = project_name(project, project_dir_)
    settings = context.settings()
    registry = Registry(settings.names())
    config = registry.get_project(name)
    config.check_env(env)
    uri = source or settings.deploy_source
    src = (
        _open_for_dry_run(uri, registry.platform)
        if dry_run
        else open_source(uri, platform=registry.platform, create=True)
    )
    # Which manifest declares this env: its owner's, wherever it is named. Refused (exit
    # 4) before anything is written or signed when the owner lives in another source.
    deployment_name, namespace, current = _owning_manifest(src, uri, registry.platform, name, env)
    if candidate:
        if not dry_run:
            # The controller publishes only signed candidates and never signs: whoever
            # declares a candidate vouches for it with the publisher's key.
            where, created = sign_candidate(candidate, registry.signing_key)
            if created:
                console.print(f"signed the candidate: {where}")
        model = {"candidate": candidate}
    else:
        if latest:
            versions = registry.list_versions(name)
            if not versions:
                raise NotFound(f"{name} has no published version", hint="mlopsctl publish")
            version = versions[-1].version
        elif version is None:
            live = PointerStore(registry.platform).get(name, env)
            if live is None:
                raise NotFound(
                    f"nothing is live in {name}/{env} to declare again",
                    hint="pass --version V (see 'mlopsctl models'), or --latest for the "
                    "newest published version",
                )
            version = live.version
        registry.get_manifest(name, version)  # fail here, not in the controller
        model = {"version": version}
    override = (
        {"version": model["version"], "reason": reason.strip(), "by": registry.platform.actor}
        if force
        else None
    )

    serving = {
        k: v
        for k, v in {"image": image, "cpu": cpu, "memory": memory, "replicas": replicas}.items()
        if v is not None
    }
    if current is None and "image" not in serving:
        serving["image"] = default_image(registry.platform, settings.serving_image)
    budget = {"maxMonthlyUSD": max_monthly_usd} if max_monthly_usd is not None else None
    desired = _desired(
        current,
        name=deployment_name,
        namespace=namespace,
        project=name,
        env=env,
        model=model,
        serving=serving,
        budget=budget,
        monitoring=None if capture_percent is None else {"capturePercent": capture_percent},
        override=override,
    )
    if retry:
        previous = current.spec.retry if current is not None else None
        # Wraps at spec.retry's limit (2**31 - 1, an int32 as the CRD has it) back to 1:
        # any other value than the current one is a new spec; one above it is invalid.
        bumped = (previous or 0) % RETRY_MAX + 1
        spec = desired.spec.model_copy(update={"retry": bumped})
        desired = desired.model_copy(update={"spec": spec})
    elif current is not None and src is not None:
        _check_changed(src, current, desired, model)
    if dry_run:
        _dry_run(src, desired, output)
        return
    assert src is not None
    put = src.put_manifest(desired)
    what = f"version {model['version']}" if "version" in model else f"candidate {candidate}"
    if override is not None:
        what += f" (gates overridden by {override['by']}: {override['reason']})"
    console.print(f"{deployment_name} now declares {what}, in {put.where}")
    if wait:
        _wait(src, put, until=until, timeout=timeout, version=model.get("version"))


#: The largest spec.retry (ModelDeploymentSpec.retry's ``le``).
RETRY_MAX = 2**31 - 1


def _check_changed(src, current, desired, model: dict) -> None:
    """A deploy that changes nothing, of a version that failed in the spec as it is,
    would change nothing at all: the controller does not roll a failed version out
    again until the spec changes. Said, with the way to a new rollout (exit 1)."""
    from controller.manifests import spec_hash

    if spec_hash(current) != spec_hash(desired) or "version" not in model:
        return
    record = src.get_record(desired.metadata.name)
    status = record.status if record is not None else None
    version = model["version"]
    if (
        status is None
        or status.failed_version != version
        or status.failed_generation != record.generation
    ):
        return
    degraded = status.condition("Degraded")
    reason = degraded.reason if degraded is not None and degraded.status == "True" else None
    what = (
        f"{desired.key} already declares version {version}, which failed at generation "
        f"{record.generation}{f' ({reason})' if reason else ''}: nothing changed, and the "
        "controller does not roll it out again while the spec stays as it is"
    )
    where = src.where(desired.metadata.name)
    if reason == GateFailed.reason:  # judged and refused: exit 6, as --wait would
        raise GateFailed(what, where=where, hint=GATE_HINT + "; --retry judges it again")
    raise DeployFailed(
        what,
        where=where,
        hint="add --retry to roll it out again (a new generation), or deploy another "
        "version (--version V, --latest)",
    )


def _open_for_dry_run(uri: str, platform: Platform):
    """The source, read-only; None for a folder that does not exist yet (nothing
    declared there, and a dry run creates nothing)."""
    from controller.sources import open_source

    folder = "://" not in uri and uri not in ("s3", "kube") or uri.startswith("file://")
    if folder and not Path(uri.removeprefix("file://")).expanduser().is_dir():
        return None
    # Anything else as deploy would open it: kube and unknown schemes are refused there.
    return open_source(uri, platform=platform, create=False)


def _dry_run(src, desired, output: Output) -> None:
    """What the controller would do with ``desired``, and what it would cost."""
    from controller.actions import describe
    from controller.manifests import spec_hash
    from controller.reconcile import Reconciler
    from controller.sources import next_generation
    from mlops_core.cost.estimate import BudgetExceeded
    from mlops_core.cost.prices import PriceResolver

    record = src.get_record(desired.metadata.name) if src is not None else None
    # The generation the controller will give it: the actions may depend on it (a
    # version that failed at this generation is not retried).
    generation = next_generation(desired.metadata.generation, spec_hash(desired), record)
    deployment = desired.model_copy(
        update={"metadata": desired.metadata.model_copy(update={"generation": generation})}
    )
    from controller.plan import NetworkConfig

    settings = context.settings()
    reconciler = Reconciler(
        settings.names(),
        network=NetworkConfig.from_settings(settings),
        prices=PriceResolver.from_settings(settings),
    )
    dry = reconciler.dry_run(deployment, record.status if record is not None else None)
    conditions = {c.type: c for c in dry.status.conditions}
    doc = {
        "deployment": deployment.key,
        "generation": generation,
        "written": False,
        "actions": [describe(a) for a in dry.actions],
        "conditions": {
            t: {"status": c.status, "reason": c.reason, "message": c.message}
            for t, c in sorted(conditions.items())
        },
        "cost": {
            "current": dry.current.to_dict() if dry.current is not None else None,
            "desired": dry.desired.to_dict() if dry.desired is not None else None,
            "monthly_delta_usd": None if dry.monthly_delta is None else round(dry.monthly_delta, 2),
            "prices_error": dry.prices_error or None,
        },
    }
    if not print_document(doc, output):
        _print_dry_run(doc, dry)
    degraded = conditions.get("Degraded")
    if dry.degraded and degraded is not None and degraded.status == "True":
        if degraded.reason == BudgetExceeded.reason:
            raise BudgetExceeded(f"{deployment.key} would be refused: {degraded.message}")
        if degraded.reason == GateFailed.reason:
            raise GateFailed(
                f"{deployment.key} would be refused: {degraded.message}", hint=GATE_HINT
            )
        raise DeployFailed(
            f"the controller would not deploy {deployment.key}: "
            f"{degraded.reason}: {degraded.message}"
        )


def _print_dry_run(doc: dict, dry) -> None:
    console.print(
        f"dry run: {doc['deployment']} at generation {doc['generation']} (nothing written)"
    )
    if doc["actions"]:
        console.print("the controller would:")
        for n, line in enumerate(doc["actions"], 1):
            console.print(f"  {n}. {line}")
    else:
        console.print("the controller would make no change")
    for type_, c in doc["conditions"].items():
        console.print(f"  {type_}={c['status']} ({c['reason']})")
    if dry.desired is None:
        console.print(f"monthly cost: unknown ({doc['cost']['prices_error'] or 'not priced'})")
        return
    now = dry.current.total if dry.current is not None else 0.0
    console.print(
        f"monthly cost: ${now:,.2f} -> ${dry.desired.total:,.2f} "
        f"({dry.monthly_delta:+,.2f} USD/month); {dry.desired.summary()}"
    )
    console.print(
        f"prices: {dry.desired.price_source}, as of {dry.desired.prices_as_of}"
        + (f" ({dry.desired.prices_note})" if dry.desired.prices_note else "")
    )


def _declares(doc, project: str, env: str) -> bool:
    spec = doc.deployment.spec if doc is not None and doc.deployment is not None else None
    return spec is not None and (spec.project, spec.env) == (project, env)


def _one_file(doc):
    """``doc``, unless its NAME is both NAME.yaml and NAME.yml: then the InvalidSpec
    naming both (exit 2). Writing one of them would change nothing the controller
    applies (it refuses the key while both exist), yet read as 'now declares'."""
    if doc is not None and doc.digest.startswith("ambiguous:") and doc.error is not None:
        raise doc.error
    return doc


def _owning_manifest(src, uri: str, platform: Platform, project: str, env: str):
    """(NAME, namespace, its deployment or None) of the manifest in ``src`` that declares
    ``project``/``env``: the env's owner as its claim names it; unclaimed, the one
    manifest whose spec names the env (whatever its file is called), else a new
    ``{project}-{env}``. Conflict (exit 4), naming the owner, when the owner is not in
    this source (another folder, prefix or cluster) or several manifests declare the env:
    a second manifest would only be refused as Conflict by the controller."""
    from controller.sources.base import strip_namespace
    from mlops_core.claims import Claims

    default = platform.deployment_name(project, env)
    here = src.uri if src is not None else str(Path(uri.removeprefix("file://")).expanduser())
    claim = Claims(platform).get(project, env)
    if claim is not None:
        owner_doc = _one_file(src.read(strip_namespace(claim.owner))) if src is not None else None
        if (
            owner_doc is not None
            and owner_doc.key == claim.owner
            and (owner_doc.deployment is None or _declares(owner_doc, project, env))
        ):
            return owner_doc.name, claim.owner.partition("/")[0], owner_doc.deployment
        elsewhere = claim.source and claim.source != here
        raise Conflict(
            f"{project}/{env} is owned by ModelDeployment {claim.owner}"
            + (f", declared in {claim.source}" if claim.source else "")
            + f"; {here} has no manifest of it",
            where=Claims(platform).uri(project, env),
            hint=(
                f"deploy to its source (--source {claim.source}), or delete {claim.owner} "
                "there so that its claim is released"
                if elsewhere
                else "its manifest was removed: run the controller once "
                f"('mlopsctl controller run --source {uri} --once') to release the claim, "
                "then deploy again"
            ),
        )
    if src is None:
        return default, None, None
    found = _one_file(src.read(default))
    if found is not None and _declares(found, project, env):
        return default, None, found.deployment
    matches = []
    for name in sorted(src.scan()):
        doc = found if name == default else src.read(name)
        if _declares(doc, project, env):
            matches.append(doc)
    if len(matches) > 1:
        raise Conflict(
            f"{len(matches)} manifests declare {project}/{env}: "
            + ", ".join(f"{d.key} ({src.where(d.name)})" for d in matches),
            where=src.uri,
            hint="one project/env has one ModelDeployment: delete all but one, then deploy",
        )
    if matches:
        return matches[0].name, None, matches[0].deployment
    if (
        found is not None
        and found.project
        and found.env
        and (found.project, found.env)
        != (
            project,
            env,
        )
    ):
        # {project}-{env}.yaml is another env's manifest (a copy edited, an env changed):
        # writing this env over it would drop that one's declaration, and leave its
        # service, pointer and claim with no manifest.
        where = src.where(default)
        raise Conflict(
            f"{where} declares {found.project}/{found.env}, not {project}/{env}; deploying "
            f"{project}/{env} there would replace that declaration",
            where=where,
            hint=f"rename that manifest (file and metadata.name) after what it declares, "
            f"or delete it if {found.project}/{found.env} is no longer wanted; then deploy again",
        )
    # None, or an invalid (or unreadable) {project}-{env}: replaced by a valid one.
    return default, None, None


def _wait(src, put, *, until: str, timeout: float, version: str | None) -> None:
    from controller.sources import is_observed
    from mlops_core.cost.estimate import BudgetExceeded

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
                if degraded.reason == GateFailed.reason:
                    raise GateFailed(f"{put.name}: {degraded.message}", hint=GATE_HINT)
                if degraded.reason == BudgetExceeded.reason:
                    # A gate failure like the others (exit 6); the message has the hint.
                    raise BudgetExceeded(f"{put.name}: {degraded.message}")
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
