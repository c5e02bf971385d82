"""A hostile or broken Price List API and Cost Explorer, over HTTP: every answer that is
not a usable price list falls back to the shipped table and says why; every answer that
is not a usable bill leaves the estimate alone with a note. Never a traceback."""

from __future__ import annotations

import itertools
import json
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from price_list_server import product

from mlops_core.config import PlatformSettings
from mlops_core.cost import actual as actual_module
from mlops_core.cost import prices as prices_module
from mlops_core.cost.actual import actual_costs
from mlops_core.cost.prices import (
    SOURCE_FILE,
    SOURCE_TABLE,
    PriceListIncomplete,
    PriceResolver,
    PricesUnavailable,
    fetch_region_prices,
    shipped_table,
)
from mlops_core.errors import InvalidInput

REGION = "us-east-1"
GOOD = [
    product("AmazonECS", "USE1-Fargate-vCPU-Hours:perCPU", 0.05),
    product("AmazonECS", "USE1-Fargate-GB-Hours", 0.005),
    product("AmazonECS", "USE1-Fargate-ARM-vCPU-Hours:perCPU", 0.04),
    product("AmazonECS", "USE1-Fargate-ARM-GB-Hours", 0.004),
    product("AWSELB", "USE1-LoadBalancerUsage", 0.03, family="Load Balancer-Application"),
    product("AWSELB", "USE1-LCUUsage", 0.01, family="Load Balancer-Application"),
    product("AmazonS3", "TimedStorage-ByteHrs", 0.03),
    product("AmazonCloudWatch", "USE1-DataProcessing-Bytes", 0.6),
]

#: (status, content type, body) for one request's JSON body.
Answer = Callable[[dict], tuple[int, str, bytes]]
JSON = "application/x-amz-json-1.1"


@contextmanager
def http_server(answer: Answer) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
            code, ctype, data = answer(body)
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _docs(body: dict) -> list[dict]:
    """The good products of the service asked for (filters ignored: _pick chooses)."""
    return [json.loads(json.dumps(d)) for d in GOOD if d["serviceCode"] == body["ServiceCode"]]


def _list(docs: list) -> tuple[int, str, bytes]:
    return 200, JSON, json.dumps({"PriceList": docs}).encode()


def _priced(value: str) -> Answer:
    def answer(body: dict):
        docs = _docs(body)
        for d in docs:
            for term in d["terms"]["OnDemand"].values():
                for dim in term["priceDimensions"].values():
                    dim["pricePerUnit"]["USD"] = value
        return _list([json.dumps(d) for d in docs])

    return answer


def _endless() -> Answer:
    tokens = itertools.count()

    def answer(body: dict):
        doc = {"PriceList": [json.dumps(d) for d in _docs(body)], "NextToken": f"t{next(tokens)}"}
        return 200, JSON, json.dumps(doc).encode()

    return answer


PRICE_LIST_ANSWERS: dict[str, tuple[Answer, str]] = {
    "an HTML page": (lambda b: (200, "text/html", b"<html>Welcome to nginx</html>"), "no Fargate"),
    "a 502 HTML page": (lambda b: (502, "text/html", b"<html>Bad Gateway</html>"), "HTTP 502"),
    "partial JSON": (lambda b: (200, JSON, b'{"PriceList": ["{\\"prod'), "no Fargate"),
    "documents that are not JSON": (lambda b: _list(["not json", "{"]), "not JSON"),
    "documents that are numbers": (lambda b: _list([json.dumps(1), "[1]"]), "not a JSON object"),
    "a list of numbers": (lambda b: _list([1, 2]), "not a list of documents"),
    "a product without attributes": (
        lambda b: _list([json.dumps({"product": {}})]),
        "malformed product document (KeyError",
    ),
    "terms as a list": (
        lambda b: _list([json.dumps(dict(d, terms={"OnDemand": []})) for d in _docs(b)]),
        "malformed product document (AttributeError",
    ),
    "a bad publication date": (
        lambda b: _list([json.dumps(dict(d, publicationDate="yesterday")) for d in _docs(b)]),
        "malformed product document (ValueError",
    ),
    "a price that is not a number": (_priced("abc"), "malformed product document"),
    "a negative price": (_priced("-1"), "implausible price vcpu_hour=-1.0"),
    "a zero price": (_priced("0"), "implausible price vcpu_hour=0.0"),
    "a NaN price": (_priced("NaN"), "finite number"),
    "an infinite price": (_priced("Infinity"), "finite number"),
    "an absurd price": (_priced("1e308"), "less than 100"),
    "pages without end": (_endless(), "no last page after 3 pages"),
    "access denied": (
        lambda b: (400, JSON, b'{"__type": "AccessDeniedException", "Message": "no pricing"}'),
        "AccessDeniedException: no pricing",
    ),
}


@pytest.fixture
def credentials(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setattr(prices_module, "MAX_PAGES", 3)


def test_the_good_answer_is_used(credentials, monkeypatch):
    with http_server(lambda b: _list([json.dumps(d) for d in _docs(b)])) as url:
        monkeypatch.setenv("AWS_ENDPOINT_URL_PRICING", url)
        prices, _ = fetch_region_prices(REGION)
    assert prices.fargate["X86_64"].vcpu_hour == 0.05


@pytest.mark.parametrize("case", list(PRICE_LIST_ANSWERS))
def test_a_broken_price_list_falls_back_to_the_table_saying_why(case, credentials, monkeypatch):
    answer, why = PRICE_LIST_ANSWERS[case]
    with http_server(answer) as url:
        monkeypatch.setenv("AWS_ENDPOINT_URL_PRICING", url)
        got = PriceResolver("auto").get(REGION)
        assert got.source == SOURCE_TABLE
        assert got.note.startswith("Price List API unavailable: ")
        assert why in got.note
        assert "\n" not in got.note
        # mode api: a clear error naming the same reason, not a traceback
        with pytest.raises(PricesUnavailable, match="Price List API unavailable"):
            PriceResolver("api").get(REGION)


def test_an_unreachable_price_list_falls_back(credentials, monkeypatch):
    with http_server(lambda b: (200, JSON, b"{}")) as url:
        pass  # closed: nothing listens there any more
    monkeypatch.setenv("AWS_ENDPOINT_URL_PRICING", url)
    got = PriceResolver("auto").get(REGION)
    assert got.source == SOURCE_TABLE and "Could not connect" in got.note


def test_endless_pages_stop_at_the_deadline_too(credentials, monkeypatch):
    monkeypatch.setattr(prices_module, "MAX_PAGES", 10**6)
    monkeypatch.setattr(prices_module, "FETCH_SECONDS", 0.3)
    with http_server(_endless()) as url:
        monkeypatch.setenv("AWS_ENDPOINT_URL_PRICING", url)
        with pytest.raises(PriceListIncomplete, match="no last page"):
            fetch_region_prices(REGION)


# -- Cost Explorer ------------------------------------------------------------------------
def _day(groups: list, **extra) -> dict:
    return {"TimePeriod": {"Start": "2026-11-30", "End": "2026-12-01"}, "Groups": groups, **extra}


def _group(key: str, amount: str) -> dict:
    return {"Keys": [f"mlops:deployment${key}"], "Metrics": {"UnblendedCost": {"Amount": amount}}}


def _bill(*results: dict, **extra) -> Answer:
    return lambda b: (200, JSON, json.dumps({"ResultsByTime": list(results), **extra}).encode())


def _ce_error(code: str, message: str) -> Answer:
    return lambda b: (400, JSON, json.dumps({"__type": code, "Message": message}).encode())


def _endless_bill() -> Answer:
    tokens = itertools.count()

    def answer(body: dict):
        doc = {
            "ResultsByTime": [_day([_group("a-prod", "0.01")])],
            "NextPageToken": f"t{next(tokens)}",
        }
        return 200, JSON, json.dumps(doc).encode()

    return answer


CE_ANSWERS: dict[str, tuple[Answer, str]] = {
    "access denied": (
        _ce_error("AccessDeniedException", "not authorized to perform: ce:GetCostAndUsage"),
        "allow ce:GetCostAndUsage",
    ),
    "Cost Explorer not enabled": (
        _ce_error("AccessDeniedException", "User not enabled for cost explorer access"),
        "enable Cost Explorer in the Billing console",
    ),
    "data unavailable": (
        _ce_error("DataUnavailableException", "Data is not available."),
        "no data for this window yet",
    ),
    "an amount that is not a number": (
        _bill(_day([_group("a-prod", "abc")])),
        "not a cost report (ValueError",
    ),
    "a NaN amount": (_bill(_day([_group("a-prod", "NaN")])), "an amount of nan USD"),
    "an infinite amount": (_bill(_day([_group("a-prod", "Infinity")])), "an amount of inf USD"),
    "a group without keys": (_bill(_day([{"Metrics": {}}])), "KeyError"),
    "a group with empty keys": (_bill(_day([{"Keys": [], "Metrics": {}}])), "IndexError"),
    "results that are a string": (lambda b: (200, JSON, b'{"ResultsByTime": "x"}'), "not a cost"),
    "an HTML page": (lambda b: (200, "text/html", b"<html>oops</html>"), "no data for the window"),
    "pages without end": (_endless_bill(), "no last page after 3 pages"),
}


@pytest.mark.parametrize("case", list(CE_ANSWERS))
def test_a_broken_or_refused_bill_is_a_reason_not_a_crash(case, credentials, monkeypatch):
    answer, why = CE_ANSWERS[case]
    monkeypatch.setattr(actual_module, "MAX_PAGES", 3)
    with http_server(answer) as url:
        monkeypatch.setenv("AWS_ENDPOINT_URL_COST_EXPLORER", url)
        got = actual_costs("mlops", "a", date(2026, 11, 1), date(2026, 12, 1))
    assert not got.available and got.by_deployment == {}
    assert why in got.reason, got.reason
    assert "\n" not in got.reason


def test_credits_are_negative_amounts_and_kept(credentials, monkeypatch):
    bill = _bill(_day([_group("a-prod", "2.5"), _group("a-prod", "-1.25"), _group("", "0.5")]))
    with http_server(bill) as url:
        monkeypatch.setenv("AWS_ENDPOINT_URL_COST_EXPLORER", url)
        got = actual_costs("mlops", "a", date(2026, 11, 1), date(2026, 12, 1))
    assert got.available and got.by_deployment == {"a-prod": 1.25} and got.shared == 0.5


def test_an_answer_that_trickles_in_is_given_up_at_the_deadline():
    """botocore's read timeout bounds each read, so a body sent a byte at a time never
    trips it; the resolver's deadline bounds the whole fetch."""
    import time

    def trickle(region):
        time.sleep(5)
        raise AssertionError("waited for")

    started = time.monotonic()
    got = PriceResolver("auto", fetch=trickle, deadline_seconds=0.2).get(REGION)
    assert time.monotonic() - started < 2
    assert got.source == SOURCE_TABLE and "no complete answer within 0.2s" in got.note
    with pytest.raises(PricesUnavailable, match="no complete answer"):
        PriceResolver("api", fetch=trickle, deadline_seconds=0.2).get(REGION)


def test_errors_of_the_fetch_reach_the_resolver_through_the_deadline():
    def refused(region):
        raise PriceListIncomplete("no LCUUsage product")

    got = PriceResolver("auto", fetch=refused).get(REGION)
    assert got.source == SOURCE_TABLE and "no LCUUsage product" in got.note


# -- MLOPS_PRICE_TABLE: a table file instead of the shipped one -----------------------------
def _table_doc() -> dict:
    doc = json.loads(shipped_table().model_dump_json())
    doc["regions"]["ap-south-1"] = dict(doc["regions"]["us-east-1"], alb_hour=0.0239)
    return doc


def test_a_table_file_is_used_instead_of_the_shipped_one(tmp_path, monkeypatch):
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(_table_doc()))
    monkeypatch.setenv("MLOPS_PRICE_TABLE", str(path))
    monkeypatch.setenv("MLOPS_PRICES", "table")
    resolver = PriceResolver.from_settings(PlatformSettings())
    got = resolver.get("ap-south-1")  # a region the shipped table lacks
    assert (got.source, got.origin, got.prices.alb_hour) == (SOURCE_FILE, str(path), 0.0239)
    assert got.describe().startswith(f"price table {path} taken 2026-12-01 (ap-south-1)")
    with pytest.raises(PricesUnavailable, match=f"the price table {path} has no prices"):
        resolver.get("ap-east-1")

    # auto: the file is the fallback, saying why the API was not used
    def refused(region):
        raise PriceListIncomplete("no LCUUsage product")

    auto = PriceResolver("auto", fetch=refused, table=resolver.table, table_origin=str(path))
    got = auto.get("ap-south-1")
    assert got.source == SOURCE_FILE and "no LCUUsage product" in got.note


def _write(path, content: str | bytes) -> None:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)


def _negative() -> str:
    doc = _table_doc()
    doc["regions"]["us-east-1"]["lcu_hour"] = -1
    return json.dumps(doc)


BAD_TABLES: dict[str, tuple[Callable[..., None] | None, str]] = {
    "missing": (None, "no such file"),
    "a directory": (lambda p: p.mkdir(), "not a regular file"),
    "a pipe": (lambda p: os.mkfifo(p), "not a regular file"),
    "too large": (lambda p: _write(p, " " * (prices_module.MAX_TABLE_BYTES + 1)), "larger than"),
    "not UTF-8": (lambda p: _write(p, b"\xff\xfe\x00"), "not UTF-8 text"),
    "truncated": (lambda p: _write(p, json.dumps(_table_doc())[:300]), "Invalid JSON"),
    "a negative price": (lambda p: _write(p, _negative()), "lcu_hour: Input should be greater"),
    "an infinite price": (
        lambda p: _write(
            p, json.dumps(_table_doc()).replace('"alb_hour": 0.0225', '"alb_hour": 1e999', 1)
        ),
        "alb_hour: Input should be a finite number",
    ),
    "an unknown field": (
        lambda p: _write(p, json.dumps({**_table_doc(), "discount": 0.5})),
        "discount: Extra inputs are not permitted",
    ),
}


@pytest.mark.parametrize("case", list(BAD_TABLES))
def test_a_bad_table_file_is_a_clear_error_naming_the_variable(case, tmp_path, monkeypatch):
    make, message = BAD_TABLES[case]
    path = tmp_path / "prices.json"
    if make is not None:
        make(path)
    monkeypatch.setenv("MLOPS_PRICE_TABLE", str(path))
    with pytest.raises(InvalidInput) as info:
        PriceResolver.from_settings(PlatformSettings())
    assert f"MLOPS_PRICE_TABLE={path}" in info.value.what
    assert message in info.value.what and info.value.exit_code == 2


def test_a_bill_that_does_not_arrive_in_time_is_a_reason(credentials, monkeypatch):
    import time

    answered = threading.Event()

    def slow(body: dict):
        time.sleep(8)  # under botocore's read timeout, over the deadline
        answered.set()
        return 200, JSON, b'{"ResultsByTime": []}'

    monkeypatch.setattr(actual_module, "DEADLINE_SECONDS", 0.3)
    with http_server(slow) as url:
        monkeypatch.setenv("AWS_ENDPOINT_URL_COST_EXPLORER", url)
        got = actual_costs("mlops", "a", date(2026, 11, 1), date(2026, 12, 1))
        # Back before the bill came, however slow the machine (no wall-clock limit here).
        assert not answered.is_set()
    assert not got.available
    assert got.reason == "Cost Explorer unavailable: no complete answer within 0.3s"
