"""The project's registration, versioned: the envs and gates that judge promotions.

A registration is a series of revisions, ``s3://{bucket}/{project}/registration/{rev:06d}.json``
(:class:`Registration`), each written once with a conditional put (``IfNoneMatch="*"``), so
a revision is never rewritten and of two writers of the same revision exactly one wins.
The head, the highest revision, is the policy in force.

- The first ``mlopsctl publish`` of a project registers revision 1 from its project.yaml.
- Later publishes never change the registration; when project.yaml's envs or gates differ
  from the head, publish says so and goes on.
- Only ``mlopsctl policy set --reason TEXT`` writes revision N+1, recording who and why.

Revision 0 stands for the legacy, unversioned and unsigned ``{project}/project.json``. It
never judges a promotion: a project with no sealed revision but a legacy file is an
integrity failure wherever the registration in force is asked for (promote, rollback, the
controller, ``policy show``, ``status``), because a first publish writes revision 1 sealed,
so only data from before the seal or a bucket writer who deleted every revision leaves
that state. The publisher supersedes it with revision 1 from project.yaml: ``policy set``,
or the next ``publish``, which registers as a first publish does and says so.

Each revision is stored sealed (:func:`~mlops_core.signing.seal`) with the model-signing
key, the key only the publishing identity may use: a writer of the bucket who is not the
publisher cannot add a revision that loosens the gates, and a revision that does not
verify is an integrity failure, never a policy. (The legacy revision 0 is unsigned; it
is only shown, as what revision 1 superseded.)
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlops_core import aws, signing
from mlops_core.errors import Conflict, IntegrityError, InvalidInput, NotFound
from mlops_core.gates import gate_values
from mlops_core.naming import REGISTRATION_MAX, Platform, check_project
from mlops_core.pointer import now
from mlops_core.project import ProjectConfig

_REVISION_NAME = re.compile(r"^([0-9]{6})\.json$")
LEGACY_REVISION = 0
REVISION_TYPE = "mlops.platform.io/registration/v1"
SET_HINT = "change them with 'mlopsctl policy set --reason TEXT' (recorded with who and why)"


class Registration(BaseModel):
    """One revision of a project's registration."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    revision: int = Field(ge=LEGACY_REVISION, le=REGISTRATION_MAX)
    config: ProjectConfig
    author: str = Field(min_length=1)
    created_at: datetime
    reason: str = Field(min_length=1)
    previous: int | None = Field(
        None, ge=LEGACY_REVISION, description="The revision this one replaced (None: first)."
    )

    def sealed(self, key: str) -> bytes:
        """The bytes stored in S3: this revision sealed with the KMS key ``key``."""
        return signing.seal(key, REVISION_TYPE, self.model_dump(mode="json"))


def check_in_force(judged: int | None, newest: int, *, what: str, where: str) -> None:
    """IntegrityError if ``what`` was judged by a newer registration revision than the
    ``newest`` there is: the newest revisions were deleted, which would hand the gates back
    to older ones. ``judged`` None (a rollback: no gate judged it) is never compared."""
    if judged is None or judged <= newest:
        return
    raise IntegrityError(
        f"{what} was judged by registration revision {judged}, but the newest revision is "
        f"{newest}: revisions were deleted; nothing changed",
        where=where,
        hint="restore the deleted revisions from the bucket's object versions (an "
        "administrator) and find out who deleted them",
    )


def policy_of(config: ProjectConfig) -> dict[str, Any]:
    """The part of a registration that judges promotions: its envs and gates."""
    return {"envs": list(config.envs), "gates": gate_values(config.gates)}


def same_config(a: ProjectConfig, b: ProjectConfig) -> bool:
    return a.model_dump(mode="json") == b.model_dump(mode="json")


def _fmt(value: Any) -> str:
    return "unset" if value is None else json.dumps(value)


def diff(before: ProjectConfig | None, after: ProjectConfig) -> list[str]:
    """What registering ``after`` over ``before`` changes, one line each: per env its
    gate changes (gates apply to every env of the project), envs added or removed, and
    the names of other fields that change."""
    new_gates = gate_values(after.gates)
    if before is None:
        values = ", ".join(f"{k}={_fmt(v)}" for k, v in new_gates.items() if v is not None)
        return [f"{env}: added with {values}" for env in after.envs]
    old_gates = gate_values(before.gates)
    changed = [
        f"{name} {_fmt(old_gates.get(name))} -> {_fmt(value)}"
        for name, value in new_gates.items()
        if old_gates.get(name) != value
    ]
    lines: list[str] = []
    for env in after.envs:
        if env not in before.envs:
            lines.append(f"{env}: added")
        elif changed:
            lines.append(f"{env}: {', '.join(changed)}")
    lines += [f"{env}: removed" for env in before.envs if env not in after.envs]
    old, new = before.model_dump(mode="json"), after.model_dump(mode="json")
    other = [k for k in new if k not in ("gates", "envs") and old.get(k) != new[k]]
    if other:
        lines.append(f"also changed: {', '.join(other)}")
    return lines


def publish_note(head: Registration, config: ProjectConfig) -> str | None:
    """One line when project.yaml's envs or gates differ from the registration in force."""
    if policy_of(head.config) == policy_of(config):
        return None
    return (
        f"note: project.yaml's envs/gates differ from the registration in force "
        f"(revision {head.revision}); publishing does not change them: {SET_HINT}"
    )


@dataclass(frozen=True)
class PolicyChange:
    """What ``policy set`` found and did: ``written`` is None when nothing was written
    (no change, or a dry run)."""

    head: Registration | None
    config: ProjectConfig
    lines: list[str]
    written: Registration | None = None

    @property
    def changed(self) -> bool:
        # The unsigned legacy registration is never in force: superseding it with the
        # same envs and gates still writes revision 1, sealed.
        return (
            self.head is None
            or self.head.revision == LEGACY_REVISION
            or not same_config(self.head.config, self.config)
        )


def _precondition_failed(exc: ClientError) -> bool:
    return aws.error_code(exc) in aws.CONDITION_LOST


def _missing(exc: ClientError) -> bool:
    return aws.error_code(exc) in ("NoSuchKey", "404", "NotFound")


class Policy:
    """The registrations of every project of one platform."""

    def __init__(self, platform: Platform):
        self.platform = platform
        self.bucket = platform.artifact_bucket
        self.key = platform.model_signing_key

    @property
    def _s3(self):
        return aws.client("s3")

    # -- reading -----------------------------------------------------------------------
    def revisions(self, project: str) -> list[int]:
        """Every revision number of ``project``'s registration, ascending."""
        prefix = self.platform.registration_prefix(project)
        found: list[int] = []
        for page in self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        ):
            for obj in page.get("Contents", []):
                m = _REVISION_NAME.fullmatch(obj["Key"][len(prefix) :])
                if m and int(m.group(1)) >= 1:
                    found.append(int(m.group(1)))
        return sorted(found)

    def get(self, project: str, revision: int) -> Registration:
        key = self.platform.registration_key(project, revision)
        where = f"s3://{self.bucket}/{key}"
        try:
            raw = signing.read_sealed(self._s3.get_object(Bucket=self.bucket, Key=key), where)
        except ClientError as exc:
            if _missing(exc):
                raise NotFound(f"{project} has no registration revision {revision}") from None
            raise
        document = signing.unseal(self.key, REVISION_TYPE, raw, where)
        try:
            doc = Registration.model_validate(document)
        except ValidationError as exc:
            raise IntegrityError(
                f"malformed registration: {exc.errors()[0]['msg']}", where=where
            ) from None
        if doc.revision != revision or doc.config.name != project:
            raise IntegrityError(
                f"the document is revision {doc.revision} of {doc.config.name!r}, "
                f"stored as revision {revision} of {project!r}",
                where=where,
                hint="registration revisions are written once by 'mlopsctl policy set'; "
                "this one was altered",
            )
        return doc

    def _legacy(self, project: str) -> Registration | None:
        key = self.platform.legacy_registration_key(project)
        try:
            obj = self._s3.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _missing(exc):
                return None
            raise
        try:
            config = ProjectConfig.model_validate_json(obj["Body"].read())
        except ValidationError as exc:
            raise InvalidInput(
                f"malformed project registration: {exc.errors()[0]['msg']}",
                where=f"s3://{self.bucket}/{key}",
                hint=f"register it anew: {SET_HINT}",
            ) from None
        return Registration(
            revision=LEGACY_REVISION,
            config=config,
            author="unknown",
            created_at=obj["LastModified"],
            reason=f"legacy {key}, written before registrations had revisions",
        )

    def _legacy_present(self, project: str) -> bool:
        try:
            self._s3.head_object(
                Bucket=self.bucket, Key=self.platform.legacy_registration_key(project)
            )
        except ClientError as exc:
            if _missing(exc):
                return False
            raise
        return True

    def head(self, project: str) -> Registration | None:
        """The registration in force: the highest sealed revision; None if the project
        was never registered. IntegrityError if it has no sealed revision but a legacy,
        unsigned project.json: that is never a policy (see the module's docstring)."""
        revisions = self.revisions(check_project(project))
        if revisions:
            return self.get(project, revisions[-1])
        if self._legacy_present(project):
            key = self.platform.legacy_registration_key(project)
            raise IntegrityError(
                f"{project} has no sealed registration revision, only the unsigned legacy "
                "project.json, which never judges a promotion",
                where=f"s3://{self.bucket}/{key} "
                f"(no s3://{self.bucket}/{self.platform.registration_prefix(project)}*.json)",
                hint="as the publisher, re-register the project from its project.yaml: "
                "'mlopsctl policy set --reason TEXT' (or the next 'mlopsctl publish') writes "
                "revision 1 sealed; if it had revisions, someone deleted them: restore them "
                "from the bucket's object versions and find out who",
            )
        return None

    def _superseded(self, project: str) -> Registration | None:
        """What a writer of the next revision replaces: the head, else the legacy
        registration (None if it is unreadable too), else None."""
        revisions = self.revisions(check_project(project))
        if revisions:
            return self.get(project, revisions[-1])
        try:
            return self._legacy(project)
        except InvalidInput:
            return None  # a malformed legacy file: superseded all the same

    def history(self, project: str) -> list[Registration]:
        """Every revision, newest first, ending with the legacy one if it is still there
        (what revision 1 superseded; with no revision at all, nothing: IntegrityError as
        from :meth:`head`)."""
        revisions = self.revisions(check_project(project))
        if not revisions:
            self.head(project)  # IntegrityError if only the legacy one is there
            return []
        out = [self.get(project, r) for r in reversed(revisions)]
        try:
            legacy = self._legacy(project)
        except InvalidInput:
            legacy = None
        return out + ([legacy] if legacy is not None else [])

    # -- writing -----------------------------------------------------------------------
    def write(
        self, config: ProjectConfig, *, author: str, reason: str, previous: Registration | None
    ) -> Registration:
        """Create the revision after ``previous`` (1 if None). Raises Conflict, naming the
        winner, if another writer created that revision first; nothing is overwritten."""
        project = config.name
        revision = 1 if previous is None else previous.revision + 1
        if revision > REGISTRATION_MAX:
            # Only a revision written outside the platform gets here (one a day would
            # take 2,700 years): say so instead of failing validation.
            raise IntegrityError(
                f"the registration of {project} is at revision {revision - 1}, the last "
                "one its keys can hold",
                where=self.platform.registration_prefix(project),
                hint="a revision that high was not written by 'mlopsctl policy set'; "
                "investigate and remove it (an administrator, under the bucket policy)",
            )
        doc = Registration(
            revision=revision,
            config=config,
            author=author,
            created_at=now(),
            reason=reason,
            previous=None if previous is None else previous.revision,
        )
        try:
            self._s3.put_object(
                Bucket=self.bucket,
                Key=self.platform.registration_key(project, revision),
                Body=doc.sealed(self.key),
                IfNoneMatch="*",
                ContentType="application/json",
                Tagging=urlencode(self.platform.cost_tags(project)),
            )
        except ClientError as exc:
            if not _precondition_failed(exc):
                raise
            winner = self.get(project, revision)
            raise Conflict(
                f"revision {revision} of {project}'s registration was written first by "
                f"{winner.author} at {winner.created_at:%Y-%m-%dT%H:%M:%SZ} "
                f"({winner.reason})",
                hint="see 'mlopsctl policy show', then run 'mlopsctl policy set' again "
                "if your change is still wanted",
            ) from None
        return doc

    def ensure(self, config: ProjectConfig, *, reason: str) -> tuple[Registration, bool]:
        """The head, registering ``config`` as revision 1 first if the project has no
        sealed registration (none at all, or only the legacy one, which revision 1
        then supersedes: ``previous`` 0). Returns (head, whether this call created it)."""
        head = self._superseded(config.name)
        if head is not None and head.revision != LEGACY_REVISION:
            return head, False
        try:
            return self.write(
                config, author=self.platform.actor, reason=reason, previous=head
            ), True
        except Conflict:
            # A concurrent first registration won: it is the head now.
            head = self.head(config.name)
            if head is None:
                raise
            return head, False

    def set(
        self,
        config: ProjectConfig,
        *,
        reason: str,
        author: str | None = None,
        dry_run: bool = False,
    ) -> PolicyChange:
        """Make ``config`` the registration in force as revision N+1, recording who and
        why. Writes nothing when it equals the head or on a dry run."""
        if not reason.strip():
            raise InvalidInput(
                "a new registration needs a reason",
                hint="pass --reason TEXT saying why the envs or gates change (recorded)",
            )
        head = self._superseded(config.name)
        change = PolicyChange(head, config, diff(head.config if head else None, config))
        if not change.changed or dry_run:
            return change
        written = self.write(
            config, author=author or self.platform.actor, reason=reason, previous=head
        )
        return PolicyChange(head, config, change.lines, written)
