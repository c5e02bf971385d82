"""The HTML report: self-contained, and rendered by a real headless Chromium with no
console message (no error, no blocked fetch) and the drifted feature first."""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from drift_data import build_baseline, columns, schema_features, window_table
from tools import find_tool

from mlops_core.capture import CaptureSchema, Window
from monitoring import drift, report
from monitoring.settings import DriftSettings

FEATURES = schema_features(numeric=4)
SCHEMA = CaptureSchema("drift-demo", "20261128T060000Z-abcdef0", tuple(FEATURES))
START = datetime(2026, 12, 1, 10, tzinfo=UTC)
# Chromium's flags for a hermetic run: no network of its own, no first-run work.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--enable-logging=stderr",
    "--v=0",
]


@pytest.fixture(scope="module")
def result():
    cols = columns(FEATURES, 5_000, 1, shift={"x2": 1.0}, missing={"color": 0.2})
    table = window_table(SCHEMA, cols, START, timedelta(hours=1))
    return drift.compute(
        project="drift-demo",
        env="prod",
        version=SCHEMA.version,
        baseline=build_baseline(FEATURES),
        features=FEATURES,
        window=Window(start=START, end=START + timedelta(hours=1), table=table, files=3),
        config=DriftSettings(drift_share=0.3).decision(),
        computed_at=START + timedelta(hours=1),
    )


def test_report_is_self_contained_and_ordered(result):
    html = report.render(result)
    assert result.drifted_features == ["x2", "color"]  # x2's shift and color's missing rate
    # No external resource of any kind, and a policy that would block one.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "<script" not in html and "default-src 'none'" in html
    rows = re.findall(r'<tr class="(\w+)" data-feature="(\w+)"', html)
    assert rows[0] == ("drift", "x2") and rows[1] == ("drift", "color")
    assert html.index('id="verdict"') < html.index('id="features"')
    assert html.count("<svg") == len(FEATURES) + 1  # each feature and the predictions


def test_names_are_escaped(result):
    hostile = result.model_copy(deep=True)
    hostile.features[0].reason = "<img src=x onerror=alert(1)>"
    html = report.render(hostile)
    assert "<img src=x" not in html and "&lt;img src=x" in html


def chromium_console(tmp_path: Path, page: Path) -> tuple[str, list[str]]:
    """(DOM after load, console messages) of ``page`` in a fresh headless Chromium."""
    exe = find_tool("chromium") or find_tool("chromium-browser")
    if exe is None:
        pytest.skip(
            "chromium is not installed: make test installs it as root with apt "
            "(scripts/install-browser.sh); else apt-get install chromium"
        )
    profile = tmp_path / f"profile-{page.stem}"
    proc = subprocess.run(
        [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]


def test_report_renders_in_chromium_without_console_messages(result, tmp_path):
    # The check can fail: a page with an error and a blocked fetch is caught.
    broken = tmp_path / "broken.html"
    broken.write_text(
        report.render(result).replace(
            "</body>", '<img src="https://example.com/x.png"><p>broken</p></body>'
        )
    )
    _, messages = chromium_console(tmp_path, broken)
    assert any("Content Security Policy" in m for m in messages), messages

    page = tmp_path / "report.html"
    page.write_text(report.render(result))
    dom, messages = chromium_console(tmp_path, page)
    assert messages == []
    rendered = re.findall(r'<tr class="(\w+)" data-feature="(\w+)"', dom)
    assert rendered[0] == ("drift", "x2")
    assert "Drift detected" in dom
