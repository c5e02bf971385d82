"""The statistics of the drift job, on arrays; no I/O.

Numeric columns arrive as a sorted reference sample (stored sorted in ``baseline.json``
at training) and a window sorted once per run. With both sorted, every statistic is a
few binary searches of the reference's values into the window, O(m log n) after the
window's one sort, instead of scipy's sort of both samples and two searches of all
n + m points into each:

- :func:`ks_2samp_sorted`: the two-sample KS statistic D, equal to
  ``scipy.stats.ks_2samp``'s (the same fractions, computed the same way), and its
  p-value as scipy computes it for those sizes: scipy itself up to its exact-method size,
  Smirnov's asymptotic distribution (``kstwo.sf(D, round(n*m/(n+m)))``) beyond.
- :func:`wasserstein_sorted`: the 1-Wasserstein distance between the two empirical
  distributions, the integral of |F_ref - F_cur|, from prefix sums of the window.
- :func:`psi`: the population stability index over the baseline's quantile bins.

Categories: a chi-square test of homogeneity (reference counts against window counts)
and the Jensen-Shannon distance, both with a bucket for values the reference never saw.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats
from scipy.spatial.distance import jensenshannon

#: Largest sample scipy's ``ks_2samp(method="auto")`` computes exactly; we defer to
#: scipy below it so both the statistic and the p-value are scipy's own.
SCIPY_EXACT_MAX = 10_000
#: Fractions below this count as this in PSI (an empty bin would be infinite).
PSI_EPSILON = 1e-4


def sort_present(values: np.ndarray, *, in_place: bool = False) -> tuple[np.ndarray, int]:
    """``values`` sorted without NaNs (one sort: NaNs sort last), and how many were NaN.
    ``in_place`` sorts the caller's float64 array itself instead of a copy."""
    if in_place and values.dtype == np.float64 and values.flags.writeable:
        values.sort()
        ordered = values
    else:
        ordered = np.sort(np.asarray(values, dtype=np.float64))
    present = ordered.size - int(np.count_nonzero(np.isnan(ordered)))
    return ordered[:present], ordered.size - present  # a view: no copy


def ks_2samp_sorted(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """(D, p-value) of the two-sided two-sample KS test; both inputs sorted, no NaNs."""
    m, n = reference.size, current.size
    if max(m, n) <= SCIPY_EXACT_MAX:
        res = stats.ks_2samp(reference, current)
        return float(res.statistic), float(res.pvalue)
    # F_ref at each reference value, and just below it; F_cur there, from the window.
    f_ref = np.searchsorted(reference, reference, side="right") / m
    f_ref_below = np.searchsorted(reference, reference, side="left") / m
    f_cur = np.searchsorted(current, reference, side="right") / n
    f_cur_below = np.searchsorted(current, reference, side="left") / n
    # The ECDF difference is a step function: its extremes are at a reference value or
    # at the last window value before one (F_ref is constant in between).
    # Window values above the last reference value are covered by it (F_ref = 1 there,
    # F_cur only grows), those below the first by f_ref_below = 0.
    d = max(
        float(np.max(np.abs(f_ref - f_cur))),
        float(np.max(np.abs(f_ref_below - f_cur_below))),
    )
    en = m * n / (m + n)
    p = float(np.clip(stats.kstwo.sf(d, np.round(en)), 0.0, 1.0))
    return d, p


def wasserstein_sorted(reference: np.ndarray, current: np.ndarray) -> float:
    """The 1-Wasserstein distance of two sorted samples without NaNs (scipy's
    ``wasserstein_distance``), in O(n) for the window's prefix sums plus O(m log n)."""
    m, n = reference.size, current.size
    shift = float(reference[m // 2])  # centred prefix sums lose less precision
    csum = np.subtract(current, shift)
    np.cumsum(csum, out=csum)  # csum[k - 1]: sum of the k smallest, centred

    def area(x: np.ndarray) -> np.ndarray:
        """Integral of F_cur from -inf to x (centred coordinates)."""
        k = np.searchsorted(current, x, side="right")
        below = np.where(k > 0, csum[np.maximum(k - 1, 0)], 0.0)
        return (k * (x - shift) - below) / n

    values, counts = np.unique(reference, return_counts=True)
    below = np.cumsum(counts)  # reference values <= each distinct value
    total = float(area(values[:1])[0])  # left of the reference: F_ref = 0
    if values.size > 1:
        lo, hi, k = values[:-1], values[1:], below[:-1]
        level = k / m  # F_ref on [lo, hi)
        # First window value where F_cur reaches the level: count(cur <= x) >= ceil(k n / m).
        need = -((-k * n) // m)
        cross = np.clip(current[need - 1], lo, hi)
        a_lo, a_cross, a_hi = area(lo), area(cross), area(hi)
        total += float(
            np.sum(
                level * (cross - lo) - (a_cross - a_lo) + (a_hi - a_cross) - level * (hi - cross)
            )
        )
    top = np.array([max(float(current[-1]), float(values[-1]))])  # right of it: F_ref = 1
    last = values[-1:]
    total += float((top[0] - last[0]) - (area(top)[0] - area(last)[0]))
    return max(total, 0.0)


def bin_fractions_sorted(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Fractions of sorted ``values`` in the right-closed bins (-inf, e0], (e0, e1], ...,
    (e_last, inf): the layout of the baseline's ``psi_bins``."""
    upto = np.searchsorted(values, edges, side="right")
    counts = np.diff(np.concatenate(([0], upto, [values.size])))
    return counts / max(values.size, 1)


def psi(reference_fractions: np.ndarray, current_fractions: np.ndarray) -> float:
    ref = np.clip(np.asarray(reference_fractions, dtype=np.float64), PSI_EPSILON, None)
    cur = np.clip(np.asarray(current_fractions, dtype=np.float64), PSI_EPSILON, None)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def quantiles_sorted(values: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Quantiles of sorted values (linear interpolation, numpy's default)."""
    if values.size == 0:
        return np.full(probabilities.shape, np.nan)
    pos = probabilities * (values.size - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, values.size - 1)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


def chi2_homogeneity(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """Chi-square test that two count vectors (same categories) come from one
    distribution. Categories neither side has are left out; one category left: no test
    possible, (0, 1)."""
    table = np.vstack([reference, current]).astype(np.float64)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 0.0, 1.0
    res = stats.chi2_contingency(table, correction=False)
    return float(res.statistic), float(res.pvalue)


def js_distance(reference: np.ndarray, current: np.ndarray) -> float:
    """Jensen-Shannon distance (base 2, in [0, 1]) of two count or frequency vectors."""
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    if ref.sum() == 0 or cur.sum() == 0:
        return 0.0
    return float(jensenshannon(ref, cur, base=2))


def missing_rate_test(
    reference_missing: int, reference_total: int, current_missing: int, current_total: int
) -> tuple[float, float]:
    """Chi-square test of equal missing rates (2x2 table)."""
    return chi2_homogeneity(
        np.array([reference_missing, reference_total - reference_missing]),
        np.array([current_missing, current_total - current_missing]),
    )


def adjust(p_values: Sequence[float], method: str) -> np.ndarray:
    """Corrected p-values of one family: ``bonferroni`` or ``bh`` (Benjamini-Hochberg,
    scipy's ``false_discovery_control``)."""
    ps = np.asarray(p_values, dtype=np.float64)
    if ps.size == 0:
        return ps
    if method == "bonferroni":
        return np.minimum(ps * ps.size, 1.0)
    if method == "bh":
        return stats.false_discovery_control(ps, method="bh")
    raise ValueError(f"unknown correction {method!r}")
