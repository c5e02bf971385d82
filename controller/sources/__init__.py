"""Where ModelDeployment manifests come from, and where their status goes.

Two sources, one contract (:class:`~controller.sources.base.Source`); the daemon
(:mod:`controller.runtime`) and ``mlopsctl deploy`` use nothing else.

Storage layout (NAME = the manifest's file name = its ``metadata.name``)::

    folder DIR                           S3 s3://BUCKET/PREFIX/ (default: the artifact
                                         bucket's deployments/)
    DIR/NAME.yaml                        PREFIX/NAME.yaml               desired state
    DIR/NAME.status.json                 PREFIX/.status/NAME.json       status record
    DIR/.leases/NAME.lock (fcntl)        PREFIX/.leases/controller.json lease

The status record (:class:`~controller.sources.base.StatusRecord`, JSON) holds the
computed ``generation``, the ``specHash`` it was computed from, and the
``ModelDeploymentStatus`` (observedGeneration, conditions, versions). These sources have
no API server, so the controller counts generations itself: a spec whose canonical hash
differs from the recorded one gets the recorded generation + 1 (an edit to comments or
formatting does not); ``metadata.generation`` in the manifest, if set, wins. An
unparseable manifest is hashed by its raw text, so fixing it is a new generation too.

Change detection: the folder is polled (one ``scandir``, comparing mtime/size/inode per
file); the S3 prefix is polled with one ``list_objects_v2`` (``Delimiter="/"``, so status
and lease objects are not listed), comparing ETags; a manifest is fetched again only when
its ETag changed. A periodic resync re-reconciles every key regardless.

Two controllers on one source never act on one key at once:

- folder: a non-blocking ``fcntl.flock`` on ``DIR/.leases/NAME.lock`` is held from reading
  the status record to writing it back. The other controller skips the key and tries
  again later; the kernel drops a dead holder's lock. Both controllers may work the
  source, key by key.
- S3: one lease object per source (leader election). Acquire: ``put_object`` with
  ``IfNoneMatch="*"`` (only if absent), or with ``IfMatch=<etag>`` over an expired or
  released lease (only if nobody wrote it since it was read); renew every ttl/3 with
  ``IfMatch`` on our own last ETag; release on shutdown by writing it expired, again with
  ``IfMatch``. S3 answers 412 PreconditionFailed to the loser of every race. A standby
  controller polls the lease and takes over once it expires (``--lease-ttl``, default
  30 s) or is released. One lease per source keeps the steady state at zero writes per
  deployment. Expiry compares the holder's wall-clock ``expiresAt`` with the reader's
  clock, so controllers' clocks must agree to well within the ttl (NTP does).

Writer side, for ``mlopsctl deploy``::

    source = open_source("s3://my-bucket/deployments/")  # or "s3", or a folder path
    put = source.put_manifest(deployment)  # write/update NAME.yaml
    record = source.get_record(put.name)  # poll until is_observed(record, put.spec_hash)

The Kubernetes source (:mod:`controller.sources.kube`) is fed by kopf's watch and
opened by :mod:`controller.launch`; ``kubectl apply`` is its writer.
"""

from __future__ import annotations

from controller.sources.base import (
    Document,
    LockUnusable,
    ManifestStore,
    PutResult,
    Source,
    StatusRecord,
    is_observed,
    next_generation,
)
from controller.sources.directory import DirectorySource
from controller.sources.s3 import S3Source
from mlops_core.errors import InvalidInput
from mlops_core.naming import Platform

__all__ = [
    "DirectorySource",
    "Document",
    "LockUnusable",
    "ManifestStore",
    "PutResult",
    "S3Source",
    "Source",
    "StatusRecord",
    "is_observed",
    "next_generation",
    "open_source",
]


def open_source(
    uri: str,
    *,
    platform: Platform | None = None,
    create: bool = False,
    lease_ttl: float = 30.0,
    holder: str | None = None,
) -> ManifestStore:
    """A folder path, ``file://PATH``, ``s3://BUCKET/PREFIX`` or ``s3`` (the platform's
    default desired-state prefix). ``create`` makes a missing folder (for writers)."""
    if not uri.strip() or not uri.removeprefix("file://").strip():
        # Path("") is the current folder: an unset CI variable must not make a controller
        # converge (or a deploy write into) whatever folder it was started in.
        raise InvalidInput(
            "the source is empty",
            hint="give a folder, s3://BUCKET/PREFIX, s3 (the default bucket) or kube",
        )
    if uri == "kube":
        raise InvalidInput(
            "'kube' is not a manifest store: the Kubernetes operator watches the API server",
            hint="run 'mlopsctl controller run --source kube', or use 'kubectl apply' to deploy",
        )
    if uri == "s3" or uri.startswith("s3://"):
        return S3Source(uri, platform=platform, lease_ttl=lease_ttl, holder=holder)
    if "://" in uri and not uri.startswith("file://"):
        raise InvalidInput(
            f"unsupported source {uri!r}",
            hint="use a folder path, s3://BUCKET/PREFIX, s3 (the default bucket) or kube",
        )
    return DirectorySource(uri.removeprefix("file://"), create=create, holder=holder)
