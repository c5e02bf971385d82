"""Fixtures for the training tests: the sample-data generator, config and small projects."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from training_helpers import ROWS, SEED, example_config

from training import sample_data


@pytest.fixture(scope="session")
def generator() -> ModuleType:
    return sample_data


@pytest.fixture(scope="session")
def csv_text(generator) -> str:
    """A small dataset from the sample-data generator (2,000 rows)."""
    return generator.to_csv(generator.generate(ROWS, SEED))


ProjectFactory = Callable[..., Path]


@pytest.fixture
def make_project(tmp_path, csv_text) -> ProjectFactory:
    """Write a project folder (project.yaml + data/usedcars.csv) and return its path."""

    def make(
        data: str | bytes | None = None, config: dict | None = None, name: str = "proj"
    ) -> Path:
        root = tmp_path / name
        (root / "data").mkdir(parents=True)
        (root / "project.yaml").write_text(yaml.safe_dump(config or example_config()))
        payload = csv_text if data is None else data
        path = root / "data" / "usedcars.csv"
        if isinstance(payload, bytes):
            path.write_bytes(payload)
        else:
            path.write_text(payload)
        return root

    return make
