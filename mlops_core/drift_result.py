"""The drift result: what one run of the drift job found, where it is, and how to read it.

Written by the drift job (``monitoring``), read by ``mlopsctl drift``, the HTML report and
the controller (the ``Drifted`` condition). One run writes, under the partition of its
window's end (UTC)::

    {project}/drift/{env}/{version}/yyyy/mm/dd/hh/{end:yyyymmddThhmmssZ}-{run id}/
        report.html     the human-readable report (self-contained)
        drift.json      :class:`DriftResult`, written last: a run folder with it is complete

Both are written once (conditional puts). :func:`latest` finds the newest complete result
of a (project, env, version) by walking the partitions from the newest, so it costs a few
LIST calls however many runs there were.

How a result decides (the job's rules, recorded in ``config`` so a result explains
itself): each column gets one distribution test (KS for numbers, chi-square for
categories) and, where the window has missing values or the baseline had them, a
missing-rate test. All p-values of a run are corrected together (Bonferroni or
Benjamini-Hochberg). A column drifted when a corrected p-value is below ``alpha`` *and*
its effect size reaches the threshold (normalised Wasserstein, PSI or KS D for numbers,
Jensen-Shannon distance for categories, the absolute difference for missing rates), so
a large window cannot flag a negligible shift. ``drift_share`` is the share of tested
features that drifted; ``dataset_drift`` is ``drift_share >= config.drift_share`` with at
least one drifted feature. The run's verdict is ``drift`` when the dataset drifted or the
predictions did, ``insufficient_data`` when no feature had ``config.min_rows`` values in
the window (never reported as no drift), else ``no_drift``.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import Literal

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlops_core import aws
from mlops_core.errors import IntegrityError
from mlops_core.naming import Platform

DRIFT_RESULT_SCHEMA_VERSION = 1
#: A ModelDeployment's drift rules (spec.monitoring.drift) reach the job as MLOPS_DRIFT_*
#: variables of the serving container in the env's live revision: the controller pins
#: them there, the job reads them from there (monitoring.job.deployed_rules).
RULES_ENV_PREFIX = "MLOPS_DRIFT_"
SERVING_CONTAINER = "serving"
RESULT_FILE = "drift.json"
REPORT_FILE = "report.html"

Status = Literal["drift", "ok", "too_few_rows"]
Verdict = Literal["drift", "no_drift", "insufficient_data"]
Correction = Literal["bonferroni", "bh"]
NumericEffect = Literal["wasserstein", "psi", "ks"]

_STRICT = ConfigDict(extra="forbid")


class StatTest(BaseModel):
    model_config = _STRICT

    name: Literal["ks", "chi2", "missing_rate"]
    statistic: float
    p_value: float
    p_adjusted: float | None = Field(None, description="After the run's correction.")


class Effect(BaseModel):
    model_config = _STRICT

    metric: Literal["wasserstein", "psi", "ks", "jensen_shannon", "missing_rate_diff"]
    value: float
    threshold: float

    @property
    def reached(self) -> bool:
        return self.value >= self.threshold


class Distribution(BaseModel):
    """Enough of both distributions to draw them: quantiles for numbers (ECDF overlay),
    frequencies for categories (the last category may be ``(unseen)``)."""

    model_config = _STRICT

    kind: Literal["numeric", "category"]
    probabilities: list[float] = Field(default_factory=list)
    reference: list[float]
    current: list[float]
    categories: list[str] = Field(default_factory=list)


class MissingDrift(BaseModel):
    model_config = _STRICT

    reference_rate: float
    current_rate: float
    test: StatTest
    effect: Effect
    drifted: bool = False


class ColumnDrift(BaseModel):
    model_config = _STRICT

    name: str
    role: Literal["feature", "prediction"] = "feature"
    kind: Literal["numeric", "category"]
    status: Status
    reason: str = Field("", description="Why it drifted or could not be tested.")
    rows: int = Field(description="Values present in the window.")
    reference_rows: int
    test: StatTest | None = None
    effect: Effect | None = None
    scores: dict[str, float] = Field(
        default_factory=dict, description="ks, psi, wasserstein, jensen_shannon as computed."
    )
    missing: MissingDrift | None = None
    distribution: Distribution | None = None

    @property
    def drifted(self) -> bool:
        return self.status == "drift"

    @property
    def severity(self) -> float:
        """How far past its threshold the column is (0 when untested): sorts the report."""
        if self.effect is None or self.effect.threshold <= 0:
            return 0.0
        ratio = self.effect.value / self.effect.threshold
        if self.missing is not None and self.missing.effect.threshold > 0:
            ratio = max(ratio, self.missing.effect.value / self.missing.effect.threshold)
        return ratio


class DriftConfig(BaseModel):
    model_config = _STRICT

    correction: Correction = "bh"
    alpha: float = Field(0.05, gt=0, lt=1)
    numeric_effect: NumericEffect = "wasserstein"
    thresholds: dict[str, float]
    drift_share: float = Field(0.5, ge=0, le=1)
    min_rows: int = Field(100, ge=1)


class DriftResult(BaseModel):
    model_config = _STRICT

    schema_version: int = DRIFT_RESULT_SCHEMA_VERSION
    project: str
    env: str
    version: str
    window_start: datetime
    window_end: datetime
    computed_at: datetime
    rows: int = Field(description="Captured records in the window.")
    files: int = 0
    skipped_files: list[str] = Field(default_factory=list)
    config: DriftConfig
    verdict: Verdict
    dataset_drift: bool
    drift_share: float | None = Field(None, description="None when no feature was tested.")
    tested_features: int
    drifted_features: list[str] = Field(description="Most drifted first.")
    prediction_drift: bool | None = Field(None, description="None when not tested.")
    features: list[ColumnDrift] = Field(description="Most drifted first.")
    prediction: ColumnDrift | None = None

    @property
    def drifted(self) -> bool:
        return self.verdict == "drift"

    def summary(self) -> str:
        """One line, e.g. for a condition message."""
        window = f"{self.window_start:%Y-%m-%d %H:%M}..{self.window_end:%Y-%m-%d %H:%M}Z"
        # Unreadable capture files change what to do (fix the writer, not wait for traffic).
        skipped = (
            f"; {len(self.skipped_files)} capture files unreadable, left out"
            if self.skipped_files
            else ""
        )
        if self.verdict == "insufficient_data":
            return (
                f"too few captured rows to test ({self.rows} in {window}; "
                f"{self.config.min_rows} per feature needed){skipped}"
            )
        parts = [
            f"{len(self.drifted_features)} of {self.tested_features} features drifted"
            + (f" ({', '.join(self.drifted_features)})" if self.drifted_features else "")
        ]
        if self.prediction_drift:
            parts.append("predictions drifted")
        return f"{'; '.join(parts)} in {self.rows} rows, {window}{skipped}"


# -- layout -----------------------------------------------------------------------------
def run_prefix(
    platform: Platform, project: str, env: str, version: str, window_end: datetime, run_id: str
) -> str:
    end = window_end.astimezone(UTC)
    base = platform.drift_results_prefix(project, env, version)
    return f"{base}{end:%Y/%m/%d/%H}/{end:%Y%m%dT%H%M%SZ}-{run_id}/"


def new_run_id() -> str:
    return os.urandom(4).hex()


def report_key(result_key: str) -> str:
    """The report.html beside a run's drift.json."""
    return result_key.removesuffix(RESULT_FILE) + REPORT_FILE


def write(platform: Platform, result: DriftResult, report_html: str) -> tuple[str, str]:
    """Write one run's report, then its result (the commit marker); return their keys."""
    s3 = aws.client("s3")
    prefix = run_prefix(
        platform, result.project, result.env, result.version, result.window_end, new_run_id()
    )
    report_key, result_key = prefix + REPORT_FILE, prefix + RESULT_FILE
    s3.put_object(
        Bucket=platform.artifact_bucket,
        Key=report_key,
        Body=report_html.encode(),
        IfNoneMatch="*",
        ContentType="text/html; charset=utf-8",
    )
    s3.put_object(
        Bucket=platform.artifact_bucket,
        Key=result_key,
        Body=result.model_dump_json(indent=2).encode(),
        IfNoneMatch="*",
        ContentType="application/json",
    )
    return result_key, report_key


def read(platform: Platform, key: str) -> DriftResult:
    raw = aws.client("s3").get_object(Bucket=platform.artifact_bucket, Key=key)["Body"].read()
    try:
        return DriftResult.model_validate_json(raw)
    except (ValidationError, json.JSONDecodeError) as exc:
        raise IntegrityError(
            f"malformed drift result: {str(exc).splitlines()[0]}",
            where=f"s3://{platform.artifact_bucket}/{key}",
            hint="drift results are written by the drift job only; re-run it",
        ) from None


def _children(platform: Platform, prefix: str) -> list[str]:
    out: list[str] = []
    paginator = aws.client("s3").get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=platform.artifact_bucket, Prefix=prefix, Delimiter="/"):
        out.extend(p["Prefix"] for p in page.get("CommonPrefixes", []))
    return sorted(out, reverse=True)


def _latest_in_hour(platform: Platform, hour_prefix: str) -> str | None:
    paginator = aws.client("s3").get_paginator("list_objects_v2")
    keys: list[str] = []
    for page in paginator.paginate(Bucket=platform.artifact_bucket, Prefix=hour_prefix):
        keys.extend(o["Key"] for o in page.get("Contents", []))
    complete = [k for k in keys if k.endswith("/" + RESULT_FILE)]
    return max(complete) if complete else None


def latest_key(platform: Platform, project: str, env: str, version: str) -> str | None:
    """Key of the newest complete result of (project, env, version), or None."""

    def walk(prefix: str, depth: int) -> str | None:
        for child in _children(platform, prefix):
            found = _latest_in_hour(platform, child) if depth == 3 else walk(child, depth + 1)
            if found is not None:
                return found
        return None

    return walk(platform.drift_results_prefix(project, env, version), 0)


def latest(project: str, env: str, version: str, platform: Platform) -> DriftResult | None:
    """The newest drift result of ``version`` in ``env`` of ``project``, or None when the
    job has not produced one (yet). What the controller reads for ``Drifted``."""
    try:
        key = latest_key(platform, project, env, version)
    except ClientError as exc:
        if aws.error_code(exc) == "NoSuchBucket":
            return None
        raise
    return None if key is None else read(platform, key)
