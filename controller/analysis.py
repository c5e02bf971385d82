"""Judging one step of a progressive rollout: the new revision against the stable one.

Pure: the numbers come from :mod:`controller.shifts` (the load balancer's per-target-group
metrics in CloudWatch, and the capture); this module turns them into a verdict with every
measured value, which the status keeps (``status.rollout.steps``):

- ``Inconclusive`` when the new revision served fewer than ``minRequests`` over the step:
  too little traffic to tell, so the step waits (neither passes nor fails), as Flagger
  users ask instead of halting on "no values found";
- ``Fail`` when any threshold of ``spec.analysis`` is crossed, naming each;
- ``Pass`` otherwise.

The 5xx share counts the target's 5xx and the load balancer's own (a target that refused
or timed out is the revision's failure too). Latency is the p99 of ``TargetResponseTime``.
The prediction shift is the KS statistic between the two revisions' captured predictions
(regression) or the Jensen-Shannon distance of their predicted labels (classification):
both in [0, 1], whatever the model's scale.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from controller.api import Analysis, RevisionValues

PASS, FAIL, INCONCLUSIVE = "Pass", "Fail", "Inconclusive"
#: Predictions each revision needs before a shift is computed.
MIN_PREDICTIONS = 20


@dataclass(frozen=True)
class Verdict:
    verdict: str  # Pass | Fail | Inconclusive
    message: str


def error_rate(values: RevisionValues) -> float | None:
    return values.errors / values.requests if values.requests else None


def judge(
    analysis: Analysis,
    canary: RevisionValues,
    stable: RevisionValues,
    prediction_shift: float | None,
) -> Verdict:
    """The verdict of one step, with a message that gives every value it rests on."""
    if canary.requests < analysis.min_requests:
        return Verdict(
            INCONCLUSIVE,
            f"waiting for traffic: the new revision served {canary.requests} of the "
            f"{analysis.min_requests} requests (minRequests) a verdict needs",
        )
    failed: list[str] = []
    seen: list[str] = []
    rate = error_rate(canary) or 0.0
    base = error_rate(stable) or 0.0
    seen.append(f"5xx {rate:.2%} vs {base:.2%}")
    if rate > analysis.max_error_rate + 1e-12:
        failed.append(f"5xx share {rate:.2%} is above {analysis.max_error_rate:.2%} (maxErrorRate)")
    elif rate - base > analysis.max_error_rate_increase + 1e-12:
        failed.append(
            f"5xx share {rate:.2%} exceeds the stable {base:.2%} by more than "
            f"{analysis.max_error_rate_increase:.2%} (maxErrorRateIncrease)"
        )
    p99, base_p99 = canary.latency_p99_ms, stable.latency_p99_ms
    if p99 is not None:
        seen.append(f"p99 {p99:.1f} ms vs {base_p99:.1f} ms" if base_p99 else f"p99 {p99:.1f} ms")
        if analysis.max_latency_p99_ms is not None and p99 > analysis.max_latency_p99_ms:
            failed.append(
                f"p99 latency {p99:.1f} ms is above {analysis.max_latency_p99_ms:g} ms "
                "(maxLatencyP99Ms)"
            )
        ratio = analysis.max_latency_p99_ratio
        if ratio is not None and base_p99 and p99 > ratio * base_p99:
            failed.append(
                f"p99 latency {p99:.1f} ms is more than {ratio:g}x the stable "
                f"{base_p99:.1f} ms (maxLatencyP99Ratio)"
            )
    if analysis.max_prediction_shift is not None:
        # A revision that answers 5xx captures no predictions: what already failed must
        # not wait for a shift that can never be measured.
        if prediction_shift is None and not failed:
            return Verdict(
                INCONCLUSIVE,
                f"waiting for captured predictions of both revisions ({MIN_PREDICTIONS} "
                "each) to compare them; " + ", ".join(seen),
            )
        if prediction_shift is not None:
            seen.append(f"prediction shift {prediction_shift:.3f}")
        if prediction_shift is not None and prediction_shift > analysis.max_prediction_shift:
            failed.append(
                f"prediction shift {prediction_shift:.3f} is above "
                f"{analysis.max_prediction_shift:g} (maxPredictionShift)"
            )
    if failed:
        return Verdict(FAIL, "; ".join(failed))
    return Verdict(PASS, f"{canary.requests} requests: " + ", ".join(seen))


def prediction_shift(
    canary: Sequence[float] | Sequence[str], stable: Sequence[float] | Sequence[str], task: str
) -> float | None:
    """How far apart two revisions' predictions are (None: too few of either)."""
    # SciPy takes over a second to import: every mlopsctl command imports this module
    # (through the controller), only a judged step needs it.
    from monitoring.stats import js_distance, ks_2samp_sorted

    if len(canary) < MIN_PREDICTIONS or len(stable) < MIN_PREDICTIONS:
        return None
    if task == "classification":
        labels = sorted({str(v) for v in canary} | {str(v) for v in stable})
        a, b = Counter(str(v) for v in canary), Counter(str(v) for v in stable)
        return float(
            js_distance(
                np.array([a[x] for x in labels], dtype=float),
                np.array([b[x] for x in labels], dtype=float),
            )
        )
    x = np.sort(np.asarray(canary, dtype=float))
    y = np.sort(np.asarray(stable, dtype=float))
    statistic, _ = ks_2samp_sorted(y, x)
    return float(statistic)
