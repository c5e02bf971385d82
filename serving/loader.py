"""Loading one model version into an immutable :class:`LoadedModel`.

Every check happens before anything is loaded, in this order:

1. :func:`mlops_core.registry.fetch_folder` downloads the folder (or takes a local one
   in place) and checks every file's sha256 against ``manifest.json``;
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

from mlops_core.artifacts import Manifest
from mlops_core.errors import IntegrityError
from mlops_core.features import FeatureEncoder
from mlops_core.registry import fetch_folder
from serving.runtime import ModelRuntime, load_runtime
from serving.schema import DEFAULT_MAX_BATCH, RequestParser


@dataclass(frozen=True)
class LoadedModel:
    """One verified model version, ready to predict. Never mutated after loading."""

    uri: str
    manifest: Manifest
    encoder: FeatureEncoder
    parser: RequestParser
    runtime: ModelRuntime
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))

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


def load_model(
    uri: str,
    *,
    expected_sha256: str | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> LoadedModel:
    """Fetch, verify and load the version folder at ``uri`` (s3:// or a local path)."""
    with tempfile.TemporaryDirectory(prefix="mlops-serving-") as tmp:
        manifest, folder = fetch_folder(uri, Path(tmp))
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
    )
