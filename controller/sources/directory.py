"""The folder source: ``DIR/NAME.yaml`` manifests, status in ``DIR/NAME.status.json``.

Layout::

    DIR/NAME.yaml              the desired state (the user's or GitOps' file)
    DIR/NAME.status.json       written by the controller: generation, spec hash, status
    DIR/.leases/NAME.lock      fcntl lock held while a controller reconciles NAME; it
                               holds that controller's id (host:pid:random)

Changes are found by polling each file's (mtime, size): one ``scandir`` per poll.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from pydantic import ValidationError

from controller.api import ModelDeployment, ModelDeploymentStatus
from controller.leases import FileLock, Holder, holder_id
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
    LockUnusable,
    ManifestUnreadable,
    PutResult,
    StatusRecord,
    StatusUnusable,
    strip_namespace,
)
from mlops_core.errors import InvalidInput, MlopsError
from mlops_core.logs import get_logger

log = get_logger("controller.sources.directory")

STATUS_SUFFIX = ".status.json"
LEASE_DIR = ".leases"


def atomic_write(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so readers never see half a file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _status_in_the_way(path: Path) -> StatusUnusable:
    name = path.name[: -len(STATUS_SUFFIX)]
    return StatusUnusable(
        f"{path.name} is a folder: the controller keeps {name}'s status in that file",
        where=str(path),
        hint="rename or move the folder",
    )


def _lock_unusable(path: Path, exc: OSError) -> LockUnusable:
    leases = path.parent
    if leases.exists() and not leases.is_dir():
        what = f"{LEASE_DIR} is not a folder: the controller keeps its lock files in it"
    elif path.is_dir():
        what = f"{LEASE_DIR}/{path.name} is a folder: the controller keeps a lock in that file"
    else:
        what = f"cannot take the lock {LEASE_DIR}/{path.name}: {exc.strerror or exc}"
    return LockUnusable(what, where=str(path), hint="rename or move what is in the way")


def _read_capped(path: Path) -> bytes:
    """The bytes of a manifest file, at most one more than the cap; InvalidInput for a
    folder, a FIFO or device (opened without blocking), or a file above the cap."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise InvalidInput(
                f"{path.name} is a folder, not a manifest file",
                where=str(path),
                hint=f"rename or move the folder; a manifest is a YAML file named {path.name}",
            )
        if not stat.S_ISREG(st.st_mode):
            raise InvalidInput(f"{path.name} is not a regular file", where=str(path))
        if st.st_size > MAX_MANIFEST_BYTES:
            raise too_large(st.st_size, str(path))
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read(MAX_MANIFEST_BYTES + 1)  # load_document refuses one byte more
    finally:
        os.close(fd)


class DirectorySource:
    def __init__(
        self, path: str | Path, *, create: bool = False, holder: str | None = None
    ) -> None:
        #: Written into each lock file this controller holds, so that another one can
        #: say who holds a key (see :meth:`holder`).
        self.identity = holder or holder_id()
        self.path = Path(path).expanduser().resolve()
        if create:
            self.path.mkdir(parents=True, exist_ok=True)
        if not self.path.is_dir():
            raise InvalidInput(
                f"manifest folder {self.path} does not exist",
                hint="create it and put ModelDeployment manifests (NAME.yaml) in it, "
                "or pass --source s3://BUCKET/PREFIX",
            )
        self.uri = str(self.path)
        self._files: dict[str, list[str]] = {}  # NAME -> its file(s), from the last scan

    # -- reading ---------------------------------------------------------------------
    def scan(self) -> dict[str, str]:
        found: dict[str, list[tuple[str, str]]] = {}
        with os.scandir(self.path) as entries:
            for entry in entries:
                name = manifest_name(entry.name)
                if name is None:
                    continue
                try:
                    if not (entry.is_file() or entry.is_dir()):
                        continue  # a folder NAME.yaml is read as InvalidSpec, not skipped
                    st = entry.stat()
                    token = f"{st.st_mtime_ns}:{st.st_size}:{st.st_ino}"
                except FileNotFoundError:
                    continue  # removed while the folder was listed
                except OSError as exc:
                    # A symlink loop, a permission error: that key's read says so (and
                    # is retried); one bad entry must not stop the pass over the folder.
                    token = f"error:{exc.errno}"
                found.setdefault(name, []).append((entry.name, token))
        # NAME.yaml and NAME.yml are one key: both present is an error read() reports.
        found = {
            n: sorted(files, key=lambda f: not f[0].endswith(".yaml")) for n, files in found.items()
        }
        self._files = {n: [f for f, _ in files] for n, files in found.items()}
        return {n: "|".join(t for _, t in files) for n, files in found.items()}

    def recorded(self) -> list[str]:
        return sorted(p.name[: -len(STATUS_SUFFIX)] for p in self.path.glob(f"*{STATUS_SUFFIX}"))

    def _paths(self, name: str) -> list[Path]:
        known = self._files.get(name)
        if known:
            return [self.path / f for f in known]
        return [self.path / f"{name}{suffix}" for suffix in MANIFEST_SUFFIXES]

    def _file(self, name: str) -> Path:
        paths = self._paths(name)
        return next((p for p in paths if p.exists()), paths[0])

    def where(self, name: str) -> str:
        return str(self._file(name))

    def read(self, name: str) -> Document | None:
        docs = [(str(path), doc) for path in self._paths(name) if (doc := self._read(path, name))]
        return one_of(docs)

    def _read(self, path: Path, name: str) -> Document | None:
        try:
            raw: bytes | MlopsError = _read_capped(path)
        except FileNotFoundError:
            return None
        except OSError as exc:  # permissions, I/O errors
            raw = ManifestUnreadable(
                f"cannot read the manifest: {exc.strerror or exc}",
                where=str(path),
                hint="check the file's permissions",
            )
        except InvalidInput as exc:  # a folder named NAME.yaml, a manifest above the cap
            raw = exc
        return load_document(raw, str(path), name)

    def _status_path(self, name: str) -> Path:
        return self.path / f"{name}{STATUS_SUFFIX}"

    def read_status(self, name: str) -> StatusRecord | None:
        path = self._status_path(name)
        try:
            # Bytes, not text: pydantic reports a status that is not UTF-8 as invalid JSON.
            return StatusRecord.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            return None
        except IsADirectoryError:
            raise _status_in_the_way(path) from None
        except ValidationError:
            # A hand-edited or truncated status is not the user's desired state: start over.
            log.warning("unreadable status file ignored", path=str(path))
            return None

    def get_record(self, name: str) -> StatusRecord | None:
        """The stored record of NAME (or namespace/NAME), for ``deploy --wait``."""
        return self.read_status(strip_namespace(name))

    def get_status(self, name: str) -> ModelDeploymentStatus | None:
        record = self.get_record(name)
        return record.status if record else None

    # -- writing ---------------------------------------------------------------------
    def write_status(self, name: str, record: StatusRecord) -> None:
        path = self._status_path(name)
        try:
            atomic_write(path, record.to_json())
        except IsADirectoryError:
            raise _status_in_the_way(path) from None

    def delete_status(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._status_path(name).unlink()

    def put_manifest(self, deployment: ModelDeployment) -> PutResult:
        name = deployment.metadata.name
        path = self._file(name)  # NAME.yml if that is the file NAME is in
        atomic_write(path, dump_manifest(deployment))
        return PutResult(name=name, where=str(path), spec_hash=spec_hash(deployment))

    # -- leases ----------------------------------------------------------------------
    @contextlib.contextmanager
    def guard(self, name: str) -> Iterator[bool]:
        path = self._lock_path(name)
        lock = FileLock(path, holder=self.identity)
        try:
            acquired = lock.try_acquire()
        except OSError as exc:
            raise _lock_unusable(path, exc) from None
        if not acquired:
            yield False
            return
        try:
            yield True
        finally:
            lock.release()

    def _lock_path(self, name: str) -> Path:
        return self.path / LEASE_DIR / f"{name}.lock"

    def holder(self, name: str | None = None) -> Holder | None:
        """Who holds NAME's lock, as the lock file says (the whole folder: nobody)."""
        return None if name is None else FileLock(self._lock_path(name)).holder()

    def heartbeat(self) -> bool:
        """Nothing to renew (fcntl locks live as long as their holder); always may act."""
        return True

    def may_write(self) -> bool:
        """An fcntl lock cannot lapse while its holder lives."""
        return True

    def close(self) -> None:
        """Locks are released after each reconcile; nothing is left held."""

    def retired(self, name: str) -> None:
        """Removing the file was the deletion; nothing holds it."""

    def warn(self, name: str, reason: str, message: str) -> None:
        """Only the log says it (the runtime logs every warning)."""

    def announce(self, name, actions, previous, status) -> None:
        """A folder has no one to tell beyond the status file and the logs."""
