"""The drift statistics against scipy's own, on the edge cases that break shortcuts."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from monitoring import stats

RNG = np.random.default_rng(7)


def _cases() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    ref_int = RNG.integers(0, 6, 1000).astype(float)
    return {
        "continuous": (RNG.normal(size=1000), RNG.normal(0.1, 1.0, 40_000)),
        "shifted": (RNG.normal(size=1000), RNG.normal(0.5, 1.3, 40_000)),
        "integer ties": (ref_int, RNG.integers(0, 7, 40_000).astype(float)),
        "ties across samples": (np.repeat([1.0, 2.0, 3.0], [300, 400, 300]),
                                np.repeat([1.0, 2.0, 3.0, 4.0], [10_000, 10_000, 10_000, 2_000])),
        "window of one value": (RNG.normal(size=1000), np.full(30_000, 0.25)),
        "window of one value equal to a reference value": (ref_int, np.full(30_000, 3.0)),
        "both constant, equal": (np.full(1000, 2.0), np.full(30_000, 2.0)),
        "both constant, different": (np.full(1000, 2.0), np.full(30_000, 5.0)),
        "window entirely above": (RNG.normal(size=1000), RNG.normal(50.0, 1.0, 20_000)),
        "small window (scipy exact)": (RNG.normal(size=1000), RNG.normal(0.2, 1.0, 300)),
        "large magnitudes": (RNG.normal(1e9, 1e6, 1000), RNG.normal(1e9, 1.1e6, 25_000)),
        "reference of one row": (np.array([0.0]), RNG.normal(size=20_000)),
    }  # fmt: skip


CASES = _cases()


@pytest.mark.parametrize("name", list(CASES))
def test_ks_statistic_and_p_value_are_scipys(name):
    ref, cur = CASES[name]
    ref, cur = np.sort(ref), np.sort(cur)
    d, p = stats.ks_2samp_sorted(ref, cur)
    want = sps.ks_2samp(ref, cur)
    assert abs(d - want.statistic) <= 1e-12
    assert p == pytest.approx(want.pvalue, rel=1e-12, abs=1e-300)


@pytest.mark.parametrize("name", list(CASES))
def test_wasserstein_is_scipys(name):
    ref, cur = CASES[name]
    got = stats.wasserstein_sorted(np.sort(ref), np.sort(cur))
    assert got == pytest.approx(sps.wasserstein_distance(ref, cur), rel=1e-9, abs=1e-9)


def test_nans_are_left_out_as_scipy_omits_them():
    ref = np.sort(RNG.normal(size=1000))
    cur = RNG.normal(0.3, 1.0, 30_000)
    cur[RNG.random(cur.size) < 0.2] = np.nan
    present, missing = stats.sort_present(cur)
    assert missing == int(np.isnan(cur).sum()) and present.size + missing == cur.size
    assert not np.isnan(present).any() and np.all(np.diff(present) >= 0)
    d, p = stats.ks_2samp_sorted(ref, present)
    want = sps.ks_2samp(ref, cur, nan_policy="omit")
    assert abs(d - want.statistic) <= 1e-12
    assert p == pytest.approx(want.pvalue, rel=1e-12)


def test_psi_over_right_closed_bins():
    edges = np.array([1.0, 2.0])
    values = np.sort(np.array([0.5, 1.0, 1.5, 2.0, 2.0, 3.0]))
    # (-inf, 1]: 0.5, 1.0; (1, 2]: 1.5, 2.0, 2.0; (2, inf): 3.0
    np.testing.assert_allclose(stats.bin_fractions_sorted(values, edges), [2 / 6, 3 / 6, 1 / 6])
    ref, cur = np.array([0.5, 0.3, 0.2]), np.array([0.2, 0.3, 0.5])
    want = sum((c - r) * np.log(c / r) for r, c in zip(ref, cur, strict=True))
    assert stats.psi(ref, cur) == pytest.approx(want)
    assert stats.psi(ref, ref) == 0.0
    # An empty bin counts as epsilon, not as infinity.
    assert np.isfinite(stats.psi(np.array([1.0, 0.0]), np.array([0.5, 0.5])))


def test_chi2_and_jensen_shannon_with_an_unseen_bucket():
    ref = np.array([600, 300, 100, 0])  # the last bucket: never seen in training
    cur = np.array([500, 300, 100, 100])
    stat, p = stats.chi2_homogeneity(ref, cur)
    want = sps.chi2_contingency(np.vstack([ref, cur]), correction=False)
    assert stat == pytest.approx(want.statistic) and p == pytest.approx(want.pvalue)
    assert p < 1e-10
    js = stats.js_distance(ref, cur)
    from scipy.spatial.distance import jensenshannon

    assert js == pytest.approx(jensenshannon(ref / ref.sum(), cur / cur.sum(), base=2))
    assert 0 < js < 1
    assert stats.js_distance(ref, ref) == pytest.approx(0.0, abs=1e-7)
    # One category on both sides: nothing to test.
    assert stats.chi2_homogeneity(np.array([5, 0]), np.array([7, 0])) == (0.0, 1.0)


def test_missing_rate_test():
    _, same = stats.missing_rate_test(50, 1000, 500, 10_000)
    _, moved = stats.missing_rate_test(50, 1000, 3000, 10_000)
    assert same > 0.5 and moved < 1e-20
    assert stats.missing_rate_test(0, 1000, 0, 10_000) == (0.0, 1.0)


def test_corrections():
    ps = [0.001, 0.01, 0.02, 0.04, 0.5]
    np.testing.assert_allclose(stats.adjust(ps, "bonferroni"), [0.005, 0.05, 0.1, 0.2, 1.0])
    # Benjamini-Hochberg by hand: p_(i) * m / i, made monotone from the top.
    np.testing.assert_allclose(stats.adjust(ps, "bh"), [0.005, 0.025, 1 / 30, 0.05, 0.5])
    assert stats.adjust([], "bh").size == 0
    with pytest.raises(ValueError):
        stats.adjust(ps, "holm")
