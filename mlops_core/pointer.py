"""The model pointer: one SSM parameter per project and env naming the live version.

``/{platform}/{project}/{env}/model`` holds JSON (:class:`ModelPointer`). Promotion is a
pointer update; rollback resets it to an earlier value. Every change is written first to
the promotion log in S3 (:mod:`mlops_core.promotion_log`, the record and the writers'
serialisation point); this parameter is the readers' copy of the log's head. Artifacts
are never touched by either. Every value carries the version's publication pins
(:class:`mlops_core.publication.Pins`), copied from the publication record or from the
log entry a rollback returns to, never taken from what the bucket holds now.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlops_core import aws
from mlops_core.artifacts import SHA256_RE, VERSION_RE
from mlops_core.errors import InvalidInput
from mlops_core.naming import Platform
from mlops_core.publication import Pins

# Terraform creates each pointer parameter before any promotion with this placeholder
# (SSM has no empty values) and then ignores changes to it; it means "no model yet".
UNSET_VALUES = ("{}", "")


class ModelPointer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str = Field(pattern=VERSION_RE.pattern)
    uri: str = Field(description="s3:// URI of the version's folder")
    sha256: str = Field(pattern=SHA256_RE.pattern, description="sha256 of the model file")
    promoted_at: datetime
    promoted_by: str
    reason: str = ""
    action: Literal["promote", "rollback"] = Field(
        "promote", description="How this value was set: a promotion or a rollback."
    )
    # Set by the promotion log (mlops_core.promotion_log); pointers written before it
    # existed lack them.
    seq: int | None = Field(
        None, ge=1, description="The promotion log entry that holds this value."
    )
    back: int | None = Field(
        None, ge=1, description="The log entry a rollback from this value returns to."
    )
    pins: Pins | None = Field(
        None,
        description="The manifest digest and S3 object versions publication recorded; "
        "consumers refuse a value without them or with others.",
    )
    # What judged a promotion (None on a rollback, which no gate judges, and on pointers
    # written before they were recorded): the gate values in force, after a
    # deployment's overrides, and the registration revision they came from.
    gates: dict[str, Any] | None = Field(
        None, description="The gate values that judged this promotion."
    )
    policy_revision: int | None = Field(
        None, ge=0, description="The project registration revision the gates came from."
    )
    # Who approved the progressive rollout that put this version live (decision,
    # version, by, reason, at, source); None when the rollout needed no approval.
    approval: dict[str, Any] | None = Field(
        None, description="The approval of the rollout that made this value live."
    )
    # The claim in force when the value was written (mlops_core.claims); None: no
    # deployment owned the env, or the value predates claims.
    owner: str | None = Field(
        None, description="The ModelDeployment that owned the env when this was written."
    )

    def to_json(self) -> str:
        return self.model_dump_json()


def now() -> datetime:
    return datetime.now(UTC)


class PointerStore:
    """Reads and writes the pointer parameters of one platform."""

    def __init__(self, platform: Platform):
        self.platform = platform

    @property
    def _ssm(self):
        return aws.client("ssm")

    def _parse(self, raw: str, name: str) -> ModelPointer:
        try:
            return ModelPointer.model_validate_json(raw)
        except ValidationError as exc:
            raise InvalidInput(
                f"the pointer parameter does not hold a valid pointer: {exc.errors()[0]['msg']}",
                where=name,
                hint="promote a version to rewrite it ('mlopsctl promote VERSION --env ENV')",
            ) from None

    def get(self, project: str, env: str) -> ModelPointer | None:
        name = self.platform.pointer_param(project, env)
        try:
            raw = self._ssm.get_parameter(Name=name)["Parameter"]["Value"]
        except self._ssm.exceptions.ParameterNotFound:
            return None
        if raw.strip() in UNSET_VALUES:
            return None  # created empty by Terraform; the first promotion fills it
        return self._parse(raw, name)

    def put(self, project: str, env: str, pointer: ModelPointer) -> None:
        """Overwrite the parameter. Only the promotion log calls this (after its own
        write): every other writer goes through ``mlops_core.promotion_log``."""
        name = self.platform.pointer_param(project, env)
        self._ssm.put_parameter(
            Name=name,
            Value=pointer.to_json(),
            Type="String",
            Overwrite=True,
            Description=f"Live model of {project} in {env} (managed by mlopsctl / controller)",
        )

    def history(self, project: str, env: str) -> list[ModelPointer]:
        """Every value the parameter has held, oldest first (invalid entries skipped)."""
        name = self.platform.pointer_param(project, env)
        out: list[ModelPointer] = []
        kwargs = {"Name": name, "MaxResults": 50}
        try:
            while True:
                page = self._ssm.get_parameter_history(**kwargs)
                for p in page.get("Parameters", []):
                    try:
                        out.append(ModelPointer.model_validate_json(p["Value"]))
                    except ValidationError:
                        continue
                token = page.get("NextToken")
                if not token:
                    break
                kwargs["NextToken"] = token
        except self._ssm.exceptions.ParameterNotFound:
            return []
        return out
