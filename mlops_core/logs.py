"""structlog configuration: JSON in containers and pipes, key=value on a terminal."""

from __future__ import annotations

import logging
import os
import sys

import structlog


def configure(level: str | None = None, json: bool | None = None) -> None:
    """Configure structlog and stdlib logging once per process.

    ``MLOPS_LOG_FORMAT`` = ``json`` | ``console`` overrides the TTY detection;
    ``MLOPS_LOG_LEVEL`` sets the level (default INFO).
    """
    level_name = (level or os.environ.get("MLOPS_LOG_LEVEL", "INFO")).upper()
    fmt = os.environ.get("MLOPS_LOG_FORMAT")
    if json is None:
        json = fmt == "json" if fmt else not sys.stderr.isatty()
    renderer = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=False, pad_event=0)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level_name, logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(
        level=level_name, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s"
    )
    # botocore and urllib3 are chatty at INFO/DEBUG; keep them quiet unless asked.
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


def get_logger(name: str | None = None, **bound):
    return structlog.get_logger(name).bind(**bound) if bound else structlog.get_logger(name)
