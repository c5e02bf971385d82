"""The model registry: immutable, signed versions in S3, pinned by what publication recorded.

A version lives at ``s3://{bucket}/{project}/models/{version}/``. Publishing checks the
folder, signs it (:mod:`mlops_core.signing`; a candidate may carry its signature already),
writes every file, then ``manifest.json`` and ``manifest.sig``, each with a conditional
create (``IfNoneMatch="*"``, under Object Lock where the bucket has it), and last
``publication.json``, the commit marker, which records the S3 object version of each
(:mod:`mlops_core.publication`). Readers only see versions whose record exists, so a
publish interrupted half-way is invisible, and re-running it finishes the job (objects
already there with the right content are accepted and pinned as they are). Nothing is
written before every check has passed.

Reading a version is :func:`read_published`: the folder holds exactly the pinned objects,
the pinned manifest has the pinned digest and the publisher's signature. Files are read by
pinned object version and checked against the signed manifest's digests.

``{project}/project.json`` registers the project (its envs and gates).
A project's registration (its envs and gates) is versioned policy, kept by
:mod:`mlops_core.policy`: the first publish registers revision 1, later publishes never
change it, and a refused publish writes nothing at all.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlparse

from botocore.exceptions import ClientError
from pydantic import ValidationError

from mlops_core import aws, signing
from mlops_core.artifacts import (
    MANIFEST,
    Manifest,
    check_version,
    check_version_of,
    read_manifest,
    sha256_bytes,
    verify_folder,
)
from mlops_core.errors import Conflict, IntegrityError, InvalidInput, NotFound
from mlops_core.logs import get_logger
from mlops_core.modelformat import check_servable
from mlops_core.naming import Platform, check_project
from mlops_core.policy import Policy, Registration, publish_note, same_config
from mlops_core.project import ProjectConfig
from mlops_core.publication import (
    PUBLICATION,
    SIGNATURE,
    Pins,
    Publication,
    check_single_versions,
    version_statement,
)
from mlops_core.signing import parse_envelope

log = get_logger(__name__)

_CHUNK = 1 << 20


@dataclass(frozen=True)
class PublishResult:
    project: str
    version: str
    uri: str
    created: bool  # False: the same version was already completely published
    # The registration revision this publish created (the project's first), or None.
    registered: int | None = None
    # Set when project.yaml's envs/gates differ from the registration in force.
    policy_note: str | None = None


def _is_missing(exc: ClientError) -> bool:
    return aws.error_code(exc) in ("NoSuchKey", "404", "NotFound")


def split_s3_uri(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise InvalidInput(f"not an s3:// URI: {uri!r}", hint="use s3://bucket/key/prefix/")
    return parsed.netloc, parsed.path.lstrip("/")


def _stream_sha256(body, out_path: Path | None = None) -> str:
    h = hashlib.sha256()
    out = out_path.open("wb") if out_path else None
    try:
        for chunk in iter(lambda: body.read(_CHUNK), b""):
            h.update(chunk)
            if out:
                out.write(chunk)
    finally:
        if out:
            out.close()
    return h.hexdigest()


def _get(bucket: str, key: str, version_id: str | None = None) -> Any:
    """The body of one object (of one object version when ``version_id`` is given)."""
    kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if version_id:
        kwargs["VersionId"] = version_id
    try:
        return aws.client("s3").get_object(**kwargs)["Body"]
    except ClientError as exc:
        if _is_missing(exc) or aws.error_code(exc) in ("NoSuchVersion", "InvalidArgument"):
            raise IntegrityError(
                f"{key.rpartition('/')[2]} is missing"
                + (f" (object version {version_id})" if version_id else ""),
                where=f"s3://{bucket}/{key}",
                hint="the version was published with it; it was deleted since",
            ) from None
        raise


def _download_verified(
    bucket: str,
    prefix: str,
    manifest: Manifest,
    dest: Path,
    *,
    pins: Pins | None = None,
    names: Iterable[str] | None = None,
) -> None:
    """Download files of ``manifest`` (all, or ``names``) into ``dest``, by their pinned
    object versions when ``pins`` are given, each checked against its sha256.

    Each file is written under a temporary name and renamed only once its digest is
    right, so ``dest`` never holds a file that failed its check. Names are the layout's
    fixed file names (the manifest model refuses any other), never paths."""
    for name in sorted(manifest.files if names is None else names):
        entry = manifest.files[name]
        target = dest / name
        body = _get(bucket, f"{prefix}{name}", pins.objects[name] if pins else None)
        fd, tmp = tempfile.mkstemp(dir=dest, prefix=f".{name}.", suffix=".part")
        os.close(fd)
        try:
            actual = _stream_sha256(body, Path(tmp))
            if actual != entry.sha256:
                raise IntegrityError(
                    f"{name} has sha256 {actual[:12]}…, manifest says {entry.sha256[:12]}…",
                    where=f"s3://{bucket}/{prefix}{name}",
                    hint="the stored file does not match its manifest; do not serve this version",
                )
            os.replace(tmp, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def _read_manifest_s3(bucket: str, key: str) -> Manifest | None:
    try:
        raw = aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if _is_missing(exc):
            return None
        raise
    return _parse_manifest(raw, key)


def _parse_manifest(raw: bytes, where: str) -> Manifest:
    try:
        return Manifest.model_validate_json(raw)
    except ValidationError as exc:
        raise IntegrityError(f"malformed manifest: {exc.errors()[0]['msg']}", where=where) from None


def _object_versions(bucket: str, prefix: str) -> dict[str, list[dict[str, Any]]]:
    """Every object version and delete marker under ``prefix``, by name below it."""
    out: dict[str, list[dict[str, Any]]] = {}
    paginator = aws.client("s3").get_paginator("list_object_versions")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for v in page.get("Versions", []):
            out.setdefault(v["Key"][len(prefix) :], []).append(v)
        for m in page.get("DeleteMarkers", []):
            out.setdefault(m["Key"][len(prefix) :], []).append({**m, "DeleteMarker": True})
    return out


def read_published(
    bucket: str,
    prefix: str,
    pins: Pins,
    signing_key: str,
    *,
    project: str | None = None,
    version: str | None = None,
) -> Manifest:
    """The manifest of the version folder at ``prefix``, once every check has passed:

    - the folder holds exactly the pinned object versions (nothing written since);
    - the pinned manifest has the pinned sha256;
    - the pinned signature is the platform key's, over that sha256, this project and
      this version.

    This is the one check every consumer makes (serving, the controller, promote,
    rollback, the drift job); a failure is an :class:`IntegrityError`, never a reason to
    take what the bucket holds now."""
    where = f"s3://{bucket}/{prefix}"
    check_single_versions(_object_versions(bucket, prefix), pins, where)
    if MANIFEST not in pins.objects or SIGNATURE not in pins.objects:
        raise IntegrityError("the pins name no manifest or no signature", where=where)
    raw = _get(bucket, prefix + MANIFEST, pins.objects[MANIFEST]).read()
    if sha256_bytes(raw) != pins.manifest_sha256:
        raise IntegrityError(
            f"{MANIFEST} has sha256 {sha256_bytes(raw)[:12]}…, "
            f"{pins.manifest_sha256[:12]}… is pinned",
            where=where + MANIFEST,
            hint="the stored manifest is not the published one; do not use this version",
        )
    manifest = _parse_manifest(raw, where + MANIFEST)
    for label, want, got in (("project", project, manifest.project),
                             ("version", version, manifest.version)):  # fmt: skip
        if want is not None and want != got:
            raise IntegrityError(f"the manifest is of {label} {got!r}, not {want!r}", where=where)
    pins.check_names(set(manifest.files), where)
    envelope = parse_envelope(
        _get(bucket, prefix + SIGNATURE, pins.objects[SIGNATURE]).read(), where + SIGNATURE
    )
    signing.verify(
        signing_key,
        envelope,
        version_statement(manifest.project, manifest.version, pins.manifest_sha256),
        where + SIGNATURE,
    )
    return manifest


def read_candidate_manifest(uri: str) -> Manifest:
    """The manifest of an artifacts folder given by URI (s3://... or a local path)."""
    if uri.startswith("s3://"):
        bucket, prefix = split_s3_uri(uri.rstrip("/") + "/")
        manifest = _read_manifest_s3(bucket, prefix + MANIFEST)
        if manifest is None:
            raise NotFound(f"no {MANIFEST} at {uri}", hint="is training finished there?")
        return manifest
    return read_manifest(Path(uri.removeprefix("file://")))


def fetch_candidate(uri: str, dest: Path) -> Path:
    """A local copy of the (unpublished) artifacts folder at ``uri``, its signature with
    it when it has one. Only digests are checked here: publishing checks the signature.

    The manifest is read once, and the files are checked against exactly those bytes,
    which are what the copy holds: a writer changing the folder meanwhile cannot get a
    manifest other than the one checked into the copy (what is signed or published)."""
    if not uri.startswith("s3://"):
        folder = Path(uri.removeprefix("file://"))
        verify_folder(folder)
        return folder
    bucket, prefix = split_s3_uri(uri.rstrip("/") + "/")
    try:
        raw = _get(bucket, prefix + MANIFEST).read()
    except IntegrityError:
        raise NotFound(f"no {MANIFEST} at {uri}", hint="is training finished there?") from None
    manifest = _parse_manifest(raw, uri.rstrip("/") + "/" + MANIFEST)
    dest.mkdir(parents=True, exist_ok=True)
    _download_verified(bucket, prefix, manifest, dest)
    (dest / MANIFEST).write_bytes(raw)
    with contextlib.suppress(IntegrityError):  # unsigned: publishing says so
        (dest / SIGNATURE).write_bytes(_get(bucket, prefix + SIGNATURE).read())
    return dest


def _candidate_bytes(uri: str, name: str) -> bytes | None:
    """One file of a candidate folder (s3:// or local), or None if it has none."""
    if not uri.startswith("s3://"):
        path = Path(uri.removeprefix("file://")) / name
        return path.read_bytes() if path.is_file() else None
    bucket, prefix = split_s3_uri(uri.rstrip("/") + "/")
    try:
        return _get(bucket, prefix + name).read()
    except IntegrityError:
        return None


def candidate_statement(uri: str) -> dict[str, Any]:
    """What a signature of the candidate at ``uri`` must cover."""
    raw = _candidate_bytes(uri, MANIFEST)
    if raw is None:
        raise NotFound(f"no {MANIFEST} at {uri}", hint="is training finished there?")
    manifest = _parse_manifest(raw, f"{uri.rstrip('/')}/{MANIFEST}")
    return version_statement(manifest.project, manifest.version, sha256_bytes(raw))


def check_candidate_signed(uri: str, signing_key: str) -> None:
    """Refuse a candidate that carries no valid signature of the platform's key."""
    where = f"{uri.rstrip('/')}/{SIGNATURE}"
    statement = candidate_statement(uri)
    raw = _candidate_bytes(uri, SIGNATURE)
    if raw is None:
        raise IntegrityError(
            f"candidate {statement['version']} is not signed",
            where=where,
            hint="the controller publishes only signed candidates: sign it with "
            f"'mlopsctl sign {uri}' (the publishing identity), then deploy it",
        )
    signing.verify(signing_key, parse_envelope(raw, where), statement, where)


def sign_candidate(uri: str, signing_key: str) -> tuple[str, bool]:
    """Sign the candidate folder at ``uri`` (s3:// or local) after checking every file's
    digest. Returns where the signature is and whether it was written now (a valid one
    already there is kept; another one is refused, never replaced)."""
    with tempfile.TemporaryDirectory(prefix="mlops-sign-") as tmp:
        folder = fetch_candidate(uri, Path(tmp))  # every digest checked
        manifest = read_manifest(folder)
        check_servable(manifest)
        check_version_of(manifest)
        # What is signed is the manifest that was checked, not a later read of it.
        raw = (folder / MANIFEST).read_bytes()
    statement = version_statement(manifest.project, manifest.version, sha256_bytes(raw))
    where = f"{uri.rstrip('/')}/{SIGNATURE}"
    existing = _candidate_bytes(uri, SIGNATURE)
    if existing is not None:
        signing.verify(signing_key, parse_envelope(existing, where), statement, where)
        return where, False
    body = signing.sign(signing_key, statement).to_json().encode()
    if uri.startswith("s3://"):
        bucket, prefix = split_s3_uri(uri.rstrip("/") + "/")
        try:
            aws.client("s3").put_object(
                Bucket=bucket, Key=prefix + SIGNATURE, Body=body, IfNoneMatch="*"
            )
        except ClientError as exc:
            if aws.error_code(exc) not in aws.CONDITION_LOST:
                raise
            check_candidate_signed(uri, signing_key)  # signed concurrently: must be valid
            return where, False
        return where, True
    path = Path(uri.removeprefix("file://")) / SIGNATURE
    tmp_path = path.with_name(f".{SIGNATURE}.part")
    tmp_path.write_bytes(body)
    os.replace(tmp_path, path)
    return where, True


def fetch_published(
    uri: str,
    pins: Pins,
    dest: Path,
    *,
    signing_key: str,
    model_only: bool = False,
) -> Manifest:
    """Verify the published version at ``uri`` against ``pins`` (:func:`read_published`)
    and download its files (all, or only the one serving loads) by their pinned object
    versions."""
    bucket, prefix = split_s3_uri(uri.rstrip("/") + "/")
    manifest = read_published(bucket, prefix, pins, signing_key)
    dest.mkdir(parents=True, exist_ok=True)
    names = [manifest.model_file] if model_only else None
    _download_verified(bucket, prefix, manifest, dest, pins=pins, names=names)
    (dest / MANIFEST).write_text(manifest.to_json())
    return manifest


def upload_candidate(folder: Path, uri: str) -> str:
    """Copy a trained artifacts folder to ``uri`` (``s3://bucket/prefix/``): a candidate
    that ``deploy --candidate`` can take. Every file is verified first and written once
    (conditional puts: an existing candidate with other content is refused), the manifest
    last, so a reader that finds the manifest finds a complete folder. Returns the URI."""
    manifest = verify_folder(folder)
    bucket, prefix = split_s3_uri(uri.rstrip("/") + "/")
    s3 = aws.client("s3")
    for name in [*sorted(manifest.files), MANIFEST]:
        try:
            with (folder / name).open("rb") as f:
                s3.put_object(Bucket=bucket, Key=prefix + name, Body=f, IfNoneMatch="*")
        except ClientError as exc:
            if aws.error_code(exc) not in aws.CONDITION_LOST:
                raise
            raise Conflict(
                f"s3://{bucket}/{prefix}{name} already exists",
                hint="write each training run's candidate to a new prefix",
            ) from None
    return f"s3://{bucket}/{prefix}"


def _has_digest(sha256: str) -> Callable[[bytes], bool]:
    return lambda data: sha256_bytes(data) == sha256


@dataclass(frozen=True)
class Published:
    """A published version as its publication recorded it, verified."""

    manifest: Manifest
    pins: Pins


class Registry:
    """Published versions of every project of one platform."""

    def __init__(self, platform: Platform):
        self.platform = platform
        self.bucket = self.platform.artifact_bucket
        # Published versions never change (anything written to one after publication is
        # an integrity failure): verify each once for the life of the process.
        self._published: dict[tuple[str, str], Published] = {}
        self._lock = threading.Lock()
        self._object_lock: bool | None = None
        self.policy = Policy(self.platform)

    @property
    def _s3(self):
        return aws.client("s3")

    @property
    def signing_key(self) -> str:
        return self.platform.model_signing_key

    # -- publishing --------------------------------------------------------------------
    def _tagging(self, key: str) -> str:
        """The cost allocation tags of an object under ``{project}/``, as S3's Tagging
        header. S3 bills storage by bucket; object tags let lifecycle rules and Storage
        Lens groups split it by project."""
        return urlencode(self.platform.cost_tags(key.partition("/")[0]))

    def _retention(self) -> dict[str, Any]:
        """Object Lock arguments for a published object: governance-mode retention when
        the bucket has Object Lock (``dev up`` and Terraform create it so), else none."""
        if self._object_lock is None:
            try:
                conf = self._s3.get_object_lock_configuration(Bucket=self.bucket)
                enabled = conf["ObjectLockConfiguration"].get("ObjectLockEnabled") == "Enabled"
            except ClientError:
                enabled = False  # no Object Lock on this bucket
            self._object_lock = enabled
        days = self.platform.object_lock_days
        if not self._object_lock or days <= 0:
            return {}
        return {
            "ObjectLockMode": "GOVERNANCE",
            "ObjectLockRetainUntilDate": datetime.now(UTC) + timedelta(days=days),
        }

    def _put_once(self, key: str, body: bytes, accept: Callable[[bytes], bool]) -> str:
        """Create ``key`` unless it exists; return its S3 version id. An existing object is
        taken only if ``accept``s its bytes (a re-run after an interruption, or a
        concurrent identical publish)."""
        try:
            out = self._s3.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=body,
                IfNoneMatch="*",
                Tagging=self._tagging(key),
                **self._retention(),
            )
            if out.get("VersionId"):
                return str(out["VersionId"])
        except ClientError as exc:
            if aws.error_code(exc) not in aws.CONDITION_LOST:
                raise
        # Verify what S3 now holds, whoever wrote it, and pin that object version.
        got = self._s3.get_object(Bucket=self.bucket, Key=key)
        if not accept(got["Body"].read()):
            raise Conflict(
                f"s3://{self.bucket}/{key} already exists with different content",
                hint="versions are immutable; retrain to get a new version id",
            )
        version_id = got.get("VersionId")
        if not version_id or version_id == "null":
            raise InvalidInput(
                f"bucket {self.bucket!r} does not keep object versions",
                hint="published versions are pinned by S3 object version: enable "
                "versioning ('mlopsctl dev up' and Terraform do)",
            )
        return str(version_id)

    def _envelope(self, folder: Path, statement: dict[str, Any], sign: bool) -> bytes:
        """The version's signature: the one the folder carries (a candidate signed by
        'mlopsctl sign'), checked, or a new one when ``sign``."""
        where = str(folder / SIGNATURE)
        if (folder / SIGNATURE).is_file():
            raw = (folder / SIGNATURE).read_bytes()
            signing.verify(self.signing_key, parse_envelope(raw, where), statement, where)
            return raw
        if not sign:
            raise IntegrityError(
                f"version {statement['version']} is not signed",
                where=where,
                hint="the controller publishes only signed candidates: sign it with "
                "'mlopsctl sign URI' (the publishing identity), then deploy it",
            )
        return signing.sign(self.signing_key, statement).to_json().encode()

    def _accept_signature(self, statement: dict[str, Any], where: str) -> Callable[[bytes], bool]:
        def accept(raw: bytes) -> bool:
            try:
                signing.verify(self.signing_key, parse_envelope(raw, where), statement, where)
            except IntegrityError:
                return False
            return True

        return accept

    def publish(
        self,
        folder: Path,
        *,
        exist_ok: bool = False,
        sign: bool = True,
        config: ProjectConfig | None = None,
    ) -> PublishResult:
        """Publish a trained artifacts folder, signed (with the platform's key when
        ``sign`` and the folder carries no signature of its own). Raises Conflict if the
        version is already published, unless ``exist_ok`` and the published one is
        identical.

        With ``config`` (project.yaml), a project with no registration yet is registered
        with it (revision 1); an existing registration is never changed, and a difference
        in envs or gates is reported in ``policy_note``. Nothing is written, registration
        included, before every check has passed."""
        manifest = verify_folder(folder)
        check_servable(manifest)  # never publish what serving would refuse to load
        project = check_project(manifest.project)
        if config is not None and config.name != project:
            raise InvalidInput(
                f"the artifacts are a model of {project!r}, project.yaml is {config.name!r}",
                where=str(folder),
                hint="publish them from their own project, or retrain this one",
            )
        check_version(manifest.version)
        check_version_of(manifest)
        prefix = self.platform.version_prefix(project, manifest.version)
        uri = f"s3://{self.bucket}/{prefix}"
        manifest_bytes = (folder / MANIFEST).read_bytes()
        manifest_sha = sha256_bytes(manifest_bytes)

        existing = self._read_publication(project, manifest.version)
        if existing is not None:
            if existing.pins.manifest_sha256 != manifest_sha or not exist_ok:
                raise Conflict(
                    f"version {manifest.version} of {project} is already published at {uri}",
                    hint="versions are immutable; retrain to get a new version id",
                )
            return PublishResult(project, manifest.version, uri, created=False)
        statement = version_statement(project, manifest.version, manifest_sha)
        envelope = self._envelope(folder, statement, sign)

        objects: dict[str, str] = {}
        for name, entry in sorted(manifest.files.items()):
            objects[name] = self._put_once(
                prefix + name, (folder / name).read_bytes(), _has_digest(entry.sha256)
            )
        objects[MANIFEST] = self._put_once(
            prefix + MANIFEST, manifest_bytes, _has_digest(manifest_sha)
        )
        objects[SIGNATURE] = self._put_once(
            prefix + SIGNATURE, envelope, self._accept_signature(statement, uri + SIGNATURE)
        )
        record = Publication(
            project=project,
            version=manifest.version,
            pins=Pins(manifest_sha256=manifest_sha, objects=objects),
            published_at=datetime.now(UTC),
            published_by=self.platform.actor,
        )
        # The commit marker, last.
        created = True
        try:
            self._s3.put_object(
                Bucket=self.bucket,
                Key=prefix + PUBLICATION,
                Body=record.to_json().encode(),
                IfNoneMatch="*",
                ContentType="application/json",
                Tagging=self._tagging(prefix),
                **self._retention(),
            )
        except ClientError as exc:
            if aws.error_code(exc) not in aws.CONDITION_LOST:
                raise
            created = False  # a concurrent publish of the same version committed first
            other = self._read_publication(project, manifest.version)
            if other is None or other.pins.manifest_sha256 != manifest_sha:
                raise Conflict(
                    f"version {manifest.version} was published concurrently with other content"
                ) from None
            if not exist_ok:
                raise Conflict(
                    f"version {manifest.version} of {project} was published concurrently",
                    hint="it is complete; nothing more to do",
                ) from None
        # What was committed must read back as published (a version someone wrote to
        # while it was being published is refused here, not at its first use).
        self.get_published(project, manifest.version)
        # Registration last: a publish refused at any point above registered nothing.
        registered, note = None, None
        if config is not None:
            head, created_head = self.policy.ensure(
                config, reason=f"registered by the first publish ({manifest.version})"
            )
            registered = head.revision if created_head else None
            note = None if created_head else publish_note(head, config)
        return PublishResult(
            project, manifest.version, uri, created, registered=registered, policy_note=note
        )

    def publish_uri(self, uri: str, *, exist_ok: bool = True, sign: bool = False) -> PublishResult:
        """Publish the artifacts folder at ``uri`` (s3://... or a local path). By default
        the folder must carry its own signature: this is how the controller publishes a
        candidate, and the controller never signs."""
        with tempfile.TemporaryDirectory(prefix="mlops-candidate-") as tmp:
            folder = fetch_candidate(uri, Path(tmp))
            return self.publish(folder, exist_ok=exist_ok, sign=sign)

    # -- reading -----------------------------------------------------------------------
    def _read_publication(self, project: str, version: str) -> Publication | None:
        key = self.platform.version_prefix(project, version) + PUBLICATION
        try:
            raw = self._s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if _is_missing(exc):
                return None
            raise
        try:
            record = Publication.model_validate_json(raw)
        except ValidationError as exc:
            raise IntegrityError(
                f"malformed publication record: {exc.errors()[0]['msg']}",
                where=f"s3://{self.bucket}/{key}",
            ) from None
        if (record.project, record.version) != (project, version):
            raise IntegrityError(
                f"the publication record is of {record.project} {record.version}",
                where=f"s3://{self.bucket}/{key}",
            )
        return record

    def get_published(self, project: str, version: str) -> Published:
        """The version with the pins its publication recorded, verified
        (:func:`read_published`); NotFound if it was never (completely) published."""
        key = (check_project(project), check_version(version))
        with self._lock:
            cached = self._published.get(key)
        if cached is not None:
            return cached
        record = self._read_publication(project, version)
        if record is None:
            raise NotFound(
                f"version {version} of project {project!r} is not published",
                hint=f"'mlopsctl models --project {project}' lists published versions",
            )
        manifest = read_published(
            self.bucket,
            self.platform.version_prefix(project, version),
            record.pins,
            self.signing_key,
            project=project,
            version=version,
        )
        published = Published(manifest, record.pins)
        with self._lock:
            self._published[key] = published
        return published

    def get_manifest(self, project: str, version: str) -> Manifest:
        return self.get_published(project, version).manifest

    def verify(self, project: str, version: str, pins: Pins | None, where: str) -> Published:
        """The version, refused unless ``pins`` (a pointer's, a task definition's) are the
        ones its publication recorded."""
        published = self.get_published(project, version)
        if pins is None:
            raise IntegrityError(
                f"{where} names version {version} without its publication pins",
                hint="only values written by 'mlopsctl promote', 'rollback' or the "
                "controller carry pins; promote the version again",
            )
        if pins != published.pins:
            raise IntegrityError(
                f"{where} pins version {version} as manifest {pins.manifest_sha256[:12]}…, "
                f"its publication recorded {published.pins.manifest_sha256[:12]}…"
                + ("" if pins.manifest_sha256 != published.pins.manifest_sha256
                   else " (other object versions)"),
                hint="a pin that disagrees with publication is never re-pinned: find who "
                "wrote it, then promote a version explicitly",
            )  # fmt: skip
        return published

    def read_file(self, project: str, version: str, name: str) -> bytes:
        """One file of a published version, by its pinned object version, checked against
        its manifest's sha256."""
        published = self.get_published(project, version)
        entry = published.manifest.files.get(name)
        key = self.platform.version_prefix(project, version) + name
        if entry is None:
            raise NotFound(f"version {version} of {project!r} has no {name}")
        data = _get(self.bucket, key, published.pins.objects[name]).read()
        actual = hashlib.sha256(data).hexdigest()
        if actual != entry.sha256:
            raise IntegrityError(
                f"{name} has sha256 {actual[:12]}…, manifest says {entry.sha256[:12]}…",
                where=f"s3://{self.bucket}/{key}",
                hint="the stored file does not match its manifest; do not trust this version",
            )
        return data

    def exists(self, project: str, version: str) -> bool:
        try:
            self.get_published(project, version)
        except NotFound:
            return False
        return True

    def _common_prefixes(self, prefix: str) -> list[str]:
        out: list[str] = []
        paginator = self._s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"):
            out.extend(p["Prefix"] for p in page.get("CommonPrefixes", []))
        return out

    def list_versions(self, project: str) -> list[Manifest]:
        """Completely published versions that pass their checks, oldest first.

        Ordered by ``created_at``: version ids sort by time only to the second, and two
        trainings within one second differ in their hash suffix, not in time order."""
        base = self.platform.models_prefix(project)
        versions = sorted(p[len(base) :].rstrip("/") for p in self._common_prefixes(base))
        out = []
        for version in versions:
            try:
                out.append(self.get_manifest(project, version))
            except (NotFound, InvalidInput):
                continue  # incomplete publish or a stray folder: invisible to readers
            except IntegrityError as exc:
                log.error("version failed its integrity check", project=project,
                          version=version, error=exc.render())  # fmt: skip
        return sorted(out, key=lambda m: (m.created_at, m.version))

    def download(
        self, project: str, version: str, dest: Path, *, names: Iterable[str] | None = None
    ) -> Manifest:
        published = self.get_published(project, version)
        dest.mkdir(parents=True, exist_ok=True)
        _download_verified(
            self.bucket,
            self.platform.version_prefix(project, version),
            published.manifest,
            dest,
            pins=published.pins,
            names=names,
        )
        (dest / MANIFEST).write_text(published.manifest.to_json())
        return published.manifest

    # -- projects ----------------------------------------------------------------------
    def register_project(self, config: ProjectConfig) -> Registration:
        """Register a new project (revision 1 of its registration). An identical
        registration in force is accepted as it is; a different one is never replaced
        here: that is 'mlopsctl policy set', which records who and why."""
        head, created = self.policy.ensure(config, reason="registered")
        if not created and not same_config(head.config, config):
            raise Conflict(
                f"project {config.name!r} is already registered (revision {head.revision}) "
                "with another configuration",
                hint="change its envs and gates with 'mlopsctl policy set --reason TEXT'",
            )
        return head

    def registration(self, project: str) -> Registration:
        """The registration in force (the head revision, with its number)."""
        try:
            head = self.policy.head(project)
        except ClientError as exc:
            if aws.error_code(exc) == "NoSuchBucket":
                raise NotFound(
                    f"artifact bucket {self.bucket!r} does not exist",
                    hint="run 'mlopsctl dev up' (local) or 'terraform apply' (AWS), "
                    "or set MLOPS_ARTIFACT_BUCKET",
                ) from None
            raise
        if head is None:
            raise NotFound(
                f"unknown project {project!r}",
                hint="publish a version of it first ('mlopsctl publish' registers it); "
                f"known projects: {', '.join(self.list_projects()) or 'none'}",
            )
        return head

    def get_project(self, project: str) -> ProjectConfig:
        """The configuration in force: the head registration's."""
        return self.registration(project).config

    def list_projects(self) -> list[str]:
        try:
            prefixes = self._common_prefixes("")
        except ClientError:
            return []
        names = [p.rstrip("/") for p in prefixes]
        return [n for n in names if n + "/" != self.platform.desired_state_prefix]
