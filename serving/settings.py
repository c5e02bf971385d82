"""Service settings, from the environment (one pydantic model, validated at start-up).

Where the model comes from, in order:

1. ``MODEL_URI``: an ``s3://`` version folder or a local folder. This is what the
   controller writes into a task definition, together with ``MODEL_SHA256`` and the
   version's publication pins (``MODEL_MANIFEST_SHA256``, ``MODEL_OBJECT_VERSIONS``); it
   pins one version, so the pointer is never polled. An ``s3://`` URI without all three
   is refused; a local folder (``mlopsctl serve``, a developer's own training output) is
   checked against its manifest, and served with a warning when no digest pins it.
2. ``MLOPS_PROJECT`` + ``MLOPS_ENV``: the env's model pointer (an SSM parameter), read
   at start-up and, if ``MLOPS_POINTER_POLL_SECONDS`` > 0, polled so that a promotion or
   a rollback is served within a few seconds (local dev and demos).

AWS access (credentials, region, ``AWS_ENDPOINT_URL``) follows boto3's standard chain.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mlops_core.artifacts import SHA256_RE
from mlops_core.config import PlatformSettings
from mlops_core.errors import InvalidInput
from mlops_core.naming import ENV_RE, PROJECT_RE, Platform
from mlops_core.publication import Pins

DEFAULT_PORT = 8080


class ServingSettings(BaseModel):
    """Each field reads the environment variable named by its alias; code may pass names."""

    model_config = ConfigDict(
        extra="ignore", populate_by_name=True, protected_namespaces=(), frozen=True
    )

    model_uri: str | None = Field(
        None,
        validation_alias="MODEL_URI",
        description="s3:// URI or local path of a model version folder; pins the version.",
    )
    model_sha256: str | None = Field(
        None,
        validation_alias="MODEL_SHA256",
        pattern=SHA256_RE.pattern,
        description="Expected sha256 of the model file; a different manifest is refused.",
    )
    model_manifest_sha256: str | None = Field(
        None,
        validation_alias="MODEL_MANIFEST_SHA256",
        pattern=SHA256_RE.pattern,
        description="The version's manifest sha256, as publication recorded it.",
    )
    model_object_versions: str | None = Field(
        None,
        validation_alias="MODEL_OBJECT_VERSIONS",
        description="JSON: file name -> S3 object version, as publication recorded them.",
    )
    project: str | None = Field(None, validation_alias="MLOPS_PROJECT", pattern=PROJECT_RE.pattern)
    env: str | None = Field(None, validation_alias="MLOPS_ENV", pattern=ENV_RE.pattern)
    pointer_poll_seconds: float = Field(
        0.0,
        validation_alias="MLOPS_POINTER_POLL_SECONDS",
        ge=0,
        description="Poll the env's pointer this often and hot-swap to a new version; 0 = off.",
    )
    host: str = Field("0.0.0.0", validation_alias="HOST")
    port: int = Field(DEFAULT_PORT, validation_alias="PORT", ge=1, le=65535)
    max_batch: int = Field(1000, validation_alias="MLOPS_MAX_BATCH", ge=1)
    max_body_bytes: int = Field(
        1 << 20,
        validation_alias="MLOPS_MAX_BODY_BYTES",
        ge=1024,
        description="Largest request body; larger ones get 413 while being read.",
    )
    read_timeout_seconds: float = Field(
        10.0,
        validation_alias="MLOPS_READ_TIMEOUT_SECONDS",
        gt=0,
        description="A request (headers and body) must arrive within this of its first "
        "byte, and a new connection must start one within it; slower clients are cut off.",
    )
    keepalive_seconds: float = Field(
        5.0,
        validation_alias="MLOPS_KEEPALIVE_SECONDS",
        gt=0,
        description="Idle time after which a keep-alive connection is closed.",
    )
    workers: int = Field(
        0,
        validation_alias="MLOPS_WORKERS",
        ge=0,
        le=64,
        description="Worker processes, one per core; 0 = as many as this process may use.",
    )
    reuse_port: bool = Field(
        False,
        validation_alias="MLOPS_REUSE_PORT",
        description="Set by the supervisor for its workers: bind with SO_REUSEPORT.",
    )
    multiprocess_dir: Path | None = Field(
        None,
        validation_alias="PROMETHEUS_MULTIPROC_DIR",
        description="Set by the supervisor for its workers: where they share metrics.",
    )
    access_log: bool = Field(
        True, validation_alias="MLOPS_ACCESS_LOG", description="One log line per request."
    )
    # Not a variable of its own: the platform's settings (mlops_core.config: names, keys,
    # logging), read from the same environment by load_settings.
    config: PlatformSettings = Field(default_factory=PlatformSettings.load, exclude=True)

    @model_validator(mode="after")
    def _source(self) -> ServingSettings:
        if (self.project is None) != (self.env is None):
            raise ValueError("MLOPS_PROJECT and MLOPS_ENV go together: set both or neither")
        if self.model_uri is None and self.project is None:
            raise ValueError(
                "no model to serve: set MODEL_URI (a version folder) "
                "or MLOPS_PROJECT and MLOPS_ENV (follow the env's pointer)"
            )
        if self.model_uri is not None and self.model_uri.startswith("s3://"):
            missing = [
                alias
                for alias, value in (
                    ("MODEL_SHA256", self.model_sha256),
                    ("MODEL_MANIFEST_SHA256", self.model_manifest_sha256),
                    ("MODEL_OBJECT_VERSIONS", self.model_object_versions),
                )
                if not value
            ]
            if missing:
                raise ValueError(
                    f"an s3:// MODEL_URI is served only with its publication pins; "
                    f"{', '.join(missing)} not set (the controller writes them into the "
                    "task definition; or set MLOPS_PROJECT and MLOPS_ENV to follow the pointer)"
                )
        return self

    @property
    def pins(self) -> Pins | None:
        """The publication pins of an s3:// MODEL_URI."""
        if not (self.model_manifest_sha256 and self.model_object_versions):
            return None
        return Pins.from_values(
            self.model_manifest_sha256, self.model_object_versions, where="MODEL_OBJECT_VERSIONS"
        )

    @property
    def follows_pointer(self) -> bool:
        """True when the model comes from the pointer (MODEL_URI unset)."""
        return self.model_uri is None

    @property
    def platform(self) -> Platform:
        return self.config.names()

    @property
    def source(self) -> str:
        if self.model_uri is not None:
            return self.model_uri
        return f"pointer {self.project}/{self.env}"


def load_settings(environ: Mapping[str, str] | None = None, **overrides: object) -> ServingSettings:
    """Settings from ``environ`` (default: the process environment), with explicit
    ``overrides`` by field name taking precedence (None = not given)."""
    fields = ServingSettings.model_fields
    source = os.environ if environ is None else environ
    data: dict[str, object] = {
        str(f.validation_alias): value
        for f in fields.values()
        if f.validation_alias is not None
        and (value := source.get(str(f.validation_alias))) not in (None, "")
    }
    data["config"] = PlatformSettings.load()  # the same process environment
    for name, given in overrides.items():
        if given is not None:
            data[str(fields[name].validation_alias)] = given
    try:
        return ServingSettings.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = str(err["loc"][0]) if err["loc"] else None
        where = str(fields[loc].validation_alias) if loc in fields else loc
        msg = err["msg"].removeprefix("Value error, ")
        raise InvalidInput(
            f"invalid serving settings: {msg}",
            where=where,
            hint="see serving/README.md for the environment variables",
        ) from None
