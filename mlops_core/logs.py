"""structlog configuration: JSON in containers and pipes, key=value on a terminal."""

from __future__ import annotations

import logging
import sys
from typing import TextIO, cast

import structlog
from structlog.typing import Processor


class _Stderr:
    """``sys.stderr`` looked up at every write, not captured once at configure time:
    whatever replaces it later (pytest's capture, a daemon's redirection) gets the lines,
    and a replaced stream that has been closed is never written to."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure(level: str | None = None, json: bool | None = None) -> None:
    """Configure structlog and stdlib logging once per process, from the entry point's
    settings (``MLOPS_LOG_LEVEL``, default INFO; ``MLOPS_LOG_FORMAT``: json, or console;
    None: JSON unless stderr is a terminal)."""
    level_name = (level or "INFO").upper()
    if json is None:
        json = not sys.stderr.isatty()
    renderer = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=False, pad_event=0)
    )
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    level_no = logging.getLevelNamesMapping().get(level_name, logging.INFO)
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level_no),
        # One write per line (PrintLogger writes the line and its newline apart): a line
        # that another thread logs through the stdlib handler cannot land inside it.
        logger_factory=structlog.WriteLoggerFactory(file=cast(TextIO, _Stderr())),
        cache_logger_on_first_use=False,
    )
    # Libraries that log through the standard library (uvicorn, kopf, botocore) get the
    # same renderer, so a container's output is one format a log pipeline can parse.
    handler = logging.StreamHandler(_Stderr())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    handler._mlops = True  # type: ignore[attr-defined]  # ours, to replace on reconfigure
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if not getattr(h, "_mlops", False)] + [handler]
    root.setLevel(level_no)
    # botocore and urllib3 are chatty at INFO/DEBUG; keep them quiet unless asked.
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


def get_logger(name: str | None = None, **bound):
    return structlog.get_logger(name).bind(**bound) if bound else structlog.get_logger(name)
