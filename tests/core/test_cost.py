"""Prices and the cost estimate: hand-computed figures, the shipped table, the Price List
API over HTTP, and the fallback from one to the other."""

from __future__ import annotations

from datetime import date

import pytest
from price_list_server import price_list_server, product

from mlops_core.config import PlatformSettings
from mlops_core.cost.estimate import (
    BudgetExceeded,
    Workload,
    check_budget,
    estimate,
    lcu_per_hour,
    per_thousand,
)
from mlops_core.cost.prices import (
    SOURCE_API,
    SOURCE_TABLE,
    FargateRates,
    PriceBook,
    PriceListIncomplete,
    PriceResolver,
    PricesUnavailable,
    RegionPrices,
    from_price_list_api,
    from_table,
    shipped_table,
)
from mlops_core.errors import GateFailed, InvalidInput

MiB = 1 << 20


def book(region: str = "us-east-1") -> PriceBook:
    return from_table(region)


# -- the estimate, against figures computed by hand ---------------------------------------
def test_two_small_x86_tasks_in_us_east_1_without_traffic():
    e = estimate(Workload(cpu=512, memory=1024, tasks=2, artifact_bytes=15_000_000), book())
    # 0.5 vCPU x 2 tasks x 730 h = 730 vCPU-h x 0.04048 = 29.5504
    assert e.usd("fargate vCPU") == pytest.approx(29.5504)
    # 1 GB x 2 x 730 = 1460 GB-h x 0.004445 = 6.4897
    assert e.usd("fargate memory") == pytest.approx(6.4897)
    # the whole ALB: 730 h x 0.0225 = 16.425; no requests, no LCUs, no logs
    assert e.usd("load balancer") == pytest.approx(16.425)
    assert e.usd("load balancer LCUs") == 0
    assert e.usd("log ingestion") == 0
    # 15e6 B / 2^30 = 0.0139698 GB x 0.023 = 0.000321
    assert e.usd("s3 storage") == pytest.approx(15e6 / 2**30 * 0.023)
    assert e.total == pytest.approx(52.465421, abs=1e-6)
    assert (e.price_source, e.prices_as_of, e.region) == (SOURCE_TABLE, "2026-12-01", "us-east-1")


def test_three_arm_tasks_in_frankfurt_at_ten_requests_per_second():
    w = Workload(
        cpu=1024,
        memory=2048,
        tasks=3,
        architecture="ARM64",
        requests_per_second=10,
        artifact_bytes=100 * MiB,
    )
    e = estimate(w, book("eu-central-1"))
    assert e.usd("fargate vCPU") == pytest.approx(2190 * 0.03725)  # 1 x 3 x 730 = 81.5775
    assert e.usd("fargate memory") == pytest.approx(4380 * 0.00409)  # 2 x 3 x 730 = 17.9142
    assert e.usd("load balancer") == pytest.approx(730 * 0.027)  # 19.71
    # LCU = max(10/25 new connections, 10 x 1 KiB x 3600 / 2^30 = 0.0343 GB/h) = 0.4
    assert e.usd("load balancer LCUs") == pytest.approx(0.4 * 730 * 0.008)  # 2.336
    assert e.usd("s3 storage") == pytest.approx(100 / 1024 * 0.0245)  # 0.002393
    # 10/s x 300 B x 2,628,000 s = 7.884e9 B = 7.3426 GB x 0.63 = 4.6259
    assert e.usd("log ingestion") == pytest.approx(10 * 300 * 2_628_000 / 2**30 * 0.63)
    assert e.total == pytest.approx(126.1659, abs=1e-4)


def test_a_shared_load_balancer_and_a_byte_heavy_workload():
    # One 0.25 vCPU / 0.5 GB task in us-west-2 sharing its ALB with another deployment,
    # with 1 MiB per request: processed bytes, not connections, set the LCUs.
    w = Workload(
        cpu=256, memory=512, tasks=1, requests_per_second=1.0,
        bytes_per_request=MiB, log_bytes_per_request=0, load_balancer_share=0.5,
    )  # fmt: skip
    e = estimate(w, book("us-west-2"))
    assert e.usd("fargate vCPU") == pytest.approx(0.25 * 730 * 0.04048)  # 7.3876
    assert e.usd("fargate memory") == pytest.approx(0.5 * 730 * 0.004445)  # 1.6224
    assert e.usd("load balancer") == pytest.approx(365 * 0.0225)  # half of 730 h: 8.2125
    # 1 MiB x 3600 / 2^30 = 3.515625 GB/h > 1/25 new connections
    assert lcu_per_hour(1.0, MiB) == pytest.approx(3.515625)
    assert e.usd("load balancer LCUs") == pytest.approx(3.515625 * 730 * 0.008)  # 20.53
    assert e.total == pytest.approx(37.7537, abs=1e-4)


def test_zero_replicas_cost_only_the_load_balancer_and_storage():
    e = estimate(Workload(cpu=4096, memory=8192, tasks=0, artifact_bytes=0), book())
    assert e.total == pytest.approx(16.425)


def test_per_thousand_requests():
    assert per_thousand(52.47, 1_000_000) == pytest.approx(0.05247)
    assert per_thousand(52.47, 0) is None


# -- the budget -------------------------------------------------------------------------
def test_budget_refuses_an_estimate_over_it_with_gate_failed_budget_exceeded():
    e = estimate(Workload(cpu=512, memory=1024, tasks=2), book())  # $52.47
    check_budget(e, None)
    check_budget(e, 52.47)  # compared in cents, as the status shows it
    with pytest.raises(BudgetExceeded) as info:
        check_budget(e, 50.0)
    err = info.value
    assert isinstance(err, GateFailed) and err.exit_code == 6
    assert err.reason == "BudgetExceeded"
    assert "$52.47/month" in err.what and "$50.00" in err.what
    assert err.where == "spec.budget.maxMonthlyUSD"


# -- the shipped table ------------------------------------------------------------------
def test_shipped_table_states_its_date_and_covers_both_architectures():
    table = shipped_table()
    assert table.taken == date(2026, 12, 1)
    assert "pricing" in table.source and "--write-table" in table.source
    assert {"us-east-1", "eu-west-1", "eu-central-1"} <= set(table.regions)
    for region, p in table.regions.items():
        assert set(p.fargate) == {"X86_64", "ARM64"}, region
        # Graviton is cheaper than x86 everywhere.
        assert p.fargate["ARM64"].vcpu_hour < p.fargate["X86_64"].vcpu_hour, region


def test_a_region_the_table_lacks_is_a_clear_error():
    with pytest.raises(PricesUnavailable) as info:
        from_table("ap-southeast-7", note="Price List API unavailable: AccessDenied")
    assert "ap-southeast-7" in info.value.what
    assert "pricing:GetProducts" in info.value.hint
    assert info.value.exit_code == 3


# -- the resolver: API, else table --------------------------------------------------------
def test_auto_falls_back_to_the_table_on_the_local_endpoint(aws_env):
    """moto has no Price List API: the real call fails, the table is used, and the book
    says why."""
    got = PriceResolver("auto").get("us-east-1")
    assert got.source == SOURCE_TABLE
    assert got.note.startswith("Price List API unavailable")
    assert "shipped price table taken 2026-12-01" in got.describe()


def test_table_mode_never_calls_the_api_and_api_mode_never_falls_back():
    def unreachable(region):
        raise AssertionError("the API must not be called")

    assert PriceResolver("table", fetch=unreachable).get("eu-west-1").source == SOURCE_TABLE

    def refused(region):
        raise PriceListIncomplete("no LCUUsage product")

    with pytest.raises(PricesUnavailable, match="no LCUUsage product"):
        PriceResolver("api", fetch=refused).get("us-east-1")


def test_resolver_caches_and_retries_a_fallback_after_its_delay():
    calls = []
    now = [0.0]
    good = PriceBook(
        "us-east-1",
        RegionPrices(
            fargate={
                "X86_64": FargateRates(vcpu_hour=1, gb_hour=1),
                "ARM64": FargateRates(vcpu_hour=1, gb_hour=1),
            },
            alb_hour=1,
            lcu_hour=1,
            s3_gb_month=1,
            logs_ingested_gb=1,
        ),
        SOURCE_API,
        date(2026, 11, 20),
    )

    def fetch(region):
        calls.append(region)
        if len(calls) == 1:
            raise PriceListIncomplete("down")
        return good

    r = PriceResolver(fetch=fetch, clock=lambda: now[0], retry_seconds=60, cache_seconds=3600)
    assert r.get("us-east-1").source == SOURCE_TABLE
    assert r.get("us-east-1").source == SOURCE_TABLE  # cached fallback
    now[0] = 61
    assert r.get("us-east-1") is good  # retried
    now[0] = 3000
    assert r.get("us-east-1") is good
    assert calls == ["us-east-1", "us-east-1"]


# -- the Price List API over HTTP -------------------------------------------------------
REGION = "us-east-1"
API_PRODUCTS = [
    product("AmazonECS", "USE1-Fargate-vCPU-Hours:perCPU", 0.05),
    product("AmazonECS", "USE1-Fargate-GB-Hours", 0.005),
    product("AmazonECS", "USE1-Fargate-ARM-vCPU-Hours:perCPU", 0.04),
    product("AmazonECS", "USE1-Fargate-ARM-GB-Hours", 0.004),
    # Decoys the usage-type match must not take.
    product("AmazonECS", "USE1-SpotUsage-Fargate-vCPU-Hours:perCPU", 0.0001),
    product("AmazonECS", "USE1-Fargate-Windows-vCPU-Hours:perCPU", 0.9),
    product("AmazonECS", "EUC1-Fargate-vCPU-Hours:perCPU", 0.7, region="eu-central-1"),
    product("AWSELB", "USE1-LoadBalancerUsage", 0.03, family="Load Balancer-Application"),
    product("AWSELB", "USE1-LCUUsage", 0.01, family="Load Balancer-Application"),
    product("AWSELB", "USE1-LoadBalancerUsage", 0.9, family="Load Balancer"),  # classic
    product("AmazonS3", "TimedStorage-ByteHrs", [0.03, 0.028, 0.026], volumeType="Standard"),
    product("AmazonCloudWatch", "USE1-DataProcessing-Bytes", 0.6, published="2026-11-25T0:0:0Z"),
]


@pytest.fixture
def price_list(monkeypatch):
    with price_list_server(API_PRODUCTS) as server:
        monkeypatch.setenv("AWS_ENDPOINT_URL_PRICING", server.url)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        yield server


def test_price_list_api_prices_are_read_over_http(price_list):
    got = from_price_list_api(REGION)
    p = got.prices
    assert (got.source, got.as_of) == (SOURCE_API, date(2026, 11, 25))
    assert p.fargate["X86_64"] == FargateRates(vcpu_hour=0.05, gb_hour=0.005)
    assert p.fargate["ARM64"] == FargateRates(vcpu_hour=0.04, gb_hour=0.004)
    assert (p.alb_hour, p.lcu_hour) == (0.03, 0.01)
    assert p.s3_gb_month == 0.03  # the first tier
    assert p.logs_ingested_gb == 0.6
    # Every query named the region; the load balancer query the ALB family.
    assert all(
        {"Type": "TERM_MATCH", "Field": "regionCode", "Value": REGION} in r["Filters"]
        for r in price_list.requests
    )
    assert {r["ServiceCode"] for r in price_list.requests} == {
        "AmazonECS", "AWSELB", "AmazonS3", "AmazonCloudWatch",
    }  # fmt: skip
    # The ECS answer spans pages (PAGE_SIZE 2): NextToken was followed.
    assert sum(r["ServiceCode"] == "AmazonECS" for r in price_list.requests) >= 3
    # The estimate says where its prices came from.
    e = estimate(Workload(cpu=1024, memory=2048, tasks=1), got)
    assert e.price_source == SOURCE_API
    assert e.usd("fargate vCPU") == pytest.approx(730 * 0.05)


def test_auto_prefers_the_api_and_falls_back_when_a_product_is_missing(price_list):
    assert PriceResolver("auto").get(REGION).source == SOURCE_API
    price_list.products = [p for p in API_PRODUCTS if "LCUUsage" not in str(p)]
    got = PriceResolver("auto").get(REGION)
    assert got.source == SOURCE_TABLE
    assert "no LCUUsage product" in got.note


def test_settings_choose_the_mode(monkeypatch):
    monkeypatch.setenv("MLOPS_PRICES", "table")
    monkeypatch.setenv("MLOPS_PRICE_CACHE_SECONDS", "5")
    r = PriceResolver.from_settings(PlatformSettings.load())
    assert (r.mode, r.cache_seconds) == ("table", 5.0)
    monkeypatch.setenv("MLOPS_PRICES", "sometimes")
    with pytest.raises(InvalidInput, match="MLOPS_PRICES: invalid value 'sometimes'"):
        PlatformSettings.load()


# -- three sizes in two regions, by hand ----------------------------------------------------
@pytest.mark.parametrize(
    ("region", "architecture", "cpu", "memory", "tasks", "vcpu_usd", "memory_usd", "alb_usd"),
    [
        # us-east-1 x86: 0.04048 per vCPU-h, 0.004445 per GB-h, ALB 0.0225 x 730 = 16.425
        ("us-east-1", "X86_64", 256, 512, 1, 182.5 * 0.04048, 365 * 0.004445, 16.425),
        ("us-east-1", "X86_64", 1024, 2048, 3, 2190 * 0.04048, 4380 * 0.004445, 16.425),
        ("us-east-1", "X86_64", 4096, 16384, 2, 5840 * 0.04048, 23360 * 0.004445, 16.425),
        # eu-central-1 x86: 0.04656, 0.00511, ALB 0.027 x 730 = 19.71
        ("eu-central-1", "X86_64", 256, 512, 1, 182.5 * 0.04656, 365 * 0.00511, 19.71),
        ("eu-central-1", "X86_64", 1024, 2048, 3, 2190 * 0.04656, 4380 * 0.00511, 19.71),
        ("eu-central-1", "X86_64", 4096, 16384, 2, 5840 * 0.04656, 23360 * 0.00511, 19.71),
        # eu-central-1 Graviton: 0.03725, 0.00409
        ("eu-central-1", "ARM64", 4096, 16384, 2, 5840 * 0.03725, 23360 * 0.00409, 19.71),
    ],
)
def test_three_sizes_in_two_regions_match_the_hand_computed_figures(
    region, architecture, cpu, memory, tasks, vcpu_usd, memory_usd, alb_usd
):
    e = estimate(Workload(cpu, memory, tasks, architecture), book(region))
    assert e.usd("fargate vCPU") == pytest.approx(vcpu_usd)
    assert e.usd("fargate memory") == pytest.approx(memory_usd)
    assert e.usd("load balancer") == pytest.approx(alb_usd)
    assert e.total == pytest.approx(vcpu_usd + memory_usd + alb_usd)


def test_hand_computed_totals():
    """The figures above, added up once by hand (USD a month)."""
    us, eu = book("us-east-1"), book("eu-central-1")
    assert estimate(Workload(256, 512, 1), us).total == pytest.approx(25.435025)
    assert estimate(Workload(1024, 2048, 3), us).total == pytest.approx(124.5453)
    assert estimate(Workload(4096, 16384, 2), us).total == pytest.approx(356.6634)
    assert estimate(Workload(256, 512, 1), eu).total == pytest.approx(30.07235)
    assert estimate(Workload(1024, 2048, 3), eu).total == pytest.approx(144.0582)
    assert estimate(Workload(4096, 16384, 2), eu).total == pytest.approx(410.99)
    assert estimate(Workload(4096, 16384, 2, "ARM64"), eu).total == pytest.approx(332.7924)
    # 10 requests/s of 1 KiB: new connections 10/25 = 0.4 LCU, bytes 0.0343 GB/h; the
    # larger, 0.4 x 730 = 292 LCU-hours x 0.008 = 2.336 USD.
    assert lcu_per_hour(10, 1024) == pytest.approx(0.4)
    e = estimate(Workload(256, 512, 1, requests_per_second=10, log_bytes_per_request=0), us)
    assert e.usd("load balancer LCUs") == pytest.approx(2.336)


def test_without_a_load_balancer_neither_its_hours_nor_lcus_are_billed():
    w = Workload(512, 1024, 2, requests_per_second=10, load_balanced=False)
    e = estimate(w, book())
    assert e.usd("load balancer") == 0 and e.usd("load balancer LCUs") == 0
    # 29.5504 + 6.4897 and the logs of 10 requests/s: 7.3425 GB x 0.5 = 3.6713
    assert e.total == pytest.approx(29.5504 + 6.4897 + 10 * 300 * 730 * 3600 / 2**30 * 0.5)
