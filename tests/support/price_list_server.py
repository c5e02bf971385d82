"""A local AWS Price List API (``AWSPriceListService.GetProducts``) over HTTP.

moto implements no ``pricing`` service, so the tests of the Price List path run boto3
against this small server instead (``AWS_ENDPOINT_URL_PRICING``). It answers in the real
API's shape (JSON 1.1; ``PriceList`` as JSON strings of product documents; ``NextToken``
pages) and applies the filters the way the API documents them: ``TERM_MATCH`` and
``EQUALS`` compare an attribute (or ``ServiceCode``) exactly, ``CONTAINS`` as a
substring, ``ANY_OF`` against a comma-separated list.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PAGE_SIZE = 2  # small, so that every client must follow NextToken


def product(
    service: str,
    usagetype: str,
    prices: list[float] | float,
    *,
    region: str = "us-east-1",
    family: str = "",
    published: str = "2026-11-20T00:00:00Z",
    **attributes: str,
) -> dict[str, Any]:
    """A product document as GetProducts returns it; ``prices`` as tiers (first at 0)."""
    tiers = prices if isinstance(prices, list) else [prices]
    sku = f"SKU{abs(hash((service, usagetype, region, family))) % 10**8:08d}"
    dims = {}
    for n, price in enumerate(tiers):
        dims[f"{sku}.JRTCKXETXF.{n}"] = {
            "unit": "Hrs",
            "beginRange": str(n * 1000),
            "endRange": str((n + 1) * 1000) if n + 1 < len(tiers) else "Inf",
            "pricePerUnit": {"USD": f"{price:.10f}"},
            "description": f"{usagetype} tier {n}",
        }
    return {
        "product": {
            "productFamily": family,
            "attributes": {
                "regionCode": region,
                "usagetype": usagetype,
                "servicecode": service,
                **({"productFamily": family} if family else {}),
                **attributes,
            },
            "sku": sku,
        },
        "serviceCode": service,
        "terms": {
            "OnDemand": {
                f"{sku}.JRTCKXETXF": {
                    "priceDimensions": dims,
                    "sku": sku,
                    "effectiveDate": published,
                }
            }
        },
        "version": "20261120000000",
        "publicationDate": published,
    }


def _matches(doc: dict[str, Any], service: str, filters: list[dict[str, str]]) -> bool:
    if doc["serviceCode"] != service:
        return False
    attrs = {**doc["product"]["attributes"], "ServiceCode": doc["serviceCode"]}
    for f in filters:
        value = attrs.get(f["Field"])
        if value is None:
            return False
        kind = f["Type"]
        if kind in ("TERM_MATCH", "EQUALS") and value != f["Value"]:
            return False
        if kind == "CONTAINS" and f["Value"] not in value:
            return False
        if kind == "ANY_OF" and value not in f["Value"].split(","):
            return False
        if kind == "NONE_OF" and value in f["Value"].split(","):
            return False
    return True


class PriceListServer:
    def __init__(self, products: list[dict[str, Any]]):
        self.products = products
        self.requests: list[dict[str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
                target = self.headers.get("X-Amz-Target", "")
                if target != "AWSPriceListService.GetProducts":
                    self._send(400, {"__type": "InvalidParameterException", "Message": target})
                    return
                server.requests.append(body)
                found = [
                    d
                    for d in server.products
                    if _matches(d, body["ServiceCode"], body.get("Filters", []))
                ]
                start = int(body.get("NextToken") or 0)
                page = found[start : start + PAGE_SIZE]
                out: dict[str, Any] = {
                    "FormatVersion": "aws_v1",
                    "PriceList": [json.dumps(d) for d in page],
                }
                if start + PAGE_SIZE < len(found):
                    out["NextToken"] = str(start + PAGE_SIZE)
                self._send(200, out)

            def _send(self, code: int, doc: dict[str, Any]) -> None:
                data = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"


@contextmanager
def price_list_server(products: list[dict[str, Any]]) -> Iterator[PriceListServer]:
    server = PriceListServer(products)
    thread = threading.Thread(target=server.httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
        thread.join(timeout=5)
