"""ModelDeployment manifests as text: parse (with file:line errors), serialize, hash.

The folder and S3 sources keep manifests as YAML files. Parsing goes through
:mod:`mlops_core.yamlio` (composed once), so every error names the file, the line and the
field. The spec hash is what the sources use to compute ``metadata.generation`` (they have
no API server to count spec changes for them).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import Any

import yaml

from controller.api import ModelDeployment, deployment_key
from mlops_core.errors import InvalidInput, MlopsError
from mlops_core.yamlio import (
    check_duplicate_keys,
    compose_yaml,
    construct_yaml,
    line_of,
    validate_data,
)

MANIFEST_SUFFIXES = (".yaml", ".yml")


#: The largest manifest a folder or S3 source reads. Kubernetes refuses objects above
#: about 1.5 MiB (etcd's request limit), so a ModelDeployment that ``kubectl apply``
#: accepts is never bigger; real ones are a few KB. 1 MiB leaves room for long
#: annotations and comments, parses in well under a second, and keeps a padded file
#: (60 MB of comment took 90 s) from holding a worker and every key queued behind it.
MAX_MANIFEST_BYTES = 1024 * 1024


def too_large(size: int | None, where: str) -> InvalidInput:
    """The error of a manifest above :data:`MAX_MANIFEST_BYTES` (``size`` if known)."""
    what = f"{size:,} bytes" if size is not None else "more than that"
    return InvalidInput(
        f"the manifest is {what}; the limit is {MAX_MANIFEST_BYTES:,} bytes (1 MiB)",
        where=where,
        hint="a ModelDeployment is a few KB: remove what is not the deployment's",
    )


def _parse(
    text: str, source: str, expected_name: str | None
) -> tuple[ModelDeployment | None, Any, MlopsError | None]:
    """(deployment or None, the values that could be read, the error): one parse."""
    data: Any = None
    try:
        root = compose_yaml(text, source)
        data = construct_yaml(root, source)
        check_duplicate_keys(root, source)
        deployment = validate_data(data, root, ModelDeployment, source)
        if expected_name is not None and deployment.metadata.name != expected_name:
            line = line_of(root, "metadata", "name") or 1
            raise InvalidInput(
                f"metadata.name: {deployment.metadata.name!r} does not match the file name "
                f"{expected_name!r}",
                where=f"{source}:{line}",
                hint=f"rename the file to {deployment.metadata.name}.yaml or set "
                f"metadata.name to {expected_name!r}",
            )
    except MlopsError as error:
        return None, data, error
    return deployment, data, None


def parse_manifest(text: str, source: str, *, expected_name: str | None = None) -> ModelDeployment:
    """Validate one YAML document as a ModelDeployment.

    ``source`` names the file (path or s3:// URI) in error messages. ``expected_name`` is
    the name the file is stored under: a source keeps ``NAME.yaml`` and its status side by
    side, so ``metadata.name`` must match the file name or two files could claim one key.
    """
    deployment, _data, error = _parse(text, source, expected_name)
    if error is not None:
        raise error
    assert deployment is not None
    return deployment


def _str_field(data: Any, *path: str) -> str | None:
    for part in path:
        data = data.get(part) if isinstance(data, dict) else None
    return data if isinstance(data, str) and data else None


def load_document(raw: bytes | MlopsError, where: str, name: str):
    """A folder or S3 manifest (its bytes, or the error reading them) as a
    :class:`~controller.sources.base.Document`. Nothing here raises for a bad manifest.

    The text is parsed once: the key, the annotations (for the delete policy) and
    project/env come from the same values the validation sees, even when it fails."""
    from controller.sources.base import Document, ManifestUnreadable

    if isinstance(raw, MlopsError):
        # A retried read error keeps one digest; another error (a folder named NAME.yaml,
        # a file above the cap) is a new generation when what it says changes.
        unusable = "unreadable" if isinstance(raw, ManifestUnreadable) else "error:" + raw.what
        return Document(name, deployment_key(None, name), unusable, error=raw)
    digest = "raw:" + hashlib.sha256(raw).hexdigest()
    if len(raw) > MAX_MANIFEST_BYTES:  # a source reads at most one byte more than this
        return Document(name, deployment_key(None, name), digest, error=too_large(None, where))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = raw[exc.start : exc.start + 1]
        not_text = InvalidInput(
            f"the manifest is not UTF-8 text (byte {exc.start} is {bad!r})",
            where=where,
            hint="save it as UTF-8 YAML",
        )
        return Document(name, deployment_key(None, name), digest, error=not_text)
    deployment, data, error = _parse(text, where, name)
    loose: dict = data if isinstance(data, dict) else {}
    metadata: dict = loose["metadata"] if isinstance(loose.get("metadata"), dict) else {}
    annotations = metadata.get("annotations")
    fields: dict[str, Any] = {
        # namespace/NAME even when the spec is invalid, as ModelDeployment.key has it.
        "key": deployment_key(_str_field(metadata, "namespace"), name),
        # Scalars only: str() of a list would expand YAML aliases (a 1 KB alias bomb in
        # one annotation made gigabytes); a non-string value is the manifest's error anyway.
        "annotations": {
            str(k): str(v)
            for k, v in annotations.items()
            if isinstance(v, str | int | float | bool)
        }
        if isinstance(annotations, dict)
        else None,
        "project": _str_field(loose, "spec", "project"),
        "env": _str_field(loose, "spec", "env"),
    }
    if error is not None or deployment is None:
        return Document(name, digest=digest, error=error, **fields)
    return Document(
        name,
        digest=spec_hash(deployment),
        deployment=deployment,
        generation=deployment.metadata.generation,
        **fields,
    )


def one_of(docs: Sequence[tuple[str, Any]]):
    """The Document of a NAME stored as both ``NAME.yaml`` and ``NAME.yml`` (the files
    that exist, as (where, Document) pairs, ``.yaml`` first): the one there is, or, for
    two, an InvalidSpec naming both. The user must say which is meant; until then
    nothing is applied from either (a different env in each would deploy one silently).
    A read error of either (to be retried) wins, and None means neither exists."""
    if not docs:
        return None
    if len(docs) == 1:
        return docs[0][1]
    for _where, doc in docs:
        if doc.transient:
            return doc
    wheres = [where for where, _doc in docs]
    first = docs[0][1]
    error = InvalidInput(
        f"two manifests name the deployment {first.name}: {' and '.join(wheres)}; "
        "neither is applied while both exist",
        hint=f"remove or rename one of them ({first.name}.yaml and {first.name}.yml are "
        "the same deployment)",
    )
    digest = (
        "ambiguous:"
        + hashlib.sha256("\n".join(doc.digest for _where, doc in docs).encode()).hexdigest()
    )
    return dataclasses.replace(first, digest=digest, deployment=None, generation=None, error=error)


def dump_manifest(deployment: ModelDeployment) -> str:
    """YAML text of a deployment's desired state (apiVersion, kind, metadata, spec).

    Status is left out: the sources keep it in a separate object so that the manifest
    stays the user's (or GitOps') file alone.
    """
    data = deployment.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"status"})
    metadata = data["metadata"]
    for empty in ("labels", "annotations"):
        if not metadata.get(empty):
            metadata.pop(empty, None)
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)


def spec_hash(deployment: ModelDeployment) -> str:
    """sha256 of the spec in canonical JSON: formatting, comments and defaults spelled
    out or not make no difference; any change of meaning does."""
    spec = deployment.spec.model_dump(mode="json", by_alias=True)
    if spec.get("retry") is None:
        # Added after specs were first hashed: unset, it leaves their hash (and so their
        # generation and any failed version's hold) as it was.
        spec.pop("retry", None)
    canonical = json.dumps(
        spec,
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def manifest_name(filename: str) -> str | None:
    """``NAME`` for ``NAME.yaml`` / ``NAME.yml``; None for any other file."""
    path = PurePosixPath(filename)
    if path.suffix not in MANIFEST_SUFFIXES or path.name.startswith("."):
        return None
    return path.stem
