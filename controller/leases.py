"""Leases: at most one controller acts on a deployment at a time.

Two kinds:

- :class:`FileLock` (folder source): an ``fcntl`` lock on ``DIR/.leases/NAME.lock``, taken
  without blocking around each reconcile of NAME. The kernel drops it when the process
  dies, so there is nothing to expire. The holder writes its id into the file, so that
  a controller that finds the lock taken can say who has it (:meth:`FileLock.holder`).
- :class:`Lease` (S3 and Kubernetes sources): leader election over a
  :class:`LeaseStore` written only with conditional writes. For S3 one lease object per
  source, ``PREFIX/.leases/controller.json``,
  holding the holder's id and an expiry. Acquired with a conditional put
  (``IfNoneMatch="*"``: only if absent), renewed and taken over with ``IfMatch=<etag>``
  (only if nobody wrote it since we read it), released by writing it expired, again with
  ``IfMatch``. S3 answers 412 PreconditionFailed to the loser of any race. One lease per
  source rather than per key keeps the steady state write-free: a renewal is one PUT per
  ``ttl/3`` seconds, not one per deployment. For Kubernetes a ``coordination.k8s.io``
  Lease, replaced with its ``resourceVersion`` (:mod:`controller.sources.kube`).

A lease also fences writes: :meth:`Lease.may_write` is true only while the lease will
outlast one more AWS call, and every write of a reconcile checks it first.
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from mlops_core import aws
from mlops_core.logs import get_logger

log = get_logger("controller.leases")


@dataclass(frozen=True)
class Holder:
    """Who holds a lock or lease that this controller could not take, for messages."""

    holder: str | None  # the id it recorded (host:pid:random), None if it recorded none
    until: float | None = None  # wall-clock expiry of a lease; None for an fcntl lock

    def describe(self) -> str:
        # What a peer wrote (a lock file anyone can edit, a lease's JSON) reaches the
        # terminal: no control characters (escape sequences, newlines), at most 200.
        who = printable(self.holder or "")[:200] or "an unidentified controller"
        if self.until is None:
            return who
        when = datetime.fromtimestamp(self.until, UTC).isoformat(timespec="seconds")
        return f"{who} until {when.replace('+00:00', 'Z')}"


def printable(text: str) -> str:
    """``text`` with each character that is not printable (ESC, newline, NUL) as '?'."""
    return "".join(c if c.isprintable() else "?" for c in text)


class FileLock:
    """A non-blocking exclusive ``fcntl.flock`` on one file, which holds its holder's id."""

    def __init__(self, path: Path, holder: str | None = None):
        self.path = path
        self.holder_id = holder
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        if self.holder_id:
            os.ftruncate(fd, 0)
            os.pwrite(fd, self.holder_id.encode(), 0)
        return True

    def holder(self) -> Holder:
        """Who holds the lock now, as its file says (read when :meth:`try_acquire` failed)."""
        try:
            with self.path.open("rb") as f:
                head = f.read(4096)  # an id is short; a huge or sparse file is not read
        except OSError:
            head = b""
        text = head.replace(b"\x00", b"").decode(errors="replace").strip()
        return Holder(text[:200] or None)

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def holder_id() -> str:
    """host:pid:random, so that two controllers never share an identity. A deployment
    that has a stable identity per replica (a pod's name) sets it instead, and a
    replica restarted after a crash then takes its own lease back at once."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class LeaseStore(Protocol):
    """Where a lease lives, written only with conditional writes (the loser of a race
    gets None). ``token`` is the store's version of the object (ETag, resourceVersion)."""

    uri: str

    def read(self) -> tuple[LeaseRecord, str] | None: ...

    def create(self, record: LeaseRecord) -> str | None: ...

    def replace(self, record: LeaseRecord, token: str) -> str | None: ...


@dataclass(frozen=True)
class LeaseRecord:
    holder: str | None  # None: released
    ttl: float
    renewed_at: float  # wall clock (time.time())
    expires_at: float

    def live(self, now: float) -> bool:
        return self.holder is not None and self.expires_at > now


@dataclass
class _Held:
    token: str
    renewed: float  # local monotonic time of the last successful write


class Lease:
    """Leader election over a :class:`LeaseStore`: acquire if free, expired or our own;
    renew every ttl/3; release on shutdown. The same for S3 and Kubernetes."""

    def __init__(
        self,
        store: LeaseStore,
        *,
        holder: str | None = None,
        ttl: float = 30.0,
        write_budget: float | None = None,
        clock=time.monotonic,
        wall=time.time,
    ) -> None:
        self.store = store
        self.holder = holder or holder_id()
        self.ttl = ttl
        #: The longest one AWS call may take (timeouts x attempts): a write starts only
        #: if the lease outlasts it (see :meth:`may_write`).
        self.write_budget = ttl / 3 if write_budget is None else write_budget
        self._clock = clock
        self._wall = wall
        self._held: _Held | None = None
        self._lock = threading.Lock()
        #: Bumped on every fresh acquisition; sources drop caches written under an older one.
        self.epoch = 0

    @property
    def uri(self) -> str:
        return self.store.uri

    def _record(self, expires_in: float) -> LeaseRecord:
        now = self._wall()
        return LeaseRecord(
            holder=self.holder if expires_in > 0 else None,
            ttl=self.ttl,
            renewed_at=now,
            expires_at=now + expires_in if expires_in > 0 else 0.0,
        )

    def _elapsed(self) -> float | None:
        h = self._held
        return None if h is None else self._clock() - h.renewed

    def held(self) -> bool:
        """True while our last renewal is younger than the ttl (minus a safety margin)."""
        elapsed = self._elapsed()
        return elapsed is not None and elapsed < self.ttl * 0.8

    def may_write(self) -> bool:
        """The write fence: held, and for long enough that one more AWS call ends before
        anyone else could take the lease over."""
        elapsed = self._elapsed()
        return elapsed is not None and elapsed + self.write_budget < self.ttl

    def ensure(self) -> bool:
        """Hold the lease: renew it if a third of the ttl has passed, acquire it if free,
        expired or ours. False if another live controller holds it."""
        with self._lock:
            now = self._clock()
            if self._held is not None and now - self._held.renewed < self.ttl / 3:
                return True
            if self._held is not None:
                token = self.store.replace(self._record(self.ttl), self._held.token)
                if token is not None:
                    self._held = _Held(token, now)
                    return True
                log.warning("lease lost", lease=self.uri, holder=self.holder)
                self._held = None
            return self._acquire(now)

    def _acquire(self, now: float) -> bool:
        current = self.store.read()
        if current is None:
            token = self.store.create(self._record(self.ttl))
        else:
            record, version = current
            if record.holder != self.holder and record.live(self._wall()):
                return False
            token = self.store.replace(self._record(self.ttl), version)
            if token is not None and record.holder not in (None, self.holder):
                log.info("lease taken over after expiry", lease=self.uri, previous=record.holder)
        if token is None:
            return False
        self._held = _Held(token, now)
        self.epoch += 1
        log.info("lease acquired", lease=self.uri, holder=self.holder)
        return True

    def current_holder(self) -> Holder | None:
        """Who holds the lease as its store says now (None: free, expired or ours)."""
        current = self.store.read()
        if current is None:
            return None
        record = current[0]
        if record.holder == self.holder or not record.live(self._wall()):
            return None
        return Holder(record.holder, record.expires_at)

    def release(self) -> None:
        """Write the lease expired so that a standby controller takes it at once."""
        with self._lock:
            if self._held is None:
                return
            self.store.replace(self._record(0), self._held.token)
            self._held = None
            log.info("lease released", lease=self.uri, holder=self.holder)


class S3LeaseStore:
    """A lease object in S3: created with ``IfNoneMatch="*"``, replaced with
    ``IfMatch=<etag>``; S3 answers 412 PreconditionFailed to the loser of any race."""

    def __init__(self, bucket: str, key: str) -> None:
        self.bucket = bucket
        self.key = key
        self.uri = f"s3://{bucket}/{key}"

    @property
    def _s3(self):
        return aws.client("s3")

    def read(self) -> tuple[LeaseRecord, str] | None:
        try:
            current = self._s3.get_object(Bucket=self.bucket, Key=self.key)
        except self._s3.exceptions.NoSuchKey:
            return None
        body = json.loads(current["Body"].read() or b"{}")
        record = LeaseRecord(
            holder=body.get("holder"),
            ttl=float(body.get("ttlSeconds") or 0),
            renewed_at=float(body.get("renewedAt") or 0),
            expires_at=float(body.get("expiresAt") or 0),
        )
        return record, current["ETag"]

    def _put(self, record: LeaseRecord, **condition: str) -> str | None:
        body = {
            "holder": record.holder,
            "ttlSeconds": record.ttl,
            "renewedAt": record.renewed_at,
            "expiresAt": record.expires_at,
        }
        try:
            out = self._s3.put_object(
                Bucket=self.bucket,
                Key=self.key,
                Body=json.dumps(body).encode(),
                ContentType="application/json",
                **condition,
            )
        except self._s3.exceptions.ClientError as exc:
            if aws.error_code(exc) in aws.CONDITION_LOST:
                return None
            raise
        return out["ETag"]

    def create(self, record: LeaseRecord) -> str | None:
        return self._put(record, IfNoneMatch="*")

    def replace(self, record: LeaseRecord, token: str) -> str | None:
        return self._put(record, IfMatch=token)


def S3Lease(bucket: str, key: str, **kwargs) -> Lease:  # noqa: N802 - reads as a class
    """The S3 source's lease: ``s3://bucket/key``."""
    return Lease(S3LeaseStore(bucket, key), **kwargs)
