"""Prices: what AWS charges for what a deployment uses, per region. The one home of them.

Two sources, one shape (:class:`RegionPrices`):

- the **AWS Price List API** (``pricing:GetProducts``, answered in us-east-1 for every
  region), when it is reachable and allowed;
- the **shipped table** ``price_table.json``, which states the date it was taken, when it
  is not (the local endpoint has no Price List API; a role may lack the permission).

Every :class:`PriceBook` says which one it came from and as of when, so every estimate
can say so too. :class:`PriceResolver` picks one per region (``auto``: the API, else the
table) and caches it: prices change a few times a year, not between two reconciles.

The products read from the API, by usage type (the part after the region prefix, e.g.
``USE1-Fargate-vCPU-Hours:perCPU``; S3 in us-east-1 has none):

    AmazonECS         Fargate-vCPU-Hours:perCPU, Fargate-GB-Hours (x86_64),
                      Fargate-ARM-vCPU-Hours:perCPU, Fargate-ARM-GB-Hours (arm64)
    AWSELB            LoadBalancerUsage, LCUUsage (product family Load Balancer-Application)
    AmazonS3          TimedStorage-ByteHrs (S3 Standard, first tier), per GB-month
    AmazonCloudWatch  DataProcessing-Bytes (log ingestion, standard class), per GB

Refresh the shipped table from the API (with credentials allowed to read prices):
``mlopsctl prices --write-table mlops_core/cost/price_table.json``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlops_core import aws
from mlops_core.config import PlatformSettings
from mlops_core.errors import InvalidInput, NotFound

Architecture = Literal["X86_64", "ARM64"]
ARCHITECTURES: tuple[Architecture, ...] = ("X86_64", "ARM64")
PriceSource = Literal["price-list-api", "shipped-table", "table-file"]
SOURCE_API: PriceSource = "price-list-api"
SOURCE_TABLE: PriceSource = "shipped-table"
#: A table of the shipped table's layout given as ``MLOPS_PRICE_TABLE`` (negotiated
#: prices, a region the shipped table lacks), used instead of the shipped one.
SOURCE_FILE: PriceSource = "table-file"
# A price table is a few KB; a file much larger than this is not one.
MAX_TABLE_BYTES = 1 << 20

TABLE_FILE = "price_table.json"
# The Price List API's endpoint region (it serves the prices of every region).
PRICING_REGION = "us-east-1"
# No unit priced here costs this much (the dearest, a vCPU-hour, is a few cents): a
# larger, infinite or NaN price is a broken answer, not a price to multiply.
MAX_UNIT_PRICE = 100.0
# How much of the Price List API one region's prices may take: its answers for one
# region's Fargate, ALB, S3 and log products are a few pages, so more pages (a token
# that never ends) or more time than this is an API not answering, and the table is used.
MAX_PAGES = 50
FETCH_SECONDS = 30.0


class PricesUnavailable(NotFound):
    reason = "PricesUnavailable"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: A unit price in USD: positive, finite and below MAX_UNIT_PRICE.
UnitPrice = Annotated[float, Field(gt=0, lt=MAX_UNIT_PRICE, allow_inf_nan=False)]


class FargateRates(_Frozen):
    vcpu_hour: UnitPrice = Field(description="USD per vCPU-hour.")
    gb_hour: UnitPrice = Field(description="USD per GB-hour of memory.")


class RegionPrices(_Frozen):
    """On-demand USD prices of one region."""

    fargate: dict[Architecture, FargateRates]
    alb_hour: UnitPrice = Field(description="Application Load Balancer, per hour.")
    lcu_hour: UnitPrice = Field(description="Load Balancer Capacity Unit, per hour.")
    s3_gb_month: UnitPrice = Field(description="S3 Standard storage, per GB-month.")
    logs_ingested_gb: UnitPrice = Field(description="CloudWatch Logs ingestion, per GB.")


class PriceTable(_Frozen):
    taken: date
    source: str
    currency: Literal["USD"] = "USD"
    regions: dict[str, RegionPrices]


@dataclass(frozen=True)
class PriceBook:
    """The prices one estimate uses, and where they came from."""

    region: str
    prices: RegionPrices
    source: PriceSource
    as_of: date
    #: Why the table was used instead of the API, when it was.
    note: str = ""
    #: The table file, for SOURCE_FILE.
    origin: str = ""

    def describe(self) -> str:
        if self.source == SOURCE_API:
            return f"AWS Price List API ({self.region}, published {self.as_of})"
        why = f"; {self.note}" if self.note else ""
        return f"{self.table_name()} taken {self.as_of} ({self.region}){why}"

    def table_name(self) -> str:
        if self.source == SOURCE_FILE:
            return f"price table {self.origin}"
        return "shipped price table"


# -- the shipped table ------------------------------------------------------------------
@lru_cache(maxsize=1)
def shipped_table() -> PriceTable:
    text = resources.files(__package__).joinpath(TABLE_FILE).read_text()
    return PriceTable.model_validate_json(text)


def from_table(
    region: str, *, note: str = "", table: PriceTable | None = None, origin: str = ""
) -> PriceBook:
    """``region``'s prices from ``table`` (default: the shipped one); ``origin``: the file
    ``table`` was read from (MLOPS_PRICE_TABLE)."""
    table = table or shipped_table()
    name = f"the price table {origin}" if origin else "the shipped price table"
    prices = table.regions.get(region)
    if prices is None:
        raise PricesUnavailable(
            f"{name} has no prices for region {region!r}" + (f" ({note})" if note else ""),
            hint=f"it covers {', '.join(sorted(table.regions))}; allow pricing:GetProducts "
            "so the AWS Price List API is used, or give a table with the region as "
            "MLOPS_PRICE_TABLE (the layout of mlops_core/cost/price_table.json)",
        )
    return PriceBook(
        region, prices, SOURCE_FILE if origin else SOURCE_TABLE, table.taken, note, origin
    )


def load_table(path: Path) -> PriceTable:
    """A price table file (``MLOPS_PRICE_TABLE``), in the shipped table's layout.
    InvalidInput, naming the variable, when it is not a readable regular file of at most
    MAX_TABLE_BYTES holding a valid table (every price positive, finite, plausible)."""
    where = f"MLOPS_PRICE_TABLE={path}"
    hint = "give a file written by 'mlopsctl prices --write-table FILE', or unset it"
    try:
        if not path.exists():
            raise InvalidInput(f"{where}: no such file", hint=hint)
        if not path.is_file():  # a directory, a device, a pipe: nothing to read a table from
            raise InvalidInput(f"{where}: not a regular file", hint=hint)
        if path.stat().st_size > MAX_TABLE_BYTES:
            raise InvalidInput(f"{where}: larger than {MAX_TABLE_BYTES} bytes", hint=hint)
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"{where}: cannot read it: {exc.strerror or exc}", hint=hint) from None
    except UnicodeDecodeError:
        raise InvalidInput(f"{where}: not UTF-8 text", hint=hint) from None
    try:
        return PriceTable.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        at = ".".join(str(part) for part in first["loc"]) or "the document"
        raise InvalidInput(
            f"{where} is not a price table: {at}: {first['msg']}", hint=hint
        ) from None


# -- the Price List API -----------------------------------------------------------------
class PriceListIncomplete(Exception):
    """The API answered, but without a product the estimate needs, or with something
    that is not a price list (a malformed document, an implausible price, pages without
    end)."""


def _on_demand_usd(product: dict[str, Any]) -> float:
    """The first-tier on-demand USD price of a Price List product document."""
    for term in product["terms"]["OnDemand"].values():
        dims = sorted(term["priceDimensions"].values(), key=lambda d: float(d["beginRange"]))
        return float(dims[0]["pricePerUnit"]["USD"])
    raise PriceListIncomplete(f"no on-demand term in {product['product'].get('sku')}")


def _usage_matches(usagetype: str, usage: str) -> bool:
    """``usage`` with at most a region prefix (``USE1-``), so that e.g.
    ``USE1-SpotUsage-Fargate-vCPU-Hours:perCPU`` is not taken for on-demand."""
    if usagetype == usage:
        return True
    prefix, _, rest = usagetype.partition("-")
    return rest == usage and prefix.isalnum()


def _pick(products: Iterable[dict[str, Any]], usage: str) -> float:
    for p in products:
        if _usage_matches(p["product"]["attributes"].get("usagetype", ""), usage):
            return _on_demand_usd(p)
    raise PriceListIncomplete(f"no {usage} product")


def _filters(region: str, **terms: str) -> list[dict[str, str]]:
    out = [{"Type": "TERM_MATCH", "Field": "regionCode", "Value": region}]
    for field, value in terms.items():
        kind, _, text = value.partition(":")
        out.append({"Type": kind, "Field": field, "Value": text})
    return out


def _products(
    client, service_code: str, filters: list[dict[str, str]], deadline: float
) -> list[dict]:
    """The product documents of every page, as dicts; PriceListIncomplete for pages
    that are not lists of JSON documents, or that do not end by MAX_PAGES or
    ``deadline`` (a ``time.monotonic`` value)."""
    out: list[dict] = []
    paginator = client.get_paginator("get_products")
    pages = paginator.paginate(ServiceCode=service_code, Filters=filters, FormatVersion="aws_v1")
    for n, page in enumerate(pages, 1):
        docs = page.get("PriceList", [])
        if not isinstance(docs, list) or not all(isinstance(d, str) for d in docs):
            raise PriceListIncomplete(f"{service_code}: PriceList is not a list of documents")
        for doc in docs:
            try:
                product = json.loads(doc)
            except ValueError as exc:
                raise PriceListIncomplete(f"{service_code}: a product is not JSON: {exc}") from None
            if not isinstance(product, dict):
                raise PriceListIncomplete(f"{service_code}: a product is not a JSON object")
            out.append(product)
        if n >= MAX_PAGES or time.monotonic() > deadline:
            raise PriceListIncomplete(
                f"{service_code}: no last page after {n} pages (at most {MAX_PAGES} pages "
                f"and {FETCH_SECONDS:.0f}s for a region)"
            )
    return out


def _published(products: Iterable[dict[str, Any]]) -> date | None:
    dates = [p.get("publicationDate", "")[:10] for p in products]
    return max((date.fromisoformat(d) for d in dates if d), default=None)


def fetch_region_prices(region: str) -> tuple[RegionPrices, date]:
    """One region's prices from the Price List API and their publication date. Raises
    ClientError/BotoCoreError when it is unreachable or refused, PriceListIncomplete
    when a product is missing or the answer is not a usable price list (malformed
    documents, a price that is not positive and finite or above MAX_UNIT_PRICE, pages
    without end)."""
    client = aws.client("pricing", region=PRICING_REGION, config=aws.FAIL_FAST_CONFIG)
    deadline = time.monotonic() + FETCH_SECONDS

    def products(service_code: str, **terms: str) -> list[dict]:
        return _products(client, service_code, _filters(region, **terms), deadline)

    ecs = products("AmazonECS", usagetype="CONTAINS:Fargate")
    elb = products("AWSELB", productFamily="TERM_MATCH:Load Balancer-Application")
    s3 = products("AmazonS3", usagetype="CONTAINS:TimedStorage-ByteHrs")
    logs = products("AmazonCloudWatch", usagetype="CONTAINS:DataProcessing-Bytes")
    try:
        return _region_prices(ecs, elb, s3, logs)
    except PriceListIncomplete:
        raise
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise PriceListIncomplete(
            f"implausible price {where}={first.get('input')!r}: {first['msg']}"
        ) from None
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
        raise PriceListIncomplete(
            f"malformed product document ({type(exc).__name__}: {exc})"
        ) from None


def _region_prices(
    ecs: list[dict], elb: list[dict], s3: list[dict], logs: list[dict]
) -> tuple[RegionPrices, date]:
    prices = RegionPrices(
        fargate={
            "X86_64": FargateRates(
                vcpu_hour=_pick(ecs, "Fargate-vCPU-Hours:perCPU"),
                gb_hour=_pick(ecs, "Fargate-GB-Hours"),
            ),
            "ARM64": FargateRates(
                vcpu_hour=_pick(ecs, "Fargate-ARM-vCPU-Hours:perCPU"),
                gb_hour=_pick(ecs, "Fargate-ARM-GB-Hours"),
            ),
        },
        alb_hour=_pick(elb, "LoadBalancerUsage"),
        lcu_hour=_pick(elb, "LCUUsage"),
        s3_gb_month=_pick(s3, "TimedStorage-ByteHrs"),
        logs_ingested_gb=_pick(logs, "DataProcessing-Bytes"),
    )
    published = _published([*ecs, *elb, *s3, *logs]) or datetime.now(UTC).date()
    return prices, published


def from_price_list_api(region: str) -> PriceBook:
    prices, published = fetch_region_prices(region)
    return PriceBook(region, prices, SOURCE_API, published)


def _why(exc: BaseException) -> str:
    """A short reason (an endpoint without the API answers with an HTML error page)."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = str(error.get("Code") or status)
        code = f"HTTP {code}" if code.isdigit() else code
        message = error.get("Message", "")
        detail = "" if not message or message.lstrip().startswith("<") else f": {message}"
        return f"Price List API unavailable: {code}{detail}"[:200]
    return f"Price List API unavailable: {type(exc).__name__}: {exc}"[:200]


# -- choosing, with a cache -------------------------------------------------------------
class PriceResolver:
    """Price books by region: ``mode`` ``auto`` (the API, else the table, saying why),
    ``api`` (the API or an error) or ``table``. Thread-safe; a fallback is retried after
    ``retry_seconds``, a success kept for ``cache_seconds``."""

    def __init__(
        self,
        mode: Literal["auto", "api", "table"] = "auto",
        *,
        cache_seconds: float = 86400.0,
        retry_seconds: float = 3600.0,
        fetch: Callable[[str], PriceBook] = from_price_list_api,
        clock: Callable[[], float] = time.monotonic,
        deadline_seconds: float = FETCH_SECONDS + 10.0,
        table: PriceTable | None = None,
        table_origin: str = "",
    ):
        self.mode = mode
        #: The table used instead of the shipped one (MLOPS_PRICE_TABLE), and its file.
        self.table = table
        self.table_origin = table_origin if table is not None else ""
        #: The longest one region's fetch may take, a body that trickles in included
        #: (botocore's read timeout bounds each read, not a response).
        self.deadline_seconds = deadline_seconds
        self.cache_seconds = cache_seconds
        self.retry_seconds = retry_seconds
        self.fetch = fetch
        self.clock = clock
        self._lock = threading.Lock()
        self._books: dict[str, tuple[float, PriceBook]] = {}

    @classmethod
    def from_settings(cls, settings: PlatformSettings) -> PriceResolver:
        """``MLOPS_PRICES`` (auto | api | table), ``MLOPS_PRICE_CACHE_SECONDS`` (how long a
        resolved book is kept), ``MLOPS_PRICE_RETRY_SECONDS`` (when a fallback to the
        table tries the API again) and ``MLOPS_PRICE_TABLE`` (a table file used instead
        of the shipped table; read here, so a bad one fails at start)."""
        path = settings.price_table
        return cls(
            settings.prices,
            cache_seconds=settings.price_cache_seconds,
            retry_seconds=settings.price_retry_seconds,
            table=load_table(path) if path is not None else None,
            table_origin=str(path) if path is not None else "",
        )

    def get(self, region: str) -> PriceBook:
        """The region's price book; raises PricesUnavailable when there is none."""
        now = self.clock()
        with self._lock:
            hit = self._books.get(region)
        if hit is not None and now < hit[0]:
            return hit[1]
        book, ttl = self._resolve(region)
        with self._lock:
            self._books[region] = (now + ttl, book)
        return book

    def find(self, region: str) -> PriceBook | None:
        """Like :meth:`get`, None instead of an error (an estimate is optional)."""
        try:
            return self.get(region)
        except PricesUnavailable:
            return None

    def _resolve(self, region: str) -> tuple[PriceBook, float]:
        if self.mode == "table":
            return self._table(region), self.cache_seconds
        error: BaseException
        try:
            book = aws.within(self.deadline_seconds, lambda: self.fetch(region))
            return book, self.cache_seconds
        except aws.CallTimedOut as exc:
            error = PriceListIncomplete(str(exc))
        except (ClientError, BotoCoreError, PriceListIncomplete, KeyError, ValueError) as exc:
            error = exc
        if self.mode == "api":
            raise PricesUnavailable(
                f"no prices for {region}: {_why(error)}",
                hint="allow pricing:GetProducts, or set MLOPS_PRICES=auto to fall back "
                "to the shipped table",
            )
        return self._table(region, note=_why(error)), self.retry_seconds

    def _table(self, region: str, note: str = "") -> PriceBook:
        return from_table(region, note=note, table=self.table, origin=self.table_origin)
