"""Who owns a (project, env): the one home of the ownership rule.

Exactly one ModelDeployment owns a project/env. Its key (``namespace/name``) is what the
ECS service's ``mlops.platform.io/deployment`` tag names; every place that must know
whether a deployment may act (the planner, the batch observer, the delete policy) asks
here, so the rule and the message a refused deployment gets are written once.
"""

from __future__ import annotations

from collections.abc import Mapping

from controller.actions import TAG_DEPLOYMENT
from mlops_core.errors import Conflict


def service_owner(tags: Mapping[str, str] | None) -> str | None:
    """The deployment key a service's tags name as its owner (None: unowned)."""
    return (tags or {}).get(TAG_DEPLOYMENT) or None


def other_owner(key: str, tags: Mapping[str, str] | None) -> str | None:
    """The owner named by ``tags`` if it is a deployment other than ``key``."""
    owner = service_owner(tags)
    return owner if owner is not None and owner != key else None


def conflict(project: str, env: str, key: str, owner: str) -> Conflict:
    """The error a deployment gets for a project/env that ``owner`` holds."""
    return Conflict(
        f"{project}/{env} belongs to ModelDeployment {owner}; ModelDeployment {key} "
        "cannot deploy it too",
        where="spec.project/spec.env",
        hint=f"one project/env has one ModelDeployment: delete {key}, or delete {owner} "
        "(its default Retain policy leaves AWS as it is and lets another adopt the env)",
    )


def batch_winner(service_tags: Mapping[str, str] | None, keys: list[str]) -> str:
    """Of several deployments in one pass naming the same project/env, the one that may
    act: the service's owner if it is among them, else the first key in sort order."""
    owner = service_owner(service_tags)
    return owner if owner in keys else sorted(keys)[0]
