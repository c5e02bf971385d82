"""``baseline.json``: the training distribution each feature is checked against for drift.

Per numeric feature: count, missing, mean, std, min, max, quantiles, a histogram (bin
edges and counts), decile bins for PSI (``psi_bins``: edges and the training fraction in
each right-closed bin, so the drift job never recomputes them) and a fixed-size seeded
sample, stored sorted, for two-sample KS tests (the drift job never re-sorts it). Per category:
count, missing and each category's count and frequency (for chi-square tests). The
target and the model's holdout predictions are summarised too, so prediction drift can
be watched: as numbers for regression, and for classification like a category whose
categories are the class labels (as strings: ``str(label)``, in the model's label
order). Feature and target statistics are over the training split, the rows the model
learned from; the predictions are the holdout's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mlops_core.features import FeatureSpec

BASELINE_SCHEMA_VERSION = 1
SAMPLE_SIZE = 1000
HISTOGRAM_BINS = 20
QUANTILES = (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)
PSI_QUANTILES = tuple(i / 10 for i in range(1, 10))


def psi_bins(present: np.ndarray) -> dict[str, list[float]]:
    """Decile edges (ties merged) and the fraction of ``present`` in each right-closed bin
    (-inf, e0], (e0, e1], ..., (e_last, inf)."""
    edges = np.unique(np.quantile(present, PSI_QUANTILES))
    counts = np.bincount(np.searchsorted(edges, present, side="left"), minlength=edges.size + 1)
    return {"edges": edges.tolist(), "fractions": (counts / present.size).tolist()}


def numeric_summary(values: np.ndarray, rng: np.random.Generator) -> dict[str, Any]:
    values = np.asarray(values, dtype=np.float64)
    present = values[~np.isnan(values)]
    summary: dict[str, Any] = {
        "type": "number",
        "count": int(present.size),
        "missing": int(values.size - present.size),
    }
    if present.size == 0:
        # Nothing to compare against: every statistic is absent rather than NaN (not JSON).
        return {
            **summary,
            "mean": None,
            "std": None,
            "min": None,
            "max": None,
            "quantiles": {},
            "histogram": {"bin_edges": [], "counts": []},
            "psi_bins": {"edges": [], "fractions": []},
            "sample": [],
        }
    counts, edges = np.histogram(present, bins=HISTOGRAM_BINS)
    take = min(SAMPLE_SIZE, present.size)
    sample = np.sort(rng.choice(present, size=take, replace=False))
    return {
        **summary,
        "mean": float(present.mean()),
        "std": float(present.std()),
        "min": float(present.min()),
        "max": float(present.max()),
        "quantiles": {
            f"{q:g}": float(v)
            for q, v in zip(QUANTILES, np.quantile(present, QUANTILES), strict=True)
        },
        "histogram": {"bin_edges": edges.tolist(), "counts": counts.tolist()},
        "psi_bins": psi_bins(present),
        "sample": sample.tolist(),
    }


def category_summary(values: pd.Series, categories: list[str]) -> dict[str, Any]:
    present = values.dropna()
    counts = present.value_counts()
    total = int(present.size)
    return {
        "type": "category",
        "count": total,
        "missing": int(values.size - total),
        "counts": {c: int(counts.get(c, 0)) for c in categories},
        "frequencies": {c: (int(counts.get(c, 0)) / total if total else 0.0) for c in categories},
    }


def build(
    frame: pd.DataFrame,
    features: list[FeatureSpec],
    target: str,
    predictions: np.ndarray,
    seed: int,
    labels: list[Any] | None = None,
) -> dict[str, Any]:
    """The baseline document for the training rows in ``frame``; ``labels`` (the
    classes, for a classifier) make the target and predictions category summaries."""

    # One generator per column, seeded from (seed, column position), so adding a feature
    # does not change the other features' samples.
    def rng(i: int) -> np.random.Generator:
        return np.random.default_rng([seed, i])

    out: dict[str, Any] = {}
    for i, spec in enumerate(features):
        col = frame[spec.name]
        if spec.type == "category":
            out[spec.name] = category_summary(col, list(spec.categories or []))
        else:
            out[spec.name] = {**numeric_summary(col.to_numpy(), rng(i)), "type": spec.type}
    if labels is None:
        target_doc = numeric_summary(frame[target].to_numpy(), rng(len(features)))
        predicted = numeric_summary(predictions, rng(len(features) + 1))
    else:
        classes = [str(label) for label in labels]
        target_doc = category_summary(frame[target].astype(str), classes)
        predicted = category_summary(pd.Series(predictions).astype(str), classes)
    return {
        "schema_version": BASELINE_SCHEMA_VERSION,
        "rows": int(len(frame)),
        "sample_size": SAMPLE_SIZE,
        "seed": seed,
        "features": out,
        "target": {"name": target, **target_doc},
        "predictions": predicted,
    }
