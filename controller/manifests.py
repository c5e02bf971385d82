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

import yaml

from controller.api import ModelDeployment
from mlops_core.errors import InvalidInput
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


def key_of(text: str, name: str) -> str:
    """``namespace/NAME`` of a manifest that may not validate: its metadata.namespace if
    that much can be read, else ``default`` (as :attr:`ModelDeployment.key` does)."""
    try:
        data = yaml.safe_load(text)
        namespace = data["metadata"]["namespace"]
    except (yaml.YAMLError, TypeError, KeyError):
        namespace = None
    return f"{namespace if isinstance(namespace, str) and namespace else 'default'}/{name}"


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
    canonical = json.dumps(
        deployment.spec.model_dump(mode="json", by_alias=True),
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def text_hash(text: str) -> str:
    """Hash of an unparseable manifest's raw text, so that editing it still counts as a
    spec change (a new generation) even though there is no spec to hash."""
    return "raw:" + hashlib.sha256(text.encode()).hexdigest()


def manifest_name(filename: str) -> str | None:
    """``NAME`` for ``NAME.yaml`` / ``NAME.yml``; None for any other file."""
    path = PurePosixPath(filename)
    if path.suffix not in MANIFEST_SUFFIXES or path.name.startswith("."):
        return None
    return path.stem
