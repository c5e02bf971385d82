"""Loading one model version into an immutable :class:`LoadedModel`.

Every check happens before anything is loaded, in this order:

1. an ``s3://`` version is verified against its publication pins
   (:func:`mlops_core.registry.fetch_published`: nothing written since publication, the
   pinned manifest, the publisher's signature) and only the model file is downloaded,
   by its pinned object version and checked against the signed manifest's sha256; a
   local folder is checked in place against its ``manifest.json``;
2. the manifest's model digest must equal the pinned one (``MODEL_SHA256``, or the
   pointer's ``sha256``) when there is one;
3. the model file's bytes are read once, hashed again, and those exact bytes loaded by
   :func:`serving.runtime.load_runtime`, which serves only formats that cannot execute
   code (ONNX, or skops with trusted types) and never unpickles.

The result holds everything a request needs (encoder, request parser, runtime), built
once; the service swaps whole ``LoadedModel`` objects, never parts of one.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from mlops_core.artifacts import Manifest, read_manifest
from mlops_core.capture import CaptureSchema, schema_for
from mlops_core.errors import IntegrityError
from mlops_core.features import FeatureEncoder
from mlops_core.logs import get_logger
from mlops_core.modelformat import check_servable
from mlops_core.publication import Pins
from mlops_core.registry import fetch_candidate, fetch_published
from serving.runtime import ModelRuntime, load_runtime
from serving.schema import DEFAULT_MAX_BATCH, RequestParser

log = get_logger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    """One verified model version, ready to predict. Never mutated after loading."""

    uri: str
    manifest: Manifest
    encoder: FeatureEncoder
    parser: RequestParser
    runtime: ModelRuntime
    #: The publication pins it was loaded by (None: a local folder).
    pins: Pins | None = None
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    #: What inference capture records of this version look like (built once, here).
    capture_schema: CaptureSchema = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "capture_schema", schema_for(self.manifest))

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def sha256(self) -> str:
        return self.manifest.model_sha256

    @property
    def project(self) -> str:
        return self.manifest.project


def check_pinned_digest(manifest: Manifest, expected_sha256: str | None, uri: str) -> None:
    if expected_sha256 and manifest.model_sha256 != expected_sha256:
        raise IntegrityError(
            f"the manifest's model sha256 is {manifest.model_sha256[:12]}…, "
            f"but {expected_sha256[:12]}… is pinned",
            where=uri,
            hint="MODEL_SHA256 (or the pointer's sha256) must name this version's model; "
            "re-deploy or re-promote the version you mean",
        )


def _fetch(
    uri: str, pins: Pins | None, expected_sha256: str | None, tmp: Path, signing_key: str
) -> tuple[Manifest, Path]:
    if uri.startswith("s3://"):
        if pins is None or not expected_sha256:
            raise IntegrityError(
                "a published version is served only by its publication pins",
                where=uri,
                hint="serve what the controller's task definition or the pointer names",
            )
        return fetch_published(uri, pins, tmp, signing_key=signing_key, model_only=True), tmp
    folder = fetch_candidate(uri, tmp)
    if not expected_sha256:
        log.warning("serving a local folder that no digest pins", uri=uri,
                    hint="set MODEL_SHA256 to the manifest's model sha256 to pin it")  # fmt: skip
    manifest = read_manifest(folder)
    check_servable(manifest)  # before any file it names is read
    return manifest, folder


def load_model(
    uri: str,
    *,
    expected_sha256: str | None = None,
    pins: Pins | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
    signing_key: str,
) -> LoadedModel:
    """Fetch, verify and load the version folder at ``uri`` (s3:// or a local path); a
    published version's signature is verified with ``signing_key`` (the platform's)."""
    with tempfile.TemporaryDirectory(prefix="mlops-serving-") as tmp:
        manifest, folder = _fetch(uri, pins, expected_sha256, Path(tmp), signing_key)
        check_pinned_digest(manifest, expected_sha256, uri)
        # The model lives in memory from here on; the downloaded copy can go.
        model_bytes = (folder / manifest.model_file).read_bytes()
    runtime = load_runtime(manifest, model_bytes, manifest.model_sha256)
    return LoadedModel(
        uri=uri,
        manifest=manifest,
        encoder=FeatureEncoder(manifest.features),
        parser=RequestParser(manifest.features, max_batch=max_batch),
        runtime=runtime,
        pins=pins,
    )
