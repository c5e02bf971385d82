"""Who owns a (project, env): the one home of the controller's ownership rule.

Exactly one ModelDeployment owns a project/env: the one whose key (``namespace/name``) the
env's claim names (:mod:`mlops_core.claims`, created atomically before any other write).
The ECS service's ``mlops.platform.io/deployment`` tag is only a label of it. Every place
that must know whether a deployment may act (the planner, the batch observer, the
executor, the delete policy) asks here, so the rule and the message a refused deployment
gets are written once.
"""

from __future__ import annotations

from collections.abc import Mapping

from controller.actions import TAG_DEPLOYMENT
from mlops_core.claims import Claim
from mlops_core.errors import Conflict


def service_label(tags: Mapping[str, str] | None) -> str | None:
    """The deployment key a service's tags name (a label; the claim decides)."""
    return (tags or {}).get(TAG_DEPLOYMENT) or None


def other_owner(key: str, claim: Claim | None) -> str | None:
    """The owner ``claim`` names if it is a deployment other than ``key``."""
    return claim.owner if claim is not None and claim.owner != key else None


def conflict(project: str, env: str, key: str, owner: str) -> Conflict:
    """The error a deployment gets for a project/env that ``owner`` holds."""
    return Conflict(
        f"{project}/{env} belongs to ModelDeployment {owner}; ModelDeployment {key} "
        "cannot deploy it too",
        where="spec.project/spec.env",
        hint=f"one project/env has one ModelDeployment: delete {key}, or delete {owner} "
        "(its default Retain policy leaves AWS as it is and releases the env's claim, so "
        f"that {key} adopts it at its next pass)",
    )


def batch_winner(
    claim: Claim | None, service_tags: Mapping[str, str] | None, keys: list[str]
) -> str:
    """Of several deployments in one pass naming the same project/env, the one that may
    act: the claim's owner if it is among them; for an unclaimed env the one the
    service's label names (a service from before claims), else the first key in sort
    order. The others write nothing, not even a claim."""
    if claim is not None:
        return claim.owner
    label = service_label(service_tags)
    return label if label in keys else sorted(keys)[0]
