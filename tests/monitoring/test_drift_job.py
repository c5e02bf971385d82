"""The drift job end to end on the local endpoint: capture written by the writer, the job
run through ``mlopsctl drift`` and ``python -m monitoring``, its outputs read back."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from configured import env_platform
from drift_data import PROJECT, capture_schema, columns, publish_version, records, schema_features
from prometheus_client import CollectorRegistry

from mlops_core import aws, drift_result
from mlops_core.drift_result import DriftResult
from mlopsctl.cli import main
from serving.capture import CaptureSettings, CaptureWriter

FEATURES = schema_features(numeric=3)


@pytest.fixture
def live(aws_env, tmp_path, platform):
    manifest = publish_version(tmp_path, FEATURES)
    return manifest, capture_schema(manifest)


def capture_rows(platform, schema, n: int, seed: int, **kw) -> None:
    """Send ``n`` rows through the real writer, as serving will, in requests of 50."""
    w = CaptureWriter(
        CaptureSettings(percent=100, buffer_records=100_000),
        platform=platform,
        env="prod",
        registry=CollectorRegistry(),
        rng=random.Random(0),
    )
    w.start()
    cols = columns(list(schema.features), n, seed, **kw)
    rows = records(cols)
    for i in range(0, n, 50):
        batch = rows[i : i + 50]
        w.submit(schema, batch, [10.0 + 2.0 * (r["x0"] or 0) + r["items"] for r in batch])
    w.close()


def test_shifted_capture_is_drift_with_every_output(live, platform, capsys):
    manifest, schema = live
    capture_rows(platform, schema, 3000, seed=1, shift={"x1": 1.0})

    code = main(
        [
            "drift",
            "--env",
            "prod",
            "--project",
            PROJECT,
            "--since",
            "1h",
            "--drift-share",
            "0.2",
            "-o",
            "json",
        ]
    )
    out = capsys.readouterr().out
    assert code == 1, out
    doc = json.loads(out)
    assert doc["verdict"] == "drift" and doc["drifted_features"] == ["x1"]
    assert doc["version"] == manifest.version and doc["rows"] == 3000

    # drift.json and report.html under the window's partition, and the latest reader.
    latest = drift_result.latest(PROJECT, "prod", manifest.version, env_platform())
    assert latest is not None and latest.drifted_features == ["x1"]
    key = drift_result.latest_key(platform, PROJECT, "prod", manifest.version)
    prefix = f"{PROJECT}/drift/prod/{manifest.version}/{latest.window_end:%Y/%m/%d/%H}/"
    assert key.startswith(prefix) and key.endswith("/drift.json")
    s3 = aws.client("s3")
    html = (
        s3.get_object(
            Bucket=platform.artifact_bucket, Key=key.replace("drift.json", "report.html")
        )["Body"]
        .read()
        .decode()
    )
    assert "Drift detected" in html and 'data-feature="x1"' in html

    # CloudWatch: per-feature scores, drift share, rows checked, in the job's namespace.
    cw = aws.client("cloudwatch")
    names = {
        m["MetricName"]
        for m in cw.list_metrics(Namespace=platform.drift_metrics_namespace)["Metrics"]
    }
    assert {"RowsChecked", "DriftShare", "FeatureDriftScore", "DriftedFeatures"} <= names
    features = {
        d["Value"]
        for m in cw.list_metrics(
            Namespace=platform.drift_metrics_namespace, MetricName="FeatureDriftScore"
        )["Metrics"]
        for d in m["Dimensions"]
        if d["Name"] == "Feature"
    }
    assert features == {"x0", "x1", "x2", "items", "color"}


def test_unshifted_capture_is_no_drift_and_the_table_says_so(live, platform, capsys):
    _, schema = live
    capture_rows(platform, schema, 2000, seed=2)
    code = main(["drift", "--env", "prod", "--project", PROJECT, "--since", "2h"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "no drift: 0 of 5 features drifted" in out
    assert "report: s3://" in out and "report.html" in out


def test_an_empty_window_is_insufficient_data_not_no_drift(live, platform, capsys):
    manifest, schema = live
    capture_rows(platform, schema, 30, seed=3)
    code = main(["drift", "--env", "prod", "--project", PROJECT, "--since", "1h", "-o", "json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 7 and doc["verdict"] == "insufficient_data" and doc["rows"] == 30
    # A window in the past holds nothing at all.
    code = main(
        [
            "drift",
            "--env",
            "prod",
            "--project",
            PROJECT,
            "--from",
            "2026-01-01T00:00:00Z",
            "--to",
            "2026-01-01T06:00:00Z",
        ]
    )
    assert code == 7  # not 3, which is not found
    latest = drift_result.latest(PROJECT, "prod", manifest.version, env_platform())
    # The newest window is the last hour's, whichever run came last.
    assert latest is not None and latest.rows == 30


def test_bad_input_is_a_clear_error(live, capsys):
    assert main(["drift", "--env", "prod", "--project", PROJECT, "--since", "soon"]) == 2
    assert "not a duration" in capsys.readouterr().err
    assert main(["drift", "--env", "prod", "--project", PROJECT, "--correction", "holm"]) == 2
    assert main(["drift", "--env", "prod", "--project", PROJECT, "-o", "xml"]) == 2
    assert main(["drift", "--env", "prod", "--project", PROJECT, "--from", "yesterday"]) == 2
    code = main(
        [
            "drift",
            "--env",
            "prod",
            "--project",
            PROJECT,
            "--from",
            "2026-01-02T00:00:00Z",
            "--to",
            "2026-01-01T00:00:00Z",
        ]
    )
    assert code == 2 and "empty window" in capsys.readouterr().err
    assert main(["drift", "--env", "staging", "--project", PROJECT]) == 3
    assert "no live version" in capsys.readouterr().err


def test_out_of_range_and_future_windows_are_bad_input(live, capsys):
    """Never a traceback (whose exit code 1 reads as "drift"), and never a result filed
    under a future hour, which latest() would return until then."""
    base = ["drift", "--env", "prod", "--project", PROJECT]
    for extra, said in [
        (["--since", "99999999999d"], "longer than"),
        (["--from", "0001-01-01T00:00:00+05:00"], "out of range"),
        (["--to", "0001-01-01T03:00:00Z"], "before year 1"),
        (["--to", "9999-12-31T23:59:59Z"], "in the future"),
    ]:
        assert main([*base, *extra]) == 2, extra
        assert said in capsys.readouterr().err, extra
    manifest, _ = live
    assert drift_result.latest(PROJECT, "prod", manifest.version, env_platform()) is None


def test_the_job_module_is_the_same_run(live, platform, aws_env):
    """``python -m monitoring``, configured as the scheduled task is: by environment."""
    manifest, schema = live
    capture_rows(platform, schema, 1500, seed=4, shift={"x0": 1.0, "color": 1.0})
    env = {
        **os.environ,
        "MLOPS_PROJECT": PROJECT,
        "MLOPS_ENV": "prod",
        "MLOPS_DRIFT_WINDOW": "3h",
        "MLOPS_DRIFT_CORRECTION": "bonferroni",
        "MLOPS_LOG_FORMAT": "json",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "monitoring"], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 1, proc.stderr
    assert "drift:" in proc.stdout and "x0" in proc.stdout
    result = drift_result.latest(PROJECT, "prod", manifest.version, env_platform())
    assert isinstance(result, DriftResult) and result.config.correction == "bonferroni"
    assert set(result.drifted_features) == {"x0", "color"} and result.prediction_drift

    bad = subprocess.run(
        [sys.executable, "-m", "monitoring"],
        env={**env, "MLOPS_DRIFT_ALPHA": "2"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "alpha" in bad.stderr and "Traceback" not in bad.stderr


def test_latest_walks_partitions_and_ignores_incomplete_runs(live, platform):
    manifest, _ = live
    assert drift_result.latest(PROJECT, "prod", manifest.version, env_platform()) is None
    s3 = aws.client("s3")
    base = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)

    def result(end: datetime, rows: int) -> DriftResult:
        return DriftResult(
            project=PROJECT,
            env="prod",
            version=manifest.version,
            window_start=end - timedelta(hours=1),
            window_end=end,
            computed_at=end,
            rows=rows,
            config={"thresholds": {}},
            verdict="no_drift",
            dataset_drift=False,
            tested_features=0,
            drifted_features=[],
            features=[],
        )

    for hours, rows in ((0, 1), (26, 2), (2, 3)):  # across days and hours
        drift_result.write(platform, result(base + timedelta(hours=hours), rows), "<html></html>")
    assert drift_result.latest(PROJECT, "prod", manifest.version, env_platform()).rows == 2
    # A newer run that has written its report but not yet drift.json is not a result.
    newer = drift_result.run_prefix(
        platform, PROJECT, "prod", manifest.version, base + timedelta(days=3), "inflight"
    )
    s3.put_object(Bucket=platform.artifact_bucket, Key=newer + "report.html", Body=b"")
    assert drift_result.latest(PROJECT, "prod", manifest.version, env_platform()).rows == 2
    # A malformed result is an integrity error naming where it is.
    s3.put_object(Bucket=platform.artifact_bucket, Key=newer + "drift.json", Body=b"{}")
    from mlops_core.errors import IntegrityError

    with pytest.raises(IntegrityError, match="malformed drift result"):
        drift_result.latest(PROJECT, "prod", manifest.version, env_platform())


def test_settings_read_only_the_platforms_names(monkeypatch):
    from monitoring.settings import load_settings

    monkeypatch.setenv("ENV", "/etc/shrc")  # a shell's, not ours
    monkeypatch.setenv("PROJECT", "other")
    monkeypatch.delenv("MLOPS_ENV", raising=False)
    monkeypatch.delenv("MLOPS_PROJECT", raising=False)
    s = load_settings()
    assert s.env is None and s.project is None
    monkeypatch.setenv("MLOPS_ENV", "prod")
    monkeypatch.setenv("MLOPS_DRIFT_WINDOW", "90m")
    s = load_settings(project="drift-demo")
    assert (s.project, s.env, s.window.total_seconds()) == ("drift-demo", "prod", 5400)


def _serving_revision(platform, **rules: str) -> None:
    """The env's live service on a revision that pins ``rules`` as the controller does."""
    ecs = aws.client("ecs")
    arn = ecs.register_task_definition(
        family=platform.task_family(PROJECT, "prod"),
        containerDefinitions=[
            {
                "name": "serving",
                "image": "mlops/serving:test",
                "memory": 512,
                "environment": [{"name": k, "value": v} for k, v in rules.items()],
            }
        ],
    )["taskDefinition"]["taskDefinitionArn"]
    ecs.create_service(
        cluster=platform.ecs_cluster,
        serviceName=platform.service_name(PROJECT, "prod"),
        taskDefinition=arn,
        desiredCount=0,
    )


def test_the_deployments_rules_come_from_its_live_revision_and_options_win(live, platform, capsys):
    _, schema = live
    capture_rows(platform, schema, 3000, seed=1, shift={"x1": 1.0})
    # One drifted feature of five: dataset drift only under the deployment's 0.2 share.
    _serving_revision(platform, MLOPS_DRIFT_DRIFT_SHARE="0.2", MLOPS_CAPTURE_PERCENT="100")
    base = ["drift", "--env", "prod", "--project", PROJECT, "--since", "1h", "-o", "json"]
    assert main(base) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["config"]["drift_share"] == 0.2 and doc["verdict"] == "drift"
    # What the command line (or the job's own environment) sets wins.
    assert main([*base, "--drift-share", "0.5"]) == 0
    assert json.loads(capsys.readouterr().out)["config"]["drift_share"] == 0.5


def test_invalid_deployed_rules_name_the_variable_and_why():
    """A rule the controller let through but the job refuses: the message says which
    variable and why, not only "1 validation error for DriftSettings"."""
    from mlops_core.errors import InvalidInput
    from monitoring.settings import DriftSettings, with_deployed

    with pytest.raises(InvalidInput) as info:
        with_deployed(DriftSettings(project=PROJECT, env="prod"), {"MLOPS_DRIFT_WINDOW": "0h"})
    assert "MLOPS_DRIFT_WINDOW='0h'" in str(info.value) and "not a duration" in str(info.value)


def test_an_unexpected_error_is_its_own_exit_code_never_drift(live, platform, capsys, monkeypatch):
    """A bug in the job (here, in the computation) exited 1 with a traceback: "drift" to
    a scheduler or a pipeline reading the code. It is 70, one line, the traceback logged."""
    from monitoring import drift as drift_module

    manifest, schema = live
    capture_rows(platform, schema, 500, seed=6)

    def broken(**_kwargs):
        raise ZeroDivisionError("float division by zero")

    monkeypatch.setattr(drift_module, "compute", broken)
    code = main(["drift", "--env", "prod", "--project", PROJECT, "--since", "3h"])
    err = capsys.readouterr().err
    assert code == 70, err
    assert "the drift job failed unexpectedly: ZeroDivisionError: float division by zero" in err
    assert err.rstrip().splitlines()[-2].startswith("error: the drift job failed unexpectedly")


def test_every_description_of_the_exit_codes_names_the_same_code_for_too_few_rows():
    """The CLI's help, the job module, the READMEs and Terraform's variable all say which
    code 'too few captured rows' is: the one the job exits with."""
    import re
    from pathlib import Path

    import monitoring.__main__ as entry
    from mlopsctl import cmd_drift
    from monitoring import job

    root = Path(__file__).resolve().parents[2]
    texts = {
        "mlopsctl drift --help": cmd_drift.drift.__doc__ or "",
        "python -m monitoring": entry.__doc__ or "",
        **{
            name: (root / name).read_text()
            for name in ("README.md", "infra/terraform/README.md", "infra/terraform/variables.tf")
        },
    }
    said = {
        name: re.findall(r"\b(\d+)\s*\(?too few (?:captured )?rows", " ".join(text.split()))
        for name, text in texts.items()
    }
    assert all(said.values()), said
    assert {name: set(codes) for name, codes in said.items()} == {
        name: {str(job.EXIT_INSUFFICIENT)} for name in said
    }
