"""Promotion and rollback: moves of the model pointer, never of artifacts.

Both write only through the promotion log (:mod:`mlops_core.promotion_log`), which
serialises concurrent writers (the loser gets Conflict, exit 4) and makes rollback a stack
at any depth: promote v1, v2, v3; rollback -> v2; rollback -> v1 (not back to v3).

Every value carries the version's publication pins: a promotion copies them from the
publication record, a rollback from the log entry it returns to. Both verify the version
against them first (signature, digests, nothing written since publication), and never
take a pin from what the bucket holds now.

While a ModelDeployment owns the env (its claim, :mod:`mlops_core.claims`), both are
refused: the controller would undo them. ``force`` with a reason goes through, and the
override is recorded in the log entry's reason; the entry names the owner either way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlops_core.artifacts import Manifest
from mlops_core.claims import Claims, check_manual_write
from mlops_core.errors import GateFailed, IntegrityError, InvalidInput, NotFound
from mlops_core.gates import GateReport, Override, check, gate_values
from mlops_core.pointer import ModelPointer, PointerStore, now
from mlops_core.policy import check_in_force
from mlops_core.project import Gates
from mlops_core.promotion_log import PromotionLog, popped, pushed
from mlops_core.registry import Published, Registry


def pointer_for(
    published: Published,
    registry: Registry,
    *,
    reason: str,
    actor: str | None = None,
    action: str = "promote",
    gates: Mapping[str, Any] | None = None,
    policy_revision: int | None = None,
    owner: str | None = None,
) -> ModelPointer:
    """A promotion's pointer value: the version with the pins its publication recorded;
    ``gates`` and ``policy_revision`` record what judged it, ``owner`` the claim."""
    manifest = published.manifest
    return ModelPointer(
        version=manifest.version,
        uri=registry.platform.version_uri(manifest.project, manifest.version),
        sha256=manifest.model_sha256,
        promoted_at=now(),
        promoted_by=actor or registry.platform.actor,
        reason=reason,
        action=action,
        pins=published.pins,
        gates=None if gates is None else dict(gates),
        policy_revision=policy_revision,
        owner=owner,
    )


def promote(
    project: str,
    env: str,
    version: str,
    *,
    reason: str = "",
    force: bool = False,
    actor: str | None = None,
    registry: Registry,
    store: PointerStore | None = None,
) -> tuple[ModelPointer, list]:
    """Point ``env`` at ``version`` if the project's gates pass and no ModelDeployment owns
    the env (``force`` with a ``reason`` overrides both). Returns the new pointer and the
    gate results. Nothing is written when a check fails."""
    registration = registry.registration(project)
    config = registration.config
    config.check_env(env)
    published = registry.get_published(project, version)  # signed, pinned, untouched
    manifest = published.manifest
    log = PromotionLog(registry.platform, store)
    current = log.head(project, env)
    if current is not None:
        # A sealed head judged by a newer revision than the one in force: refused.
        check_in_force(
            current.policy_revision,
            registration.revision,
            what=f"entry {current.seq} of {project}/{env}'s promotion log",
            where=f"s3://{registry.bucket}/{registry.platform.registration_prefix(project)}",
        )
    if current is not None and current.version == version and current.pins is not None:
        # Already live: nothing to write, but the live value must still be the published one.
        registry.verify(project, version, current.pins, where=f"the pointer of {project}/{env}")
        return current, []
    given = reason
    claim, reason = check_manual_write(
        Claims(registry.platform), project, env, "promotion", force=force, reason=reason
    )
    current_manifest = None
    if current is not None:
        try:
            current_manifest = registry.get_manifest(project, current.version)
        except (NotFound, IntegrityError):
            current_manifest = None  # judged as a first promotion: absolute gates only
    report = judge(
        registry,
        log,
        project,
        env,
        manifest,
        current,
        current_manifest,
        override=Override(version, given, actor or registry.platform.actor) if force else None,
        gates=config.gates,
    )
    if not report.passed:
        raise GateFailed(
            f"{project}/{env}: {report.summary()}",
            hint="train a better model, adjust 'gates' in project.yaml, or override with "
            "--force --reason TEXT (recorded in the pointer)",
        )
    if force and not given.strip():
        raise InvalidInput("--force needs --reason TEXT saying why the gates are overridden")
    reason = report.forced_reason(reason)
    if report.rollback and not reason:
        reason = f"rollback to {version}, live at promotion log entry {report.live_at}"
    pointer = pointer_for(
        published,
        registry,
        reason=reason or "promote",
        actor=actor,
        gates=gate_values(config.gates),
        policy_revision=registration.revision,
        owner=claim.owner if claim is not None else None,
    )
    # Entry head+1 of the log, or Conflict if another writer appended since the head
    # was read: the gates above judged against a current version that is still current.
    return log.write(project, env, pushed(current, pointer)), list(report.results)


def judge(
    registry: Registry,
    log: PromotionLog,
    project: str,
    env: str,
    candidate: Manifest,
    head: ModelPointer | None,
    current: Manifest | None,
    *,
    override: Override | None = None,
    gates: Gates | None = None,
) -> GateReport:
    """:func:`mlops_core.gates.check` of ``candidate`` in ``env`` with what the promotion
    log says: whether it was live there before ``head`` (a rollback), and the project's
    gates in force (or ``gates``, e.g. a deployment's overrides applied)."""
    live_at = None
    if head is not None and head.seq is not None:
        live_at = log.live_before(project, env, candidate.version, below=head.seq + 1)
    if gates is None:
        gates = registry.registration(project).config.gates
    return check(gates, candidate, current, env=env, live_at=live_at, override=override)


def rollback(
    project: str,
    env: str,
    *,
    reason: str = "",
    force: bool = False,
    actor: str | None = None,
    registry: Registry,
    store: PointerStore | None = None,
) -> tuple[ModelPointer, ModelPointer]:
    """Reset ``env``'s pointer to the value it had before the last promotion, as the
    promotion log recorded it (pins included; nothing is re-read from the bucket).
    Refused while a ModelDeployment owns the env unless ``force``d with a ``reason``.
    Returns (from, to)."""
    log = PromotionLog(registry.platform, store)
    registry.get_project(project).check_env(env)
    claim, reason = check_manual_write(
        Claims(registry.platform), project, env, "rollback", force=force, reason=reason
    )
    head = log.head(project, env)
    if head is None:
        raise NotFound(f"{project}/{env} has no model pointer yet; nothing to roll back")
    if head.back is None:
        raise NotFound(
            f"{project}/{env} has no earlier version to roll back to (current: {head.version})",
            hint=f"'mlopsctl history --env {env} --project {project}' shows the log",
        )
    target = log.entry(project, env, head.back)
    if target is None:
        raise IntegrityError(
            f"entry {head.seq} of the promotion log returns to entry {head.back}, which is missing",
            where=registry.platform.promotions_prefix(project, env),
            hint="log entries are never deleted by the platform; restore the entry from "
            "the bucket's object versions, or promote a version explicitly",
        )
    if target.pins is None:
        # An entry adopted from a pointer older than pins: pinned by its publication
        # record (written at publish time), then verified like any other.
        pins = registry.get_published(project, target.version).pins
        target = target.model_copy(update={"pins": pins})
    # The pins of the entry it returns to, verified against publication.
    registry.verify(
        project, target.version, target.pins, where=f"entry {target.seq} of the promotion log"
    )
    entry = popped(
        head,
        target,
        promoted_at=now(),
        promoted_by=actor or registry.platform.actor,
        reason=reason or f"rollback from {head.version}",
        owner=claim.owner if claim is not None else None,
    )
    return head, log.write(project, env, entry)
