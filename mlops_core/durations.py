"""Durations as people write them: ``90s``, ``10m``, ``24h``, ``7d``, ``2w``, ``1.5h``.

One home for the grammar and its bounds: the CLI's ``--since``, the drift job's
``MLOPS_DRIFT_WINDOW`` and a ModelDeployment's ``spec.monitoring.drift.window`` all parse
with :func:`parse_duration`, so a window the controller accepts is one the job runs.
"""

from __future__ import annotations

import re
from datetime import timedelta

#: The written form, as an API pattern (the CRD's, kubectl validates it).
DURATION_PATTERN = r"^\d+(\.\d+)?[smhdw]$"
_DURATION_RE = re.compile(DURATION_PATTERN)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
#: Longer than any window a person means (a capture retention is months), short enough
#: that a window's start is a date every tool can hold.
MAX_DURATION = timedelta(days=3660)


def parse_duration(text: str) -> timedelta:
    """``text`` as a timedelta; ValueError (a sentence) unless it is a positive duration
    of at most :data:`MAX_DURATION`."""
    text = str(text).strip()
    match = _DURATION_RE.match(text)
    if match is None:
        raise ValueError(f"{text[:40]!r} is not a duration like 30m, 24h or 7d")
    number = float(text[:-1])
    unit = _UNITS[text[-1]]
    if number <= 0:
        raise ValueError(f"{text!r} is not a duration: it must be longer than 0")
    try:
        value = timedelta(**{unit: number})
    except OverflowError:
        value = MAX_DURATION * 2
    if value > MAX_DURATION:
        raise ValueError(f"{text[:40]!r} is longer than {MAX_DURATION.days} days")
    return value
