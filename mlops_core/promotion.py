"""Promotion and rollback: moves of the model pointer, never of artifacts.

Every pointer value records whether it was a promotion or a rollback, so rollback can walk
the parameter's own history like a stack: promote v1, v2, v3; rollback -> v2; rollback
-> v1 (not back to v3).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlops_core.artifacts import Manifest
from mlops_core.errors import GateFailed, InvalidInput, NotFound
from mlops_core.gates import evaluate, failed, gate_values
from mlops_core.pointer import ModelPointer, PointerStore, now, whoami
from mlops_core.registry import Registry


def pointer_for(
    manifest: Manifest,
    registry: Registry,
    *,
    reason: str,
    actor: str | None = None,
    action: str = "promote",
    gates: Mapping[str, Any] | None = None,
    policy_revision: int | None = None,
) -> ModelPointer:
    """The pointer value naming ``manifest``'s version; ``gates`` and ``policy_revision``
    record what judged a promotion (None for a rollback)."""
    return ModelPointer(
        version=manifest.version,
        uri=registry.platform.version_uri(manifest.project, manifest.version),
        sha256=manifest.model_sha256,
        promoted_at=now(),
        promoted_by=actor or whoami(),
        reason=reason,
        action=action,
        gates=None if gates is None else dict(gates),
        policy_revision=policy_revision,
    )


def promote(
    project: str,
    env: str,
    version: str,
    *,
    reason: str = "",
    force: bool = False,
    actor: str | None = None,
    registry: Registry | None = None,
    store: PointerStore | None = None,
) -> tuple[ModelPointer, list]:
    """Point ``env`` at ``version`` if the project's gates pass. Returns the new pointer and
    the gate results. Nothing is written when a check fails."""
    registry = registry or Registry()
    store = store or PointerStore(registry.platform)
    registration = registry.registration(project)
    config = registration.config
    config.check_env(env)
    manifest = registry.get_manifest(project, version)
    current = store.get(project, env)
    if current is not None and current.version == version:
        return current, []
    current_manifest = None
    if current is not None:
        try:
            current_manifest = registry.get_manifest(project, current.version)
        except NotFound:
            current_manifest = None
    results = evaluate(config.gates, manifest, current_manifest)
    bad = failed(results)
    if bad and not force:
        raise GateFailed(
            f"version {version} fails the gates of {project}/{env}: "
            + "; ".join(str(r) for r in bad),
            hint="train a better model, adjust 'gates' in project.yaml, or override with "
            "--force --reason TEXT (recorded in the pointer)",
        )
    if force and not reason.strip():
        raise InvalidInput("--force needs --reason TEXT saying why the gates are overridden")
    if force and bad:
        reason = f"FORCED past {', '.join(r.name for r in bad)}: {reason}"
    pointer = pointer_for(
        manifest,
        registry,
        reason=reason or "promote",
        actor=actor,
        gates=gate_values(config.gates),
        policy_revision=registration.revision,
    )
    store.put(project, env, pointer)
    return pointer, results


def rollback_target(history: list[ModelPointer]) -> ModelPointer | None:
    """The pointer value a rollback returns to, from the parameter's history."""
    stack: list[ModelPointer] = []
    for entry in history:
        if entry.action == "rollback":
            while stack and stack[-1].version != entry.version:
                stack.pop()
            if not stack:
                stack.append(entry)
        elif not stack or stack[-1].version != entry.version:
            stack.append(entry)
    return stack[-2] if len(stack) >= 2 else None


def rollback(
    project: str,
    env: str,
    *,
    reason: str = "",
    actor: str | None = None,
    registry: Registry | None = None,
    store: PointerStore | None = None,
) -> tuple[ModelPointer, ModelPointer]:
    """Reset ``env``'s pointer to the previous value. Returns (from, to)."""
    registry = registry or Registry()
    store = store or PointerStore(registry.platform)
    registry.get_project(project).check_env(env)
    history = store.history(project, env)
    if not history:
        raise NotFound(f"{project}/{env} has no model pointer yet; nothing to roll back")
    target = rollback_target(history)
    if target is None:
        raise NotFound(
            f"{project}/{env} has no earlier version to roll back to "
            f"(current: {history[-1].version})"
        )
    manifest = registry.get_manifest(project, target.version)  # still published, verified
    pointer = pointer_for(
        manifest,
        registry,
        reason=reason or f"rollback from {history[-1].version}",
        actor=actor,
        action="rollback",
    )
    store.put(project, env, pointer)
    return history[-1], pointer
