"""What every manifest source (a folder, an S3 prefix) provides to the daemon.

A source stores ``NAME.yaml`` manifests and, beside each, a status record the controller
writes. Sources without an API server also keep the bookkeeping an API server would do:
the record holds the spec's hash and a generation counter, and :func:`next_generation`
bumps the counter when the spec changes (a ``metadata.generation`` in the manifest wins).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from controller.api import API_VERSION, ModelDeployment, ModelDeploymentStatus

RECORD_KIND = "ModelDeploymentStatusRecord"


class StatusRecord(BaseModel):
    """The status object a source keeps beside ``NAME.yaml``."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    api_version: str = API_VERSION
    kind: str = RECORD_KIND
    name: str = Field(description="The manifest's file name without .yaml.")
    key: str | None = Field(None, description="namespace/name of the deployment, if parsed.")
    generation: int = Field(description="Spec generation the controller computed.")
    spec_hash: str = Field(description="sha256 of the spec (or raw text) of that generation.")
    status: ModelDeploymentStatus | None = None
    updated_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, indent=2, exclude_none=True) + "\n"

    def same_content(self, other: StatusRecord | None) -> bool:
        """Equal but for ``updatedAt``: writing it again would change nothing."""
        if other is None:
            return False
        skip = {"updated_at"}
        return self.model_dump(exclude=skip) == other.model_dump(exclude=skip)


class PutResult(BaseModel):
    """What ``put_manifest`` wrote: poll ``get_record(name)`` until it is observed."""

    name: str
    where: str
    spec_hash: str


def next_generation(
    deployment_generation: int | None, spec_hash: str, previous: StatusRecord | None
) -> int:
    """The generation of a spec: the manifest's own if set, else the recorded counter,
    incremented when the spec hash differs from the recorded one."""
    if deployment_generation is not None:
        return deployment_generation
    if previous is None:
        return 1
    return previous.generation if previous.spec_hash == spec_hash else previous.generation + 1


def is_observed(record: StatusRecord | None, spec_hash: str) -> bool:
    """True once the controller has reconciled exactly this spec (for ``deploy --wait``)."""
    return (
        record is not None
        and record.spec_hash == spec_hash
        and record.status is not None
        and record.status.observed_generation == record.generation
    )


@runtime_checkable
class Source(Protocol):
    """A store of ModelDeployment manifests plus their status records.

    ``NAME`` is a manifest's file name without ``.yaml``; it is the work-queue key.
    """

    uri: str

    def scan(self) -> dict[str, str]:
        """Every manifest NAME with a change token (mtime/size, ETag). Cheap: one listing."""
        ...

    def where(self, name: str) -> str:
        """Where NAME's manifest lives (a path or s3:// URI), for messages."""
        ...

    def read(self, name: str) -> str | None:
        """The manifest's text, or None if it is gone."""
        ...

    def read_status(self, name: str) -> StatusRecord | None: ...

    def write_status(self, name: str, record: StatusRecord) -> None: ...

    def delete_status(self, name: str) -> None: ...

    def guard(self, name: str) -> AbstractContextManager[bool]:
        """Hold the right to act on NAME: yields False if another controller has it."""
        ...

    def heartbeat(self) -> bool:
        """Renew or acquire leases that are due (on every poll); False while another
        controller holds the whole source (this one is a standby)."""
        ...

    def close(self) -> None:
        """Release every lease this process holds."""
        ...

    def put_manifest(self, deployment: ModelDeployment) -> PutResult: ...

    def get_record(self, name: str) -> StatusRecord | None: ...

    def get_status(self, name: str) -> ModelDeploymentStatus | None: ...


def strip_namespace(name_or_key: str) -> str:
    """Accept ``NAME`` or ``namespace/NAME`` where a source expects NAME."""
    return name_or_key.rsplit("/", 1)[-1]
