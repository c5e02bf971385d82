"""Ownership claims: which ModelDeployment owns a (project, env), stored where AWS is.

    s3://{bucket}/{project}/claims/{env}.json     {"owner": "ml/usedcar-prod", ...}

The claim is the one source of truth of ownership. It is created once with a conditional
put (``IfNoneMatch="*"``), so of two deployments claiming one env together exactly one
wins and the other learns the winner before it has written anything else. It is deleted
only by its owner (``If-Match`` on the ETag read with it), when a ``Retain`` or
``ScaleToZero`` delete hands the env over. The ECS service's deployment tag is a label
written after the claim, never consulted to decide.

Every writer of the pointer checks it: the controller before it moves the pointer, and
``mlopsctl promote``/``rollback`` (:func:`check_manual_write`), which a claimed env refuses
unless forced with a reason.
"""

from __future__ import annotations

from datetime import UTC, datetime

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlops_core import aws
from mlops_core.errors import Conflict, IntegrityError, InvalidInput
from mlops_core.naming import Platform

_LOST = aws.CONDITION_LOST
_MISSING = ("NoSuchKey", "404", "NotFound")


class Claim(BaseModel):
    model_config = ConfigDict(extra="forbid")

    owner: str = Field(min_length=1, description="The owning key: namespace/name.")
    source: str = Field("", description="Where the owner's manifest lives (the source URI).")
    created_at: datetime


class Claims:
    """Reads, creates and releases one platform's claims."""

    def __init__(self, platform: Platform):
        self.platform = platform

    @property
    def _s3(self):
        return aws.client("s3")

    def uri(self, project: str, env: str) -> str:
        return f"s3://{self.platform.artifact_bucket}/{self.platform.claim_key(project, env)}"

    def _read(self, project: str, env: str) -> tuple[Claim, str] | None:
        """The claim and its ETag, or None if the env is unclaimed. One GET."""
        key = self.platform.claim_key(project, env)
        try:
            got = self._s3.get_object(Bucket=self.platform.artifact_bucket, Key=key)
        except ClientError as exc:
            if aws.error_code(exc) in _MISSING:
                return None
            raise
        try:
            return Claim.model_validate_json(got["Body"].read()), got["ETag"]
        except ValidationError as exc:
            raise IntegrityError(
                f"not a valid ownership claim: {exc.errors()[0]['msg']}",
                where=self.uri(project, env),
                hint="claims are written only by the controller; find out who wrote this "
                "object, then delete it so that the env's ModelDeployment claims it again",
            ) from None

    def get(self, project: str, env: str) -> Claim | None:
        found = self._read(project, env)
        return None if found is None else found[0]

    def create(self, project: str, env: str, owner: str, source: str = "") -> Claim:
        """Claim the env for ``owner`` unless it is claimed. Returns the claim in force:
        ``owner``'s (new, or found: safe to repeat) or the one another owner made first,
        in which case nothing was written."""
        found = self.get(project, env)
        if found is not None:
            return found
        claim = Claim(owner=owner, source=source, created_at=datetime.now(UTC))
        try:
            self._s3.put_object(
                Bucket=self.platform.artifact_bucket,
                Key=self.platform.claim_key(project, env),
                Body=claim.model_dump_json().encode(),
                ContentType="application/json",
                IfNoneMatch="*",
            )
        except ClientError as exc:
            if aws.error_code(exc) not in _LOST:
                raise
            winner = self.get(project, env)
            if winner is None:  # S3's 409: the winner's write has not landed yet
                raise Conflict(
                    f"{project}/{env} is being claimed by another writer right now",
                    where=self.uri(project, env),
                    hint="nothing was written; the next attempt finds out who owns it",
                ) from None
            return winner
        return claim

    def release(self, project: str, env: str, owner: str) -> bool:
        """Delete the claim if ``owner`` holds it (only the ETag read is deleted, so a
        claim made since is kept). Returns whether a claim was released."""
        found = self._read(project, env)
        if found is None or found[0].owner != owner:
            return False
        try:
            self._s3.delete_object(
                Bucket=self.platform.artifact_bucket,
                Key=self.platform.claim_key(project, env),
                IfMatch=found[1],
            )
        except ClientError as exc:
            if aws.error_code(exc) in _LOST + _MISSING:
                return False  # released meanwhile (a repeat), so not ours any more
            raise
        return True


def check_manual_write(
    claims: Claims, project: str, env: str, action: str, *, force: bool, reason: str
) -> tuple[Claim | None, str]:
    """Whether a person may move ``project``/``env``'s pointer (``action``: promote or
    rollback). Returns the claim in force and the reason to record; raises Conflict if a
    ModelDeployment owns the env and the write is not forced with a reason."""
    claim = claims.get(project, env)
    if claim is None:
        return None, reason
    if not force:
        raise Conflict(
            f"{project}/{env} is owned by ModelDeployment {claim.owner}"
            + (f" (from {claim.source})" if claim.source else "")
            + f"; a {action} by hand would fight the controller",
            where=claims.uri(project, env),
            hint=f"change spec.model in {claim.owner}'s manifest and apply it "
            f"('mlopsctl deploy --env {env}'), or override with --force --reason TEXT "
            "(recorded in the promotion log; the controller restores its spec's version "
            "at its next pass unless the spec changes)",
        )
    if not reason.strip():
        raise InvalidInput(
            f"--force needs --reason TEXT saying why {claim.owner}'s {project}/{env} is "
            f"overridden by hand"
        )
    return claim, f"FORCED past the owner {claim.owner}: {reason}"
