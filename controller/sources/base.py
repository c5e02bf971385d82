"""What every source (a folder, an S3 prefix, a Kubernetes cluster) gives the runtime.

A source holds ModelDeployments by NAME (the work-queue key) and, for each, a status
record the controller writes. It reads a manifest into a :class:`Document`: parsed, or
carrying the error that stops it (bad YAML, not UTF-8, unreadable), never raising for a
problem of one manifest. Sources without an API server also keep the bookkeeping an API
server would do: the record holds the spec's hash and a generation counter, and
:func:`next_generation` bumps the counter when the spec changes (a
``metadata.generation`` in the manifest wins).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from controller.actions import Action
from controller.api import API_VERSION, DeletePolicy, ModelDeployment, ModelDeploymentStatus
from controller.leases import Holder
from mlops_core.errors import MlopsError


class ManifestUnreadable(MlopsError):
    """A source could not read a manifest (permissions, I/O, S3): retried with backoff."""

    reason = "ManifestUnreadable"
    exit_code = 10


class StatusUnusable(MlopsError):
    """A source cannot keep a status record where it must (a folder is in the way):
    the key is retried with backoff, and the error says what to move."""

    reason = "StatusUnusable"


class LockUnusable(MlopsError):
    """A folder source cannot take a deployment's lock file (a folder is in the way,
    ``.leases`` is a file): the key is retried with backoff, and the error says what
    to move."""

    reason = "LockUnusable"


@dataclass(frozen=True)
class Document:
    """One manifest as its source holds it: a deployment, or the error that stops it."""

    name: str
    key: str  # namespace/name, known even when the spec is invalid
    digest: str  # spec hash of a valid manifest, else a hash of its raw content
    deployment: ModelDeployment | None = None
    error: MlopsError | None = None
    #: The generation the source's API server counted (Kubernetes), or the manifest's.
    generation: int | None = None
    #: A deletion is pending (Kubernetes: deletionTimestamp set, our finalizer holds it).
    deleting: bool = False
    annotations: dict[str, str] | None = None
    #: project/env as written, even when the spec is invalid (for the delete policy).
    project: str | None = None
    env: str | None = None

    @property
    def transient(self) -> bool:
        """An error worth retrying soon (the manifest may be readable next time)."""
        return isinstance(self.error, ManifestUnreadable)


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
    # What the delete policy needs once the manifest is gone (a folder or S3 manifest
    # leaves nothing else behind): the env it deployed and the policy it asked for.
    project: str | None = None
    env: str | None = None
    delete_policy: DeletePolicy | None = None
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
    """A store of ModelDeployment manifests plus their status records, as the runtime
    (:mod:`controller.runtime`) uses it.

    ``NAME`` is the work-queue key: a manifest's file name without ``.yaml`` for a folder
    or S3, ``namespace/name`` in Kubernetes.
    """

    uri: str

    def scan(self) -> dict[str, str]:
        """Every NAME with a change token (mtime/size, ETag, resourceVersion). Cheap."""
        ...

    def where(self, name: str) -> str:
        """Where NAME's manifest lives (a path, an s3:// URI, an object), for messages."""
        ...

    def recorded(self) -> list[str]:
        """Every NAME with a status record, manifest or not: a manifest removed while no
        controller ran still gets its delete policy applied."""
        ...

    def read(self, name: str) -> Document | None:
        """NAME's manifest as a Document, or None if it is gone. Never raises for a
        problem of this one manifest: that is the Document's error."""
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

    def holder(self, name: str | None = None) -> Holder | None:
        """Who holds NAME (None: the whole source) when :meth:`guard` or
        :meth:`heartbeat` said no: the id it recorded and, for a lease, its expiry.
        None if nobody does (any more)."""
        ...

    def close(self) -> None:
        """Release every lease this process holds."""
        ...

    def may_write(self) -> bool:
        """The write fence: True while this process's lease will outlast one more AWS
        call. Checked before every write a reconcile makes, so a controller that lost
        its lease (paused, partitioned) stops writing before another one starts."""
        ...

    def retired(self, name: str) -> None:
        """The delete policy of NAME was applied: let the deletion finish (Kubernetes:
        the finalizer is released). A no-op where deleting the manifest is the deletion."""
        ...

    def announce(
        self,
        name: str,
        actions: Sequence[Action],
        previous: ModelDeploymentStatus | None,
        status: ModelDeploymentStatus,
    ) -> None:
        """Tell the people watching NAME what happened (Kubernetes Events); may no-op."""
        ...

    def warn(self, name: str, reason: str, message: str) -> None:
        """A warning about NAME for the people watching it (a Kubernetes Event); may no-op."""
        ...


@runtime_checkable
class ManifestStore(Source, Protocol):
    """A source that ``mlopsctl deploy`` writes manifests into (a folder, S3); in
    Kubernetes, ``kubectl apply`` is the writer."""

    def put_manifest(self, deployment: ModelDeployment) -> PutResult: ...

    def get_record(self, name: str) -> StatusRecord | None: ...

    def get_status(self, name: str) -> ModelDeploymentStatus | None: ...


def strip_namespace(name_or_key: str) -> str:
    """Accept ``NAME`` or ``namespace/NAME`` where a source expects NAME."""
    return name_or_key.rsplit("/", 1)[-1]
