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
import tempfile
from collections.abc import Iterator
from pathlib import Path

from pydantic import ValidationError

from controller.api import ModelDeployment, ModelDeploymentStatus
from controller.leases import FileLock, Holder, holder_id
from controller.manifests import dump_manifest, load_document, manifest_name, spec_hash
from controller.sources.base import (
    Document,
    ManifestUnreadable,
    PutResult,
    StatusRecord,
    strip_namespace,
)
from mlops_core.errors import InvalidInput
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
        self._files: dict[str, str] = {}  # NAME -> file name, from the last scan

    # -- reading ---------------------------------------------------------------------
    def scan(self) -> dict[str, str]:
        found: dict[str, tuple[str, str]] = {}
        with os.scandir(self.path) as entries:
            for entry in entries:
                name = manifest_name(entry.name)
                if name is None or not entry.is_file():
                    continue
                st = entry.stat()
                token = f"{st.st_mtime_ns}:{st.st_size}:{st.st_ino}"
                # NAME.yaml wins over NAME.yml if both exist (one key, one file).
                if name not in found or entry.name.endswith(".yaml"):
                    found[name] = (entry.name, token)
        self._files = {n: f for n, (f, _) in found.items()}
        return {n: t for n, (_, t) in found.items()}

    def recorded(self) -> list[str]:
        return sorted(p.name[: -len(STATUS_SUFFIX)] for p in self.path.glob(f"*{STATUS_SUFFIX}"))

    def _file(self, name: str) -> Path:
        known = self._files.get(name)
        if known:
            return self.path / known
        yaml_path, yml_path = self.path / f"{name}.yaml", self.path / f"{name}.yml"
        return yml_path if yml_path.exists() and not yaml_path.exists() else yaml_path

    def where(self, name: str) -> str:
        return str(self._file(name))

    def read(self, name: str) -> Document | None:
        path = self._file(name)
        try:
            raw: bytes | ManifestUnreadable = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:  # permissions, a folder named NAME.yaml, I/O errors
            raw = ManifestUnreadable(
                f"cannot read the manifest: {exc.strerror or exc}",
                where=str(path),
                hint="check the file's permissions and that it is a regular file",
            )
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
        atomic_write(self._status_path(name), record.to_json())

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
        lock = FileLock(self._lock_path(name), holder=self.identity)
        if not lock.try_acquire():
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
