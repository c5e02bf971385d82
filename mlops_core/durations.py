"""Durations as people write them: ``90s``, ``10m``, ``24h``, ``7d``, ``2w``, ``1.5h``.

One home for the grammar and its bounds: the CLI's ``--since``, the drift job's
``MLOPS_DRIFT_WINDOW`` and a ModelDeployment's ``spec.monitoring.drift.window`` all parse
with :func:`parse_duration`, so a window the controller accepts is one the job runs.
"""

from __future__ import annotations

import re
from datetime import timedelta

#: The written form, as an API pattern (the CRD's, kubectl validates it). ASCII digits
#: spelled out: ``\d`` is every Unicode digit to Python's and pydantic's engines
#: ('٣h', '１h') but ASCII only to the API server's, so the homes would disagree.
DURATION_PATTERN = r"^[0-9]+(\.[0-9]+)?[smhdw]$"
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
    try:
        value = timedelta(**{unit: number})
    except OverflowError:
        value = MAX_DURATION * 2
    # The value, not the number: '0.0000001s' is a positive number but no time at all
    # (a timedelta counts whole microseconds).
    if value <= timedelta(0):
        raise ValueError(f"{text[:40]!r} is not a duration: it must be longer than 0")
    if value > MAX_DURATION:
        raise ValueError(f"{text[:40]!r} is longer than {MAX_DURATION.days} days")
    return value
