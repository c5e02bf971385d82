"""The model registry: immutable, digest-verified versions in S3.

A version lives at ``s3://{bucket}/{project}/models/{version}/``. Publishing writes every
file with a conditional put (``IfNoneMatch="*"``), so nothing is ever overwritten, then
reads each back and checks its sha256, and writes ``manifest.json`` last: it is the commit
marker. Readers only ever see versions whose manifest exists, so a publish interrupted
half-way is invisible, and re-running it finishes the job (files already there with the
right digest are accepted as they are).

A project's registration (its envs and gates) is versioned policy, kept by
:mod:`mlops_core.policy`: the first publish registers revision 1, later publishes never
change it, and a refused publish writes nothing at all.
"""

from __future__ import annotations

import hashlib
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode, urlparse

from botocore.exceptions import ClientError
from pydantic import ValidationError

from mlops_core import aws
from mlops_core.artifacts import (
    MANIFEST,
    Manifest,
    check_version,
    read_manifest,
    verify_folder,
)
from mlops_core.errors import Conflict, IntegrityError, InvalidInput, NotFound
from mlops_core.modelformat import check_servable
from mlops_core.naming import Platform, check_project
from mlops_core.policy import Policy, Registration, publish_note, same_config
from mlops_core.project import ProjectConfig

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


def _download_verified(bucket: str, prefix: str, manifest: Manifest, dest: Path) -> None:
    """Download every file of ``manifest`` into ``dest``, checking each sha256 on the way."""
    s3 = aws.client("s3")
    for name, entry in manifest.files.items():
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            body = s3.get_object(Bucket=bucket, Key=f"{prefix}{name}")["Body"]
        except ClientError as exc:
            if _is_missing(exc):
                raise IntegrityError(
                    f"{name} is named by the manifest but missing",
                    where=f"s3://{bucket}/{prefix}",
                ) from None
            raise
        actual = _stream_sha256(body, target)
        if actual != entry.sha256:
            raise IntegrityError(
                f"{name} has sha256 {actual[:12]}…, manifest says {entry.sha256[:12]}…",
                where=f"s3://{bucket}/{prefix}{name}",
                hint="the stored file does not match its manifest; do not serve this version",
            )
    (dest / MANIFEST).write_text(manifest.to_json())


def _read_manifest_s3(bucket: str, key: str) -> Manifest | None:
    try:
        raw = aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if _is_missing(exc):
            return None
        raise
    try:
        return Manifest.model_validate_json(raw)
    except ValidationError as exc:
        raise IntegrityError(f"malformed manifest: {exc.errors()[0]['msg']}", where=key) from None


def read_candidate_manifest(uri: str) -> Manifest:
    """The manifest of an artifacts folder given by URI (s3://... or a local path)."""
    if uri.startswith("s3://"):
        bucket, prefix = split_s3_uri(uri.rstrip("/") + "/")
        manifest = _read_manifest_s3(bucket, prefix + MANIFEST)
        if manifest is None:
            raise NotFound(f"no {MANIFEST} at {uri}", hint="is training finished there?")
        return manifest
    return read_manifest(Path(uri.removeprefix("file://")))


def fetch_folder(uri: str, dest: Path) -> tuple[Manifest, Path]:
    """Make a verified local copy of the version folder at ``uri``.

    ``uri`` is ``s3://bucket/.../`` or a local folder (verified in place, not copied).
    Returns the manifest and the folder to load from. Every file's sha256 is checked
    against the manifest before this returns, so callers may unpickle safely.
    """
    if not uri.startswith("s3://"):
        folder = Path(uri.removeprefix("file://"))
        return verify_folder(folder), folder
    bucket, prefix = split_s3_uri(uri.rstrip("/") + "/")
    manifest = _read_manifest_s3(bucket, prefix + MANIFEST)
    if manifest is None:
        raise NotFound(f"no {MANIFEST} at {uri}", hint="is this a published version folder?")
    dest.mkdir(parents=True, exist_ok=True)
    _download_verified(bucket, prefix, manifest, dest)
    return manifest, dest


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
            if aws.error_code(exc) not in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise
            raise Conflict(
                f"s3://{bucket}/{prefix}{name} already exists",
                hint="write each training run's candidate to a new prefix",
            ) from None
    return f"s3://{bucket}/{prefix}"


class Registry:
    """Published versions of every project of one platform."""

    def __init__(self, platform: Platform | None = None):
        self.platform = platform or Platform.from_env()
        self.bucket = self.platform.artifact_bucket
        # Published manifests never change: cache them for the life of the process.
        self._manifests: dict[tuple[str, str], Manifest] = {}
        self._lock = threading.Lock()
        self.policy = Policy(self.platform)

    @property
    def _s3(self):
        return aws.client("s3")

    # -- publishing --------------------------------------------------------------------
    def _tagging(self, key: str) -> str:
        """The cost allocation tags of an object under ``{project}/``, as S3's Tagging
        header. S3 bills storage by bucket; object tags let lifecycle rules and Storage
        Lens groups split it by project."""
        return urlencode(self.platform.cost_tags(key.partition("/")[0]))

    def _put_once(self, key: str, path: Path, sha256: str) -> None:
        """Create ``key`` from ``path`` unless it exists; accept it if it already has our
        content (a re-run after an interruption, or a concurrent identical publish)."""
        try:
            with path.open("rb") as f:
                self._s3.put_object(
                    Bucket=self.bucket,
                    Key=key,
                    Body=f,
                    IfNoneMatch="*",
                    Metadata={"sha256": sha256},
                    Tagging=self._tagging(key),
                )
        except ClientError as exc:
            if aws.error_code(exc) not in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise
        # Verify what S3 now holds, whoever wrote it.
        body = self._s3.get_object(Bucket=self.bucket, Key=key)["Body"]
        actual = _stream_sha256(body)
        if actual != sha256:
            raise Conflict(
                f"s3://{self.bucket}/{key} already exists with different content",
                hint="versions are immutable; retrain to get a new version id",
            )

    def publish(
        self, folder: Path, *, exist_ok: bool = False, config: ProjectConfig | None = None
    ) -> PublishResult:
        """Publish a trained artifacts folder. Raises Conflict if the version is already
        published, unless ``exist_ok`` and the published one is identical.

        With ``config`` (project.yaml), a project with no registration yet is registered
        with it (revision 1); an existing registration is never changed, and a difference
        in envs or gates is reported in ``policy_note``. Nothing is written, registration
        included, when the publish is refused."""
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
        prefix = self.platform.version_prefix(project, manifest.version)
        uri = f"s3://{self.bucket}/{prefix}"
        manifest_bytes = (folder / MANIFEST).read_bytes()

        existing = _read_manifest_s3(self.bucket, prefix + MANIFEST)
        if existing is not None:
            if existing != manifest or not exist_ok:
                raise Conflict(
                    f"version {manifest.version} of {project} is already published at {uri}",
                    hint="versions are immutable; retrain to get a new version id",
                )
            return PublishResult(project, manifest.version, uri, created=False)

        registered, note = None, None
        if config is not None:
            head, created_head = self.policy.ensure(
                config, reason=f"registered by the first publish ({manifest.version})"
            )
            registered = head.revision if created_head else None
            note = None if created_head else publish_note(head, config)
        for name, entry in sorted(manifest.files.items()):
            self._put_once(prefix + name, folder / name, entry.sha256)
        # The commit marker, last.
        created = True
        try:
            self._s3.put_object(
                Bucket=self.bucket,
                Key=prefix + MANIFEST,
                Body=manifest_bytes,
                IfNoneMatch="*",
                ContentType="application/json",
                Tagging=self._tagging(prefix),
            )
        except ClientError as exc:
            if aws.error_code(exc) not in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise
            created = False  # a concurrent publish of the same version committed first
            if _read_manifest_s3(self.bucket, prefix + MANIFEST) != manifest:
                raise Conflict(
                    f"version {manifest.version} was published concurrently with other content"
                ) from None
            if not exist_ok:
                raise Conflict(
                    f"version {manifest.version} of {project} was published concurrently",
                    hint="it is complete; nothing more to do",
                ) from None
        return PublishResult(
            project, manifest.version, uri, created, registered=registered, policy_note=note
        )

    def publish_uri(self, uri: str, *, exist_ok: bool = True) -> PublishResult:
        """Publish the artifacts folder at ``uri`` (s3://... or a local path)."""
        if not uri.startswith("s3://"):
            return self.publish(Path(uri.removeprefix("file://")), exist_ok=exist_ok)
        with tempfile.TemporaryDirectory(prefix="mlops-candidate-") as tmp:
            _, folder = fetch_folder(uri, Path(tmp))
            return self.publish(folder, exist_ok=exist_ok)

    # -- reading -----------------------------------------------------------------------
    def get_manifest(self, project: str, version: str) -> Manifest:
        key = (check_project(project), check_version(version))
        with self._lock:
            cached = self._manifests.get(key)
        if cached is not None:
            return cached
        manifest = _read_manifest_s3(
            self.bucket, self.platform.version_prefix(project, version) + MANIFEST
        )
        if manifest is None:
            raise NotFound(
                f"version {version} of project {project!r} is not published",
                hint=f"'mlopsctl models --project {project}' lists published versions",
            )
        with self._lock:
            self._manifests[key] = manifest
        return manifest

    def read_file(self, project: str, version: str, name: str) -> bytes:
        """One file of a published version, checked against its manifest's sha256."""
        manifest = self.get_manifest(project, version)
        entry = manifest.files.get(name)
        key = self.platform.version_prefix(project, version) + name
        if entry is None:
            raise NotFound(f"version {version} of {project!r} has no {name}")
        try:
            data = self._s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if _is_missing(exc):
                raise IntegrityError(
                    f"{name} is named by the manifest but missing",
                    where=f"s3://{self.bucket}/{key}",
                ) from None
            raise
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
            self.get_manifest(project, version)
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
        """Completely published versions, oldest first.

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
        return sorted(out, key=lambda m: (m.created_at, m.version))

    def download(self, project: str, version: str, dest: Path) -> Manifest:
        manifest = self.get_manifest(project, version)
        dest.mkdir(parents=True, exist_ok=True)
        _download_verified(
            self.bucket, self.platform.version_prefix(project, version), manifest, dest
        )
        return manifest

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
