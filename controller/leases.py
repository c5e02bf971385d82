"""Leases: at most one controller acts on a deployment at a time.

Two kinds, one per source:

- :class:`FileLock` (folder source): an ``fcntl`` lock on ``DIR/.leases/NAME.lock``, taken
  without blocking around each reconcile of NAME. The kernel drops it when the process
  dies, so there is nothing to expire.
- :class:`S3Lease` (S3 source): one lease object per source, ``PREFIX/.leases/controller.json``,
  holding the holder's id and an expiry. Acquired with a conditional put
  (``IfNoneMatch="*"``: only if absent), renewed and taken over with ``IfMatch=<etag>``
  (only if nobody wrote it since we read it), released by writing it expired, again with
  ``IfMatch``. S3 answers 412 PreconditionFailed to the loser of any race. One lease per
  source rather than per key keeps the steady state write-free: a renewal is one PUT per
  ``ttl/3`` seconds, not one per deployment.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from mlops_core import aws
from mlops_core.logs import get_logger

log = get_logger("controller.leases")


class FileLock:
    """A non-blocking exclusive ``fcntl.flock`` on one file."""

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def holder_id() -> str:
    """host:pid:random, so that two controllers never share an identity."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class _Held:
    etag: str
    renewed: float  # local monotonic time of the last successful write


class S3Lease:
    """A lease object in S3, written only with conditional puts."""

    def __init__(
        self, bucket: str, key: str, *, holder: str | None = None, ttl: float = 30.0
    ) -> None:
        self.bucket = bucket
        self.key = key
        self.holder = holder or holder_id()
        self.ttl = ttl
        self._held: _Held | None = None
        self._lock = threading.Lock()
        #: Bumped on every fresh acquisition; sources drop caches written under an older one.
        self.epoch = 0

    @property
    def _s3(self):
        return aws.client("s3")

    def _body(self, expires_in: float) -> bytes:
        return json.dumps(
            {
                "holder": self.holder if expires_in > 0 else None,
                "ttlSeconds": self.ttl,
                "renewedAt": time.time(),
                "expiresAt": time.time() + expires_in if expires_in > 0 else 0,
            }
        ).encode()

    def _put(self, expires_in: float, **condition: str) -> str | None:
        """Conditional put; the new ETag, or None if someone else won the race."""
        try:
            out = self._s3.put_object(
                Bucket=self.bucket,
                Key=self.key,
                Body=self._body(expires_in),
                ContentType="application/json",
                **condition,
            )
        except self._s3.exceptions.ClientError as exc:
            if aws.error_code(exc) in ("PreconditionFailed", "ConditionalRequestConflict"):
                return None
            raise
        return out["ETag"]

    def held(self) -> bool:
        """True while our last renewal is younger than the ttl (minus a safety margin)."""
        h = self._held
        return h is not None and time.monotonic() - h.renewed < self.ttl * 0.8

    def ensure(self) -> bool:
        """Hold the lease: renew it if a third of the ttl has passed, acquire it if free or
        expired. False if another live controller holds it."""
        with self._lock:
            now = time.monotonic()
            if self._held is not None and now - self._held.renewed < self.ttl / 3:
                return True
            if self._held is not None:
                etag = self._put(self.ttl, IfMatch=self._held.etag)
                if etag is not None:
                    self._held = _Held(etag, now)
                    return True
                log.warning("lease lost", lease=self.uri)
                self._held = None
            return self._acquire(now)

    def _acquire(self, now: float) -> bool:
        try:
            current = self._s3.get_object(Bucket=self.bucket, Key=self.key)
        except self._s3.exceptions.NoSuchKey:
            etag = self._put(self.ttl, IfNoneMatch="*")
        else:
            body = json.loads(current["Body"].read() or b"{}")
            if (
                body.get("holder") not in (None, self.holder)
                and body.get("expiresAt", 0) > time.time()
            ):
                return False
            etag = self._put(self.ttl, IfMatch=current["ETag"])
            if etag is not None and body.get("holder") not in (None, self.holder):
                log.info("lease taken over after expiry", lease=self.uri, previous=body["holder"])
        if etag is None:
            return False
        self._held = _Held(etag, now)
        self.epoch += 1
        log.info("lease acquired", lease=self.uri, holder=self.holder)
        return True

    def release(self) -> None:
        """Write the lease expired so that a standby controller takes it at once."""
        with self._lock:
            if self._held is None:
                return
            self._put(0, IfMatch=self._held.etag)
            self._held = None
            log.info("lease released", lease=self.uri, holder=self.holder)

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"
