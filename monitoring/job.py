"""The drift job: one run for one (project, env), the same for the CLI and the schedule.

    pointer (or --version) -> verified baseline.json -> captured window (Parquet)
      -> drift.compute -> report.html + drift.json (S3) -> CloudWatch metrics

Exit codes (:func:`exit_code`): 0 no drift, 1 drift, 7 too few captured rows to test
(the result is still written and says so; 3 is the platform's not found: no live
version), the platform's error codes for the errors it knows, and 70 for one it did not
expect (never 1, which means drift).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from mlops_core import aws, capture, drift_result, exits
from mlops_core.artifacts import BASELINE_FILE
from mlops_core.drift_result import RULES_ENV_PREFIX, SERVING_CONTAINER, DriftResult
from mlops_core.errors import IntegrityError, InvalidInput, MlopsError, NotFound
from mlops_core.logs import get_logger
from mlops_core.naming import Platform
from mlops_core.pointer import PointerStore
from mlops_core.registry import Registry
from monitoring import drift, report
from monitoring.settings import DriftSettings, with_deployed

log = get_logger("monitoring.job")

EXIT_NO_DRIFT = 0
EXIT_DRIFT = 1
#: No verdict for want of rows: its own code, so a pipeline tells it from not found (3).
EXIT_INSUFFICIENT = 7
#: An unexpected error: no verdict (EX_SOFTWARE of sysexits.h).
EXIT_CRASHED = 70
#: How far past now a window may end (clocks differ a little).
FUTURE_SKEW = timedelta(minutes=5)
#: CloudWatch accepts at most 1000 values per PutMetricData call.
METRICS_PER_CALL = 1000


@dataclass(frozen=True)
class Outcome:
    result: DriftResult
    result_uri: str
    report_uri: str


def exit_code(result: DriftResult) -> int:
    return {
        "drift": EXIT_DRIFT,
        "no_drift": EXIT_NO_DRIFT,
        "insufficient_data": EXIT_INSUFFICIENT,
    }[result.verdict]


def window_bounds(
    settings: DriftSettings,
    start: datetime | None,
    end: datetime | None,
    now: datetime,
) -> tuple[datetime, datetime]:
    """``[start, end)``: given bounds, else the settings' window ending ``now``.

    The end may not be later than ``now`` (give or take :data:`FUTURE_SKEW`): a result is
    filed under its window's end, and :func:`mlops_core.drift_result.latest` reads the
    newest end, so a window ending next month would hide every run until next month."""
    end = end or now
    if end > now + FUTURE_SKEW:
        raise InvalidInput(
            f"the window ends in the future: {end.isoformat()} is later than now "
            f"({now.isoformat(timespec='seconds')})",
            hint="leave --to out (the window ends now) or give a time in the past",
        )
    try:
        start = start or end - settings.window
    except OverflowError:
        raise InvalidInput(
            f"the window starts before year 1: {settings.window} before {end.isoformat()}",
            hint="use a shorter --since / MLOPS_DRIFT_WINDOW",
        ) from None
    return capture.check_window(start, end)


def deployed_rules(platform: Platform, project: str, env: str) -> dict[str, str]:
    """The ``MLOPS_DRIFT_*`` rules the env's live serving revision pins (the controller
    writes a ModelDeployment's ``spec.monitoring.drift`` there); {} when there is no
    service, or it cannot be read (the job then runs on its own settings, and says so)."""
    ecs = aws.client("ecs")
    try:
        services = ecs.describe_services(
            cluster=platform.ecs_cluster, services=[platform.service_name(project, env)]
        ).get("services", [])
        live = next((s for s in services if s.get("status") == "ACTIVE"), None)
        if live is None:
            return {}
        td = ecs.describe_task_definition(taskDefinition=live["taskDefinition"])
    except (ClientError, BotoCoreError) as exc:
        log.warning("the deployment's drift rules could not be read; using the job's own",
                    project=project, env=env, error=str(exc)[:200])  # fmt: skip
        return {}
    for container in td["taskDefinition"].get("containerDefinitions") or []:
        if container.get("name") == SERVING_CONTAINER:
            return {
                e["name"]: e["value"]
                for e in container.get("environment") or []
                if e["name"].startswith(RULES_ENV_PREFIX)
            }
    return {}


def _baseline(registry: Registry, project: str, version: str) -> dict[str, Any]:
    raw = registry.read_file(project, version, BASELINE_FILE)
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise IntegrityError(f"baseline.json of {version} is not JSON: {exc}") from None


class JobCrashed(MlopsError):
    """An error the job did not expect (a bug): its own exit code, never 1, which says
    "drift" to whoever reads the code (a scheduler, a pipeline, the retry policy)."""

    reason = "JobCrashed"
    exit_code = EXIT_CRASHED


def run(
    settings: DriftSettings,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    platform: Platform | None = None,
    now: datetime | None = None,
) -> Outcome:
    """One drift check (see the module docstring). Any error it did not expect is
    :class:`JobCrashed` (exit 70), logged with its traceback."""
    try:
        return _run(settings, start=start, end=end, platform=platform, now=now)
    except exits.EXPECTED:
        raise
    except Exception as exc:
        log.exception("drift job crashed", project=settings.project, env=settings.env)
        raise JobCrashed(
            f"the drift job failed unexpectedly: {type(exc).__name__}: {str(exc)[:300]}",
            hint="no verdict was reached (exit 70 is never drift); the log holds the "
            "traceback: please report it",
        ) from exc


def _run(
    settings: DriftSettings,
    *,
    start: datetime | None,
    end: datetime | None,
    platform: Platform | None,
    now: datetime | None,
) -> Outcome:
    if settings.project is None or settings.env is None:
        raise InvalidInput(
            "the drift job needs a project and an env",
            hint="set MLOPS_PROJECT and MLOPS_ENV, or pass --project/--env",
        )
    project, env = settings.project, settings.env
    platform = platform or settings.names()
    rules = deployed_rules(platform, project, env)
    settings = with_deployed(settings, rules)
    if rules:
        log.info("deployment's drift rules", project=project, env=env, rules=rules)
    now = now or datetime.now(UTC)
    start, end = window_bounds(settings, start, end, now)
    version = settings.version
    if version is None:
        pointer = PointerStore(platform).get(project, env)
        if pointer is None:
            raise NotFound(
                f"{project}/{env} has no live version to check",
                hint=f"promote a version to {env}, or pass --version",
            )
        version = pointer.version
    registry = Registry(platform)
    manifest = registry.get_manifest(project, version)
    baseline = _baseline(registry, project, version)
    schema = capture.schema_for(manifest, baseline)
    t0 = time.perf_counter()
    window = capture.read_window(platform, schema, env, start, end, capture.DRIFT_COLUMNS)
    read_s = time.perf_counter() - t0
    log.info("window read", project=project, env=env, version=version, rows=window.rows,
             files=window.files, skipped=len(window.skipped), seconds=round(read_s, 2))  # fmt: skip
    t0 = time.perf_counter()
    result = drift.compute(
        project=project,
        env=env,
        version=version,
        baseline=baseline,
        features=manifest.features,
        window=window,
        config=settings.decision(),
        computed_at=now,
    )
    compute_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    result_key, report_key = drift_result.write(platform, result, report.render(result))
    if settings.publish_metrics:
        publish_metrics(platform, result)
    bucket = platform.artifact_bucket
    log.info("drift checked", verdict=result.verdict, drifted=result.drifted_features,
             result=f"s3://{bucket}/{result_key}", compute_seconds=round(compute_s, 2),
             write_seconds=round(time.perf_counter() - t0, 2))  # fmt: skip
    return Outcome(result, f"s3://{bucket}/{result_key}", f"s3://{bucket}/{report_key}")


def metric_data(result: DriftResult) -> list[dict[str, Any]]:
    """The run's CloudWatch values: per-feature scores, drift share, rows checked."""
    dims = [{"Name": "Project", "Value": result.project}, {"Name": "Env", "Value": result.env}]
    at = result.window_end

    def datum(name: str, value: float, unit: str = "None", extra: list | None = None) -> dict:
        return {
            "MetricName": name,
            "Dimensions": dims + (extra or []),
            "Timestamp": at,
            "Value": float(value),
            "Unit": unit,
        }

    data = [
        datum("RowsChecked", result.rows, "Count"),
        datum("DriftedFeatures", len(result.drifted_features), "Count"),
        datum("DatasetDrift", 1.0 if result.dataset_drift else 0.0),
    ]
    if result.drift_share is not None:
        data.append(datum("DriftShare", result.drift_share))
    for col in result.features:
        if col.effect is not None:
            feature = [{"Name": "Feature", "Value": col.name}]
            data.append(datum("FeatureDriftScore", col.effect.value, extra=feature))
    if result.prediction is not None and result.prediction.effect is not None:
        data.append(datum("PredictionDriftScore", result.prediction.effect.value))
    return data


def publish_metrics(platform: Platform, result: DriftResult) -> None:
    cw = aws.client("cloudwatch")
    data = metric_data(result)
    for i in range(0, len(data), METRICS_PER_CALL):
        cw.put_metric_data(
            Namespace=platform.drift_metrics_namespace, MetricData=data[i : i + METRICS_PER_CALL]
        )
