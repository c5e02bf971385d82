"""The S3 source: manifests under ``s3://BUCKET/PREFIX``, status and lease beside them.

Layout (PREFIX defaults to the artifact bucket's ``deployments/``)::

    PREFIX/NAME.yaml                 the desired state
    PREFIX/.status/NAME.json         written by the controller: generation, spec hash, status
    PREFIX/.leases/controller.json   the source's lease (see controller.leases.S3Lease)

One ``list_objects_v2`` per poll (with ``Delimiter="/"``, so the status and lease objects
are not listed) finds changes by ETag. A manifest is fetched again only when its ETag
changed; status records are cached after the first read and re-read whenever this
controller (re)acquires the lease, since another controller may have written them.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from controller.api import ModelDeployment, ModelDeploymentStatus
from controller.leases import Holder, S3Lease
from controller.manifests import (
    MANIFEST_SUFFIXES,
    MAX_MANIFEST_BYTES,
    dump_manifest,
    load_document,
    manifest_name,
    one_of,
    spec_hash,
    too_large,
)
from controller.sources.base import (
    Document,
    ManifestUnreadable,
    PutResult,
    StatusRecord,
    strip_namespace,
)
from mlops_core import aws
from mlops_core.errors import InvalidInput, MlopsError
from mlops_core.logs import get_logger
from mlops_core.naming import Platform

log = get_logger("controller.sources.s3")

STATUS_DIR = ".status/"
LEASE_KEY = ".leases/controller.json"


def parse_s3_uri(uri: str, platform: Platform | None = None) -> tuple[str, str]:
    """``s3://bucket/prefix`` -> (bucket, "prefix/"); ``s3`` or ``s3://`` -> the platform's
    desired-state prefix in its artifact bucket."""
    rest = uri.removeprefix("s3://") if uri.startswith("s3://") else ""
    if uri in ("s3", "s3://") or not rest:
        if platform is None:
            raise ValueError(f"{uri!r} names the platform's default prefix: pass the platform")
        return platform.artifact_bucket, platform.desired_state_prefix
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise InvalidInput(f"no bucket in {uri!r}", hint="use s3://BUCKET/PREFIX")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return bucket, prefix


class S3Source:
    def __init__(
        self,
        uri: str,
        *,
        platform: Platform | None = None,
        lease_ttl: float = 30.0,
        holder: str | None = None,
    ) -> None:
        self.bucket, self.prefix = parse_s3_uri(uri, platform)
        self.uri = f"s3://{self.bucket}/{self.prefix}"
        self.lease = S3Lease(
            self.bucket,
            self.prefix + LEASE_KEY,
            ttl=lease_ttl,
            holder=holder,
            write_budget=min(aws.limits().worst_case(), lease_ttl / 2),
        )
        self._lock = threading.Lock()
        self._etags: dict[str, str] = {}  # NAME -> ETag from the last listing
        self._keys: dict[str, list[str]] = {}  # NAME -> its object key(s), .yaml first
        self._docs: dict[str, tuple[str, Document]] = {}  # NAME -> (ETag, parsed)
        self._records: dict[str, StatusRecord | None] = {}
        self._records_epoch = -1

    @property
    def _s3(self):
        return aws.client("s3")

    def check(self) -> None:
        """Fail early, with a clear message, if the bucket is not there."""
        try:
            self._s3.head_bucket(Bucket=self.bucket)
        except self._s3.exceptions.ClientError as exc:
            raise InvalidInput(
                f"cannot read bucket {self.bucket!r} ({aws.error_code(exc) or exc})",
                where=self.uri,
                hint="create it ('mlopsctl dev up' or Terraform) or check the credentials",
            ) from None

    # -- reading ---------------------------------------------------------------------
    def scan(self) -> dict[str, str]:
        found: dict[str, list[tuple[str, str]]] = {}  # NAME -> [(key, ETag)]
        pages = self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix, Delimiter="/"
        )
        for page in pages:
            for obj in page.get("Contents", []):
                name = manifest_name(obj["Key"][len(self.prefix) :])
                if name is not None:
                    found.setdefault(name, []).append((obj["Key"], obj["ETag"]))
        # NAME.yaml and NAME.yml are one key: both present is an error read() reports.
        for objects in found.values():
            objects.sort(key=lambda o: not o[0].endswith(".yaml"))
        etags = {n: "|".join(etag for _, etag in objects) for n, objects in found.items()}
        keys = {n: [key for key, _ in objects] for n, objects in found.items()}
        with self._lock:
            self._etags, self._keys = etags, keys
        return dict(etags)

    def recorded(self) -> list[str]:
        prefix = f"{self.prefix}{STATUS_DIR}"
        pages = self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        )
        return sorted(
            obj["Key"][len(prefix) : -len(".json")]
            for page in pages
            for obj in page.get("Contents", [])
            if obj["Key"].endswith(".json")
        )

    def _key(self, name: str) -> str:
        return self._keys.get(name, [f"{self.prefix}{name}.yaml"])[0]

    def where(self, name: str) -> str:
        return f"s3://{self.bucket}/{self._key(name)}"

    def read(self, name: str) -> Document | None:
        listed = self._etags.get(name)
        cached = self._docs.get(name)
        if cached is not None and listed is not None and cached[0] == listed:
            return cached[1]
        docs: list[tuple[str, Document]] = []
        etags: list[str] = []
        listed_keys = self._keys.get(name)
        for key in listed_keys or [f"{self.prefix}{name}{s}" for s in MANIFEST_SUFFIXES]:
            got = self._read(name, key)
            if got is not None:
                etags.append(got[0])
                docs.append((f"s3://{self.bucket}/{key}", got[1]))
        doc = one_of(docs)
        if doc is None:
            self._docs.pop(name, None)
        elif not doc.transient:
            self._docs[name] = ("|".join(etags), doc)
        return doc

    def _read(self, name: str, key: str) -> tuple[str, Document] | None:
        """(ETag, Document) of one object, or None if it is gone."""
        where = f"s3://{self.bucket}/{key}"
        try:
            obj = self._s3.get_object(Bucket=self.bucket, Key=key)
            raw: bytes | MlopsError
            with contextlib.closing(obj["Body"]) as body:
                size = obj.get("ContentLength")
                if size is not None and size > MAX_MANIFEST_BYTES:
                    raw = too_large(size, where)  # refused unread: the body is not fetched
                else:
                    raw = body.read(MAX_MANIFEST_BYTES + 1)  # load_document refuses more
        except self._s3.exceptions.NoSuchKey:
            return None
        except (ClientError, BotoCoreError) as exc:  # denied, throttled, unreachable
            raw = ManifestUnreadable(
                f"cannot read the manifest ({aws.error_code(exc) or type(exc).__name__})",
                where=where,
                hint="check the controller's s3:GetObject permission on the prefix",
            )
            return "", load_document(raw, where, name)
        return obj["ETag"], load_document(raw, where, name)

    def _status_key(self, name: str) -> str:
        return f"{self.prefix}{STATUS_DIR}{name}.json"

    def get_record(self, name: str) -> StatusRecord | None:
        """The stored record, read from S3 now (no cache)."""
        name = strip_namespace(name)
        try:
            body = self._s3.get_object(Bucket=self.bucket, Key=self._status_key(name))["Body"]
        except self._s3.exceptions.NoSuchKey:
            return None
        try:
            return StatusRecord.model_validate_json(body.read())
        except ValidationError:
            log.warning("unreadable status object ignored", key=self._status_key(name))
            return None

    def read_status(self, name: str) -> StatusRecord | None:
        with self._lock:
            if self._records_epoch != self.lease.epoch:
                # (Re)acquired the lease: what we cached may have been overwritten since.
                self._records.clear()
                self._records_epoch = self.lease.epoch
            if name in self._records:
                return self._records[name]
        record = self.get_record(name)
        with self._lock:
            self._records[name] = record
        return record

    def get_status(self, name: str) -> ModelDeploymentStatus | None:
        record = self.get_record(name)
        return record.status if record else None

    # -- writing ---------------------------------------------------------------------
    def write_status(self, name: str, record: StatusRecord) -> None:
        self._s3.put_object(
            Bucket=self.bucket,
            Key=self._status_key(name),
            Body=record.to_json().encode(),
            ContentType="application/json",
        )
        with self._lock:
            self._records[name] = record

    def delete_status(self, name: str) -> None:
        self._s3.delete_object(Bucket=self.bucket, Key=self._status_key(name))
        with self._lock:
            self._records.pop(name, None)
            self._docs.pop(name, None)

    def put_manifest(self, deployment: ModelDeployment) -> PutResult:
        name = deployment.metadata.name
        key = self._key(name)  # NAME.yml if that is the object NAME is in
        self._s3.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=dump_manifest(deployment).encode(),
            ContentType="application/yaml",
        )
        return PutResult(
            name=name, where=f"s3://{self.bucket}/{key}", spec_hash=spec_hash(deployment)
        )

    # -- lease -----------------------------------------------------------------------
    @contextlib.contextmanager
    def guard(self, name: str) -> Iterator[bool]:
        # Acquisition is the heartbeat's job (once per poll); here only a renewal if due,
        # so that a standby controller costs no request per key.
        yield self.lease.held() and self.lease.ensure()

    def heartbeat(self) -> bool:
        return self.lease.ensure()

    def holder(self, name: str | None = None) -> Holder | None:
        """One lease for the whole source: its holder and expiry, whatever NAME."""
        return self.lease.current_holder()

    def may_write(self) -> bool:
        return self.lease.may_write()

    def close(self) -> None:
        self.lease.release()

    def retired(self, name: str) -> None:
        """Removing the object was the deletion; nothing holds it."""

    def warn(self, name: str, reason: str, message: str) -> None:
        """Only the log says it (the runtime logs every warning)."""

    def announce(self, name, actions, previous, status) -> None:
        """S3 has no one to tell beyond the status object and the logs."""
