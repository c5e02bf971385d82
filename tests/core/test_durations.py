"""One duration grammar: what the CLI's --since, the drift job's window and a
ModelDeployment's drift window accept is the same set, so a window the controller takes
is one the job runs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from controller.api import DriftPolicy
from mlops_core.durations import MAX_DURATION, parse_duration
from mlops_core.errors import InvalidInput
from mlopsctl import context
from monitoring.settings import DriftSettings

GOOD = {
    "90s": timedelta(seconds=90),
    "10m": timedelta(minutes=10),
    "24h": timedelta(hours=24),
    "1.5h": timedelta(minutes=90),
    "7d": timedelta(days=7),
    "2w": timedelta(days=14),
    "3660d": MAX_DURATION,
}
BAD = ["0h", "0.0m", "-1h", "1y", "", "h", "24", "1e3h", "3661d", "99999999999999999999d", "24 h",
       # no time at all once whole microseconds (what a timedelta holds)
       "0.0000001s", "0.0000004s",
       # digits that are not ASCII: the API server's pattern refuses them
       "\u0663h", "\uff11h", "\u09e8\u09ea" + "h"]  # fmt: skip


@pytest.mark.parametrize("text", GOOD)
def test_every_home_accepts_the_same_durations(text):
    assert parse_duration(text) == GOOD[text]
    assert context.parse_duration(text) == GOOD[text]
    assert DriftSettings(window=text).window == GOOD[text]
    assert DriftPolicy(window=text).window == text


@pytest.mark.parametrize("text", BAD)
def test_every_home_refuses_the_same_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)
    with pytest.raises(InvalidInput) as cli:
        context.parse_duration(text)
    assert cli.value.what.startswith("--since")
    with pytest.raises(ValidationError):
        DriftSettings(window=text)
    with pytest.raises(ValidationError):
        DriftPolicy(window=text)


def test_a_refusal_quotes_at_most_40_characters_of_what_was_given():
    for text in ("0." + "0" * 5000 + "1h", "9" * 5000 + "h", "x" * 5000):
        with pytest.raises(ValueError) as refused:
            parse_duration(text)
        assert len(str(refused.value)) < 120, str(refused.value)[:200]
