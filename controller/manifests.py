"""ModelDeployment manifests as text: parse (with file:line errors), serialize, hash.

The folder and S3 sources keep manifests as YAML files. Parsing goes through
:func:`mlops_core.yamlio.validate_yaml`, so every error names the file, the line and the
field. The spec hash is what the sources use to compute ``metadata.generation`` (they have
no API server to count spec changes for them).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import PurePosixPath
from typing import Any

import yaml

from controller.api import ModelDeployment, deployment_key
from mlops_core.errors import InvalidInput, MlopsError
from mlops_core.yamlio import validate_yaml

MANIFEST_SUFFIXES = (".yaml", ".yml")


def parse_manifest(text: str, source: str, *, expected_name: str | None = None) -> ModelDeployment:
    """Validate one YAML document as a ModelDeployment.

    ``source`` names the file (path or s3:// URI) in error messages. ``expected_name`` is
    the name the file is stored under: a source keeps ``NAME.yaml`` and its status side by
    side, so ``metadata.name`` must match the file name or two files could claim one key.
    """
    deployment = validate_yaml(text, ModelDeployment, source)
    if expected_name is not None and deployment.metadata.name != expected_name:
        raise InvalidInput(
            f"metadata.name: {deployment.metadata.name!r} does not match the file name "
            f"{expected_name!r}",
            where=f"{source}:{_line_of_name(text)}",
            hint=f"rename the file to {deployment.metadata.name}.yaml or set metadata.name "
            f"to {expected_name!r}",
        )
    return deployment


def _line_of_name(text: str) -> int:
    """Line of ``metadata.name`` (1 if not found); the document already parsed once."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    for key, value in getattr(root, "value", []):
        if key.value == "metadata" and isinstance(value, yaml.MappingNode):
            for k, _v in value.value:
                if k.value == "name":
                    return k.start_mark.line + 1
    return 1


def _loose(text: str) -> dict:
    """What can be read of a manifest that may not validate (for keys and policies)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def _str_field(data: dict, *path: str) -> str | None:
    for part in path:
        data = data.get(part) if isinstance(data, dict) else None  # type: ignore[assignment]
    return data if isinstance(data, str) and data else None


def key_of(text: str, name: str) -> str:
    """``namespace/NAME`` of a manifest that may not validate: its metadata.namespace if
    that much can be read, else the default (as :attr:`ModelDeployment.key` does)."""
    return deployment_key(_str_field(_loose(text), "metadata", "namespace"), name)


def load_document(raw: bytes | MlopsError, where: str, name: str):
    """A folder or S3 manifest (its bytes, or the error reading them) as a
    :class:`~controller.sources.base.Document`. Nothing here raises for a bad manifest."""
    from controller.sources.base import Document

    if isinstance(raw, MlopsError):
        return Document(name, deployment_key(None, name), "unreadable", error=raw)
    digest = "raw:" + hashlib.sha256(raw).hexdigest()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = raw[exc.start : exc.start + 1]
        error = InvalidInput(
            f"the manifest is not UTF-8 text (byte {exc.start} is {bad!r})",
            where=where,
            hint="save it as UTF-8 YAML",
        )
        return Document(name, deployment_key(None, name), digest, error=error)
    loose = _loose(text)
    fields: dict[str, Any] = {
        "key": key_of(text, name),
        # Scalars only: str() of a list would expand YAML aliases (a 1 KB alias bomb in
        # one annotation made gigabytes); a non-string value is the manifest's error anyway.
        "annotations": {
            str(k): str(v)
            for k, v in ((loose.get("metadata") or {}).get("annotations") or {}).items()
            if isinstance(v, str | int | float | bool)
        }
        if isinstance((loose.get("metadata") or {}).get("annotations"), dict)
        else None,
        "project": _str_field(loose, "spec", "project"),
        "env": _str_field(loose, "spec", "env"),
    }
    try:
        deployment = parse_manifest(text, where, expected_name=name)
    except MlopsError as error:
        return Document(name, digest=digest, error=error, **fields)
    return Document(
        name,
        digest=spec_hash(deployment),
        deployment=deployment,
        generation=deployment.metadata.generation,
        **fields,
    )


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
