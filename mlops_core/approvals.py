"""Approvals of progressive rollouts: who let which version take production traffic.

A ModelDeployment that needs approval (``spec.approval``, or the project's
``approval_required`` envs) has ECS pause each new revision before production traffic
shifts. ``mlopsctl approve`` or ``mlopsctl reject`` records the decision for that one ECS
service deployment, and the controller continues or rolls back:

    {project}/approvals/{env}/{service deployment id}.json

A record is sealed with the promotion-signing key (the key of the people who promote, and
of the controller), for its own S3 key, so a bucket writer can neither forge one nor copy
one to another rollout. It is created once (``IfNoneMatch``): the first decision stands,
and a second one is refused, naming the first.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlops_core import aws, signing
from mlops_core.artifacts import VERSION_RE
from mlops_core.errors import Conflict, IntegrityError
from mlops_core.naming import Platform

RECORD_TYPE = "mlops.approval.v1"
_MISSING = {"NoSuchKey", "404", "NotFound"}
_LOST = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}

Decision = Literal["approve", "reject"]
PAST = {"approve": "approved", "reject": "rejected"}


class ApprovalDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Decision
    version: str = Field(pattern=VERSION_RE.pattern)
    service_deployment: str = Field(description="The ECS service deployment ARN it is for.")
    by: str = Field(min_length=1, max_length=200)
    reason: str = Field(min_length=1, max_length=500)
    at: datetime


def rollout_id(service_deployment_arn: str) -> str:
    return service_deployment_arn.rstrip("/").rpartition("/")[2]


class Approvals:
    def __init__(self, platform: Platform):
        self.platform = platform
        self.key = platform.promotion_signing_key

    def _where(self, key: str) -> str:
        return f"s3://{self.platform.artifact_bucket}/{key}"

    def where(self, project: str, env: str, service_deployment: str) -> str:
        """The record's S3 URI."""
        return self._where(self.platform.approval_key(project, env, rollout_id(service_deployment)))

    def get(self, project: str, env: str, service_deployment: str) -> ApprovalDecision | None:
        """The decision recorded for this rollout (None: none yet). IntegrityError for a
        record that is not genuine, or not for this rollout."""
        key = self.platform.approval_key(project, env, rollout_id(service_deployment))
        where = self._where(key)
        try:
            obj = aws.client("s3").get_object(Bucket=self.platform.artifact_bucket, Key=key)
        except ClientError as exc:
            if aws.error_code(exc) in _MISSING:
                return None
            raise
        raw = signing.read_sealed(obj, where)
        with signing.promotion_key_errors(self.key, "approvals"):
            document = signing.unseal(self.key, RECORD_TYPE, raw, where, subject=key)
        try:
            found = ApprovalDecision.model_validate(document)
        except ValidationError as exc:
            raise IntegrityError(
                f"not a valid approval record: {exc.errors()[0]['msg']}",
                where=where,
                hint="approvals are written by 'mlopsctl approve' and 'reject' only",
            ) from None
        if found.service_deployment != service_deployment:
            raise IntegrityError(
                f"the approval record is for {found.service_deployment}",
                where=where,
                hint="records are never copied or moved; find out who wrote this object",
            )
        return found

    def record(
        self,
        project: str,
        env: str,
        *,
        service_deployment: str,
        decision: Decision,
        version: str,
        by: str,
        reason: str,
        now: datetime | None = None,
    ) -> ApprovalDecision:
        """Record a decision, or raise Conflict naming the one recorded first."""
        entry = ApprovalDecision(
            decision=decision,
            version=version,
            service_deployment=service_deployment,
            by=by,
            reason=reason.strip(),
            at=now or datetime.now(UTC),
        )
        key = self.platform.approval_key(project, env, rollout_id(service_deployment))
        with signing.promotion_key_errors(self.key, "approvals"):
            body = signing.seal(self.key, RECORD_TYPE, entry.model_dump(mode="json"), key)
        try:
            aws.client("s3").put_object(
                Bucket=self.platform.artifact_bucket,
                Key=key,
                Body=body,
                ContentType="application/json",
                IfNoneMatch="*",
            )
        except ClientError as exc:
            if aws.error_code(exc) not in _LOST:
                raise
            first = self.get(project, env, service_deployment)
            who = (
                f"{PAST[first.decision]} by {first.by} at {first.at:%Y-%m-%dT%H:%M:%SZ}: "
                f"{first.reason}"
                if first is not None
                else "being decided by someone else right now"
            )
            raise Conflict(
                f"the rollout of {version} in {project}/{env} was already {who}",
                where=self._where(key),
                hint="a rollout is decided once; a new decision needs a new rollout: "
                "declare another version, or roll this one out again with 'mlopsctl deploy "
                f"--env {env} --version {version} --retry' (a rejected version is not "
                "tried again while the spec that failed stays as it is)",
            ) from None
        return entry
