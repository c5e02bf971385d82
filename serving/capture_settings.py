"""Inference capture's settings (``MLOPS_CAPTURE_*``), apart from the writer.

Their own module because the container's entry point checks them before it forks the
workers, and must not import :mod:`serving.capture` to do so: that imports
prometheus_client, which picks its multiprocess mode at its first import, from an
environment the supervisor sets only just before the fork (:mod:`serving.server`).
"""

from __future__ import annotations

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from mlops_core.config import settings_error

#: The capture writer's last flush at shutdown, at most (after uvicorn's graceful
#: shutdown, within the supervisor's serving.server.STOP_SECONDS): what is not written
#: by then is counted as write_failed.
CLOSE_SECONDS = 12.0


class CaptureSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MLOPS_CAPTURE_", extra="ignore", frozen=True)

    percent: float = Field(
        0.0, ge=0, le=100, description="Share of requests captured, in percent; 0 = off."
    )
    buffer_records: int = Field(
        20_000, ge=1, description="Records held in memory at most; beyond, new ones drop."
    )
    batch_records: int = Field(5_000, ge=1, description="Records per file, at most.")
    flush_seconds: float = Field(
        60.0, gt=0, le=60, description="Buffered records are written at least this often."
    )
    writer_process: bool = Field(
        True,
        description="Convert and write one-record bodies in a process of the writer's own "
        "(serving/capture_process.py), not in the worker's writer thread.",
    )

    @property
    def enabled(self) -> bool:
        return self.percent > 0


def check_settings() -> CaptureSettings:
    """The environment's capture settings, or :class:`InvalidInput` naming the variable
    (the entry point checks them before forking workers, which would raise a traceback)."""
    try:
        return CaptureSettings()
    except ValidationError as exc:
        raise settings_error(
            CaptureSettings, exc, hint="see serving/README.md for the environment variables"
        ) from None
