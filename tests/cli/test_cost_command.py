"""`mlopsctl cost` and `mlopsctl prices` against the local endpoint: a service the
controller created, Cost Explorer results seeded through moto's own API, and the load
balancer's RequestCount put into the local CloudWatch, as AWS would publish it.

The deployment runs 2 tasks of 256 CPU units / 512 MiB in us-east-1 (shipped table):
Fargate 14.7752 + 3.24485 = 18.02 USD a month; with the env's load balancer (the tests
that create it, as Terraform names it) 16.425 more: 34.45 USD a month before traffic.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from factories import make_artifacts, project_config
from price_list_server import price_list_server, product

from controller.api import ModelDeployment
from controller.plan import NetworkConfig
from controller.reconcile import Reconciler
from mlops_core import aws
from mlops_core.cost.actual import actual_costs
from mlops_core.cost.prices import PriceResolver, PriceTable, shipped_table
from mlops_core.registry import Registry
from mlopsctl.cli import main

PROJECT = "usedcar-price"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mlops/serving:0.1.0"
MONTH = 30 * 86400


@pytest.fixture
def deployed(platform, network_env, tmp_path, monkeypatch):
    """usedcar-price/prod served by a service the controller created."""
    monkeypatch.setenv("MLOPS_PRICES", "table")
    registry = Registry(platform)
    registry.register_project(project_config())
    make_artifacts(tmp_path / "v1", seed=1)
    version = registry.publish(tmp_path / "v1").version
    deployment = ModelDeployment.model_validate(
        {
            "metadata": {"name": "usedcar-price-prod", "generation": 1},
            "spec": {
                "project": PROJECT,
                "env": "prod",
                "model": {"version": version},
                "serving": {"image": IMAGE, "cpu": 256, "memory": 512, "replicas": 2},
            },
        }
    )
    network = NetworkConfig(
        subnets=tuple(network_env["MLOPS_SUBNETS"].split(",")),
        security_groups=(network_env["MLOPS_SECURITY_GROUPS"],),
    )
    result = Reconciler(platform, network=network, prices=PriceResolver("table")).reconcile(
        deployment, None
    )
    assert not result.degraded, result.status
    return version


def seed_cost_explorer(moto_server, *results: dict) -> None:
    """Queue GetCostAndUsage answers, the way moto documents it."""
    url = f"http://127.0.0.1:{moto_server['port']}/moto-api/static/ce/cost-and-usage-results"
    httpx.post(url, json={"results": list(results)}, timeout=10).raise_for_status()


def day(offset: int, groups: dict[str, float], estimated: bool = False) -> dict:
    start = datetime.now(UTC).date() - timedelta(days=offset)
    return {
        "TimePeriod": {"Start": start.isoformat(), "End": (start + timedelta(1)).isoformat()},
        "Total": {},
        "Groups": [
            {
                "Keys": [f"mlops:deployment${name}"],
                "Metrics": {"UnblendedCost": {"Amount": str(usd), "Unit": "USD"}},
            }
            for name, usd in groups.items()
        ],
        "Estimated": estimated,
    }


def load_balancer_with_requests(platform, requests: float, env: str = "prod") -> None:
    """The env's ALB (as Terraform names it), and the RequestCount AWS would publish."""
    ec2 = aws.client("ec2")
    subnets = [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]][:2]
    lb = aws.client("elbv2").create_load_balancer(
        Name=platform.load_balancer(PROJECT, env), Subnets=subnets
    )["LoadBalancers"][0]
    dimension = lb["LoadBalancerArn"].partition(":loadbalancer/")[2]
    now = datetime.now(UTC)
    aws.client("cloudwatch").put_metric_data(
        Namespace="AWS/ApplicationELB",
        MetricData=[
            {
                "MetricName": "RequestCount",
                "Dimensions": [{"Name": "LoadBalancer", "Value": dimension}],
                "Timestamp": now - timedelta(days=d, hours=1),
                "Value": requests / 3,
                "Unit": "Count",
            }
            for d in (1, 5, 20)
        ],
    )


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cost_estimates_what_runs_and_says_which_prices_it_used(deployed, capsys):
    code, out, err = run(capsys, "cost", "-p", PROJECT, "--env", "prod", "-o", "json")
    assert code == 0, err
    doc = json.loads(out)
    (row,) = doc["deployments"]
    assert row["deployment"] == "usedcar-price-prod"
    assert row["service"]["tasks"] == 2 and row["service"]["cpu"] == 256
    est = row["estimate"]
    # No load balancer for this env: none is billed.
    assert est["monthly_usd"] == 18.02
    assert {i["name"]: i["usd"] for i in est["items"]}["load balancer"] == 0
    items = {i["name"]: i for i in est["items"]}
    assert items["fargate vCPU"]["quantity"] == pytest.approx(365)  # vCPU-hours
    assert items["fargate vCPU"]["usd"] == pytest.approx(14.7752)
    assert doc["prices"] == {
        "source": "shipped-table", "as_of": "2026-12-01", "region": "us-east-1", "note": "",
        "table": None,
    }  # fmt: skip
    # No load balancer here, and Cost Explorer has nothing: said, not guessed.
    assert row["requests"] is None and row["usd_per_1k_requests"] is None
    assert any("no load balancer" in n for n in row["notes"])
    assert row["actual_usd"] is None
    assert "no data" in doc["actual"][PROJECT]["reason"]


def test_cost_reads_the_bill_and_the_request_count(deployed, moto_server, platform, capsys):
    load_balancer_with_requests(platform, requests=2_592_000)  # 1 request/s over 30 days
    seed_cost_explorer(
        moto_server,
        {
            "ResultsByTime": [
                day(2, {"usedcar-price-prod": 10.04, "usedcar-price-staging": 3.0, "": 0.5}),
                day(1, {"usedcar-price-prod": 10.04, "": 0.5}, estimated=True),
            ],
            "DimensionValueAttributes": [],
            "NextPageToken": "page-2",
        },
        {
            "ResultsByTime": [day(0, {"usedcar-price-prod": 10.04}, estimated=True)],
            "DimensionValueAttributes": [],
        },
    )
    code, out, err = run(
        capsys, "cost", "-p", PROJECT, "-e", "prod", "--since", "30d", "-o", "json"
    )
    assert code == 0, err
    doc = json.loads(out)
    (row,) = doc["deployments"]
    assert row["actual_usd"] == pytest.approx(30.12)  # both pages
    assert doc["actual"][PROJECT] == {
        "available": True, "estimated": True, "shared_usd": 1.0, "reason": "",
    }  # fmt: skip
    assert row["requests"] == pytest.approx(2_592_000)
    # 30.12 USD over 2,592,000 requests
    assert row["usd_per_1k_requests"] == pytest.approx(30.12 / 2592)
    assert row["per_1k_basis"] == "actual"
    # The measured 1 request/s adds LCUs (1/25 per hour) and log ingestion to the estimate.
    items = {i["name"]: i["usd"] for i in row["estimate"]["items"]}
    assert items["load balancer LCUs"] == pytest.approx(0.04 * 730 * 0.008)
    assert items["log ingestion"] == pytest.approx(300 * 730 * 3600 / 2**30 * 0.5)
    assert row["estimate"]["monthly_usd"] == pytest.approx(34.45 + 0.2336 + 0.3672, abs=0.01)


def test_cost_table_names_its_sources(deployed, platform, capsys):
    load_balancer_with_requests(platform, requests=3_000_000)
    code, out, err = run(capsys, "cost", "-p", PROJECT, "-o", "json")
    prod = next(r for r in json.loads(out)["deployments"] if r["env"] == "prod")
    code, out, err = run(capsys, "cost", "-p", PROJECT)
    assert code == 0, err
    (line,) = [x for x in out.splitlines() if "usedcar-price-prod" in x]
    # 3,000,000 requests in 30 days is 1.157/s: 34.45 + 0.27 LCUs + 0.42 logs.
    assert prod["estimate"]["monthly_usd"] == pytest.approx(35.15, abs=0.01)
    assert f"${prod['estimate']['monthly_usd']:,.2f}" in line
    assert "3,000,000" in line
    # Without a bill, the cost per 1,000 comes from the estimate for the window.
    assert "(estimate)" in line
    assert "prices: shipped price table taken 2026-12-01, us-east-1" in out
    assert "billed: usedcar-price: Cost Explorer has no data" in out
    # Envs without a service are listed as such.
    assert "usedcar-price-staging: no ECS service usedcar-price-staging: nothing runs" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--since", "3 weeks"], "--since '3 weeks' is not a duration"),
        (["--since", "400d"], "longer than Cost Explorer's year"),
        (["-o", "xml"], "is not one of"),
        (["--env", "qa"], "unknown env 'qa'"),
    ],
)
def test_cost_bad_input_is_exit_2(platform, capsys, argv, message):
    Registry(platform).register_project(project_config())
    code, out, err = run(capsys, "cost", "-p", PROJECT, *argv)
    assert code == 2, out + err
    assert message in err


def test_cost_explorer_errors_become_a_reason_not_a_crash(aws_env, monkeypatch):
    # Nothing listens on this port: the call fails the way an unreachable API does.
    monkeypatch.setenv("AWS_ENDPOINT_URL_COST_EXPLORER", "http://127.0.0.1:9")
    got = actual_costs("mlops", PROJECT, datetime(2026, 11, 1).date(), datetime(2026, 12, 1).date())
    assert not got.available
    assert got.reason.startswith("Cost Explorer unavailable")


# -- prices ---------------------------------------------------------------------------
def test_prices_shows_the_fallback_on_the_local_endpoint(aws_env, capsys):
    code, out, err = run(capsys, "prices", "-o", "json")
    assert code == 0, err
    doc = json.loads(out)
    assert (doc["source"], doc["as_of"], doc["region"]) == (
        "shipped-table",
        "2026-12-01",
        "us-east-1",
    )
    assert doc["note"].startswith("Price List API unavailable")
    assert doc["prices"]["fargate"]["X86_64"]["vcpu_hour"] == 0.04048


def _region_products(region: str, scale: float) -> list[dict]:
    prefix = {"us-east-1": "USE1", "us-east-2": "USE2", "us-west-2": "USW2"}.get(region, "EU")
    s3 = "TimedStorage-ByteHrs" if region == "us-east-1" else f"{prefix}-TimedStorage-ByteHrs"
    alb = "Load Balancer-Application"
    return [
        product("AmazonECS", f"{prefix}-Fargate-vCPU-Hours:perCPU", 0.05 * scale, region=region),
        product("AmazonECS", f"{prefix}-Fargate-GB-Hours", 0.005 * scale, region=region),
        product(
            "AmazonECS", f"{prefix}-Fargate-ARM-vCPU-Hours:perCPU", 0.04 * scale, region=region
        ),
        product("AmazonECS", f"{prefix}-Fargate-ARM-GB-Hours", 0.004 * scale, region=region),
        product("AWSELB", f"{prefix}-LoadBalancerUsage", 0.03 * scale, region=region, family=alb),
        product("AWSELB", f"{prefix}-LCUUsage", 0.01 * scale, region=region, family=alb),
        product("AmazonS3", s3, 0.03 * scale, region=region),
        product("AmazonCloudWatch", f"{prefix}-DataProcessing-Bytes", 0.6 * scale, region=region),
    ]


def test_prices_write_table_refreshes_every_region_from_the_api(monkeypatch, tmp_path, capsys):
    regions = sorted(shipped_table().regions)
    products = [p for n, r in enumerate(regions) for p in _region_products(r, 1 + n / 10)]
    target = tmp_path / "price_table.json"
    with price_list_server(products) as server:
        monkeypatch.setenv("AWS_ENDPOINT_URL_PRICING", server.url)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        code, out, err = run(capsys, "prices", "--write-table", str(target))
    assert code == 0, err
    table = PriceTable.model_validate_json(target.read_text())
    assert table.taken == datetime.now(UTC).date()
    assert sorted(table.regions) == regions
    second = table.regions[regions[1]]
    assert second.fargate["X86_64"].vcpu_hour == pytest.approx(0.05 * 1.1)
    assert second.s3_gb_month == pytest.approx(0.03 * 1.1)


def test_prices_write_table_refuses_without_the_api(aws_env, tmp_path, capsys):
    target = tmp_path / "t.json"
    code, out, err = run(capsys, "prices", "--write-table", str(target))
    assert code == 3, out + err
    assert "cannot refresh" in err and not target.exists()


def test_a_service_younger_than_the_window_is_priced_over_its_own_time(
    deployed, platform, capsys, monkeypatch
):
    """A service created two days ago in a 30-day window: its request rate and the
    estimate's share of the window are over those two days, not 30 (which would put a
    month's cost on two days' requests)."""
    import dataclasses

    from mlopsctl import cmd_cost

    load_balancer_with_requests(platform, requests=3 * 172_800)  # 1, 5 and 20 days ago
    created = datetime.now(UTC) - timedelta(days=2)
    real = cmd_cost.live_service
    monkeypatch.setattr(
        cmd_cost,
        "live_service",
        lambda *a: dataclasses.replace(real(*a), created_at=created),
    )
    code, out, err = run(capsys, "cost", "-p", PROJECT, "-e", "prod", "-o", "json")
    assert code == 0, err
    (row,) = json.loads(out)["deployments"]
    assert row["requests"] == pytest.approx(3 * 172_800)  # the window's, as billed
    assert row["served_since"].startswith(created.date().isoformat())
    assert any("the service exists since" in n for n in row["notes"])
    # 172,800 requests in its 2 days: 1 request/s, 1/25 LCU an hour.
    items = {i["name"]: i["usd"] for i in row["estimate"]["items"]}
    assert items["load balancer LCUs"] == pytest.approx(0.04 * 730 * 0.008, rel=1e-3)
    # Its estimate for 48 of the month's 730 hours, over its 172,800 requests.
    monthly = sum(items.values())
    assert row["per_1k_basis"] == "estimate"
    assert row["usd_per_1k_requests"] == pytest.approx(monthly * 48 / 730 / 172.8, rel=1e-3)


def test_cost_with_nothing_registered_says_so(aws_env, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no project.yaml here
    monkeypatch.setenv("MLOPS_PRICES", "table")
    code, out, err = run(capsys, "cost", "-o", "json")
    assert code == 0, err
    assert json.loads(out)["deployments"] == []
    code, out, err = run(capsys, "cost", "--env", "prod")
    assert code == 0, err
    assert "no deployments: no project is registered yet" in out


def test_cost_env_across_projects_lists_those_that_have_it(platform, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLOPS_PRICES", "table")
    registry = Registry(platform)
    registry.register_project(project_config())  # dev, staging, prod
    other = project_config("fraud-score").model_copy(update={"envs": ["dev", "qa"]})
    registry.register_project(other)
    code, out, err = run(capsys, "cost", "--env", "qa", "-o", "json")
    assert code == 0, err
    assert [r["deployment"] for r in json.loads(out)["deployments"]] == ["fraud-score-qa"]
    code, out, err = run(capsys, "cost", "--env", "uat")
    assert code == 2 and "unknown env 'uat'" in err


def test_a_revision_whose_size_cannot_be_read_is_not_estimated_as_free(
    deployed, capsys, monkeypatch
):
    import dataclasses

    from mlopsctl import cmd_cost

    real = cmd_cost.live_service
    monkeypatch.setattr(
        cmd_cost, "live_service", lambda *a: dataclasses.replace(real(*a), task_definition={})
    )
    code, out, err = run(capsys, "cost", "-p", PROJECT, "-e", "prod", "-o", "json")
    assert code == 0, err
    (row,) = json.loads(out)["deployments"]
    assert row["estimate"] is None and row["usd_per_1k_requests"] is None
    assert any("task size" in n and "unknown" in n for n in row["notes"])


def test_a_price_table_file_is_named_in_the_output_and_a_bad_one_is_exit_2(
    deployed, capsys, tmp_path, monkeypatch
):
    table = tmp_path / "prices.json"
    table.write_text(shipped_table().model_dump_json())
    monkeypatch.setenv("MLOPS_PRICE_TABLE", str(table))
    code, out, err = run(capsys, "cost", "-p", PROJECT, "-e", "prod", "-o", "json")
    assert code == 0, err
    doc = json.loads(out)
    assert (doc["prices"]["source"], doc["prices"]["table"]) == ("table-file", str(table))
    code, out, err = run(capsys, "cost", "-p", PROJECT, "-e", "prod")
    assert code == 0 and f"prices: price table {table} taken 2026-12-01, us-east-1" in out
    table.write_text("{")
    code, out, err = run(capsys, "cost", "-p", PROJECT)
    assert code == 2 and f"MLOPS_PRICE_TABLE={table} is not a price table" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("arch", "tasks", "fargate"),
    [
        # Graviton: 0.25 vCPU x 2 x 730 x 0.03238 + 0.5 GB x 2 x 730 x 0.00356
        ("ARM64", 2, 365 * 0.03238 + 730 * 0.00356),
        ("X86_64", 0, 0.0),  # scaled to zero: nothing for Fargate
        ("WINDOWS_X86", 2, 365 * 0.04048 + 730 * 0.004445),  # unknown: priced as x86
    ],
)
def test_cost_prices_the_live_architecture_and_task_count(
    deployed, capsys, monkeypatch, arch, tasks, fargate
):
    import dataclasses

    from mlopsctl import cmd_cost

    real = cmd_cost.live_service

    def live(*a):
        svc = real(*a)
        td = {**svc.task_definition, "runtimePlatform": {"cpuArchitecture": arch}}
        return dataclasses.replace(svc, task_definition=td, desired_count=tasks)

    monkeypatch.setattr(cmd_cost, "live_service", live)
    code, out, err = run(capsys, "cost", "-p", PROJECT, "-e", "prod", "-o", "json")
    assert code == 0, err
    (row,) = json.loads(out)["deployments"]
    items = {i["name"]: i["usd"] for i in row["estimate"]["items"]}
    assert items["fargate vCPU"] + items["fargate memory"] == pytest.approx(fargate)
    assert row["service"]["tasks"] == tasks and row["service"]["architecture"] == arch
    assert any("no prices here: priced as X86_64" in n for n in row["notes"]) == (
        arch == "WINDOWS_X86"
    )
