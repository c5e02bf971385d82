"""baseline.json: the per-feature reference distribution for drift checks."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pytest

import training
from mlops_core.artifacts import BASELINE_FILE
from mlops_core.project import load_project
from training.baseline import HISTOGRAM_BINS, QUANTILES, SAMPLE_SIZE
from training.dataset import load_dataset

NUMERIC_KEYS = {
    "type",
    "count",
    "missing",
    "mean",
    "std",
    "min",
    "max",
    "quantiles",
    "histogram",
    "psi_bins",
    "sample",
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, csv_text):
    import yaml
    from training_helpers import example_config

    root = tmp_path_factory.mktemp("baseline")
    (root / "data").mkdir()
    (root / "data" / "usedcars.csv").write_text(csv_text)
    (root / "project.yaml").write_text(yaml.safe_dump(example_config()))
    training.train(root, created_at=datetime(2026, 11, 28, tzinfo=UTC))
    return root, json.loads((root / "artifacts" / BASELINE_FILE).read_text())


def test_structure(trained):
    root, doc = trained
    cfg = load_project(root)
    assert doc["schema_version"] == 1
    assert doc["rows"] == 1600  # the training split
    assert doc["sample_size"] == SAMPLE_SIZE
    assert set(doc["features"]) == {f.name for f in cfg.features}
    for spec in cfg.features:
        stats = doc["features"][spec.name]
        assert stats["count"] + stats["missing"] == 1600
        if spec.type == "category":
            assert stats["type"] == "category"
            assert set(stats["counts"]) == set(spec.categories or [])
            assert sum(stats["counts"].values()) == stats["count"]
            assert sum(stats["frequencies"].values()) == pytest.approx(1.0)
        else:
            assert set(stats) == NUMERIC_KEYS
            assert stats["type"] == spec.type
            assert stats["min"] <= stats["quantiles"]["0.5"] <= stats["max"]
            assert set(stats["quantiles"]) == {f"{q:g}" for q in QUANTILES}
            edges, counts = stats["histogram"]["bin_edges"], stats["histogram"]["counts"]
            assert len(edges) == HISTOGRAM_BINS + 1 and len(counts) == HISTOGRAM_BINS
            assert edges[0] == stats["min"] and edges[-1] == stats["max"]
            assert sum(counts) == stats["count"]
            assert len(stats["sample"]) == min(SAMPLE_SIZE, stats["count"])
            assert stats["sample"] == sorted(stats["sample"])
            bins = stats["psi_bins"]
            assert bins["edges"] == sorted(set(bins["edges"])) and len(bins["edges"]) <= 9
            assert len(bins["fractions"]) == len(bins["edges"]) + 1
            assert sum(bins["fractions"]) == pytest.approx(1.0)
    assert doc["target"]["name"] == "price" and doc["target"]["missing"] == 0
    assert doc["predictions"]["count"] == 400  # the holdout


def test_statistics_match_the_training_rows(trained):
    root, doc = trained
    cfg = load_project(root)
    frame = load_dataset(cfg.data.source, cfg, root).frame
    # Optional features really have missing values in the generated data, and the
    # baseline counts them (over the 80% training split).
    cyl = doc["features"]["engine_cylinders"]
    assert 0 < cyl["missing"] < frame["engine_cylinders"].isna().sum()
    year = doc["features"]["year"]
    assert frame["year"].min() <= year["min"] and year["max"] <= frame["year"].max()
    assert abs(year["mean"] - frame["year"].mean()) < 0.5
    sample = np.array(doc["features"]["odometer"]["sample"])
    assert set(sample) <= set(frame["odometer"])
    fuel = doc["features"]["fuel"]["frequencies"]
    assert fuel["gas"] > 0.6 and max(fuel, key=fuel.get) == "gas"


def test_psi_bins_are_the_training_fractions_with_ties_merged():
    from training.baseline import psi_bins

    values = np.array([1.0] * 55 + [2.0] * 30 + [3.0] * 15)
    bins = psi_bins(values)
    # Deciles of this column are only 1, 2 and 3: three edges, four right-closed bins.
    assert bins["edges"] == [1.0, 2.0, 3.0]
    assert bins["fractions"] == pytest.approx([0.55, 0.3, 0.15, 0.0])
