"""Helpers shared by the training tests (a uniquely named module, importable from them)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import yaml

EXAMPLE = Path(__file__).resolve().parents[2] / "projects" / "usedcar-price"
ROWS = 2000
SEED = 3


def read_rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def write_rows(rows: list[list[str]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def example_config(**model: object) -> dict:
    """The example's project.yaml with a small forest (fast tests), as a dict."""
    doc = yaml.safe_load((EXAMPLE / "project.yaml").read_text())
    doc["model"].update({"n_estimators": 20, **model})
    return doc
