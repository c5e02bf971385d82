"""The monthly cost estimate of one deployment: pure arithmetic over a workload and a
price book (:mod:`mlops_core.cost.prices`). The one home of the cost model.

What a deployment costs, per month of 730 hours (AWS's own convention, 8,760 h / 12):

- **Fargate**: ``tasks x vCPU x 730`` vCPU-hours and ``tasks x GB x 730`` GB-hours at the
  region's rates for the task's CPU architecture (1024 CPU units = 1 vCPU, 1024 MiB of
  memory = 1 GB, as Fargate bills them).
- **Load balancer**: its share of the ALB's hours (``load_balancer_share``: 1 when the
  deployment has the load balancer to itself, as Terraform's one-ALB-per-env does; none
  at all, LCUs included, when it is not ``load_balanced``: services attached to no load
  balancer, as with ``MLOPS_LOAD_BALANCERS=none``) plus
  the LCU-hours of its own request rate. An LCU is 25 new connections/s, 3,000 active
  connections/min, 1 GB processed/h or 1,000 rule evaluations/s, and an hour is billed
  at the largest of the four. Counted here: new connections, taking every request as a
  new connection (an upper bound: keep-alive clients open fewer), and processed bytes.
  Left out: active connections (``rate x duration`` concurrent ones, under the new-
  connection dimension for any request shorter than two minutes) and rule evaluations
  (the first 10 rules are free; the platform's listeners have one).
- **S3**: the artifacts of the version served and the captured requests, per GB-month.
- **CloudWatch Logs**: ingestion of the access log, one line per request.

GB here is 2^30 bytes, as AWS bills storage, log and LCU bytes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from mlops_core.cost.prices import Architecture, PriceBook
from mlops_core.errors import GateFailed

HOURS_PER_MONTH = 730.0
SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600
GIB = float(1 << 30)
CPU_UNITS_PER_VCPU = 1024
MIB_PER_GB = 1024

# One LCU, per dimension counted.
LCU_NEW_CONNECTIONS_PER_SECOND = 25.0
LCU_PROCESSED_GB_PER_HOUR = 1.0

# Traffic assumptions, overridable per workload. A request of the seed's size with its
# response and HTTP headers is about 1 KiB through the load balancer; serving writes one
# JSON access-log line of ~270 bytes per request, and CloudWatch adds 26 bytes of
# overhead per event.
DEFAULT_BYTES_PER_REQUEST = 1024
DEFAULT_LOG_BYTES_PER_REQUEST = 300


class BudgetExceeded(GateFailed):
    reason = "BudgetExceeded"


@dataclass(frozen=True)
class Workload:
    """What a deployment uses: the sizes and counts an estimate multiplies prices by."""

    cpu: int  # Fargate CPU units per task
    memory: int  # MiB per task
    tasks: int
    architecture: Architecture = "X86_64"
    requests_per_second: float = 0.0
    bytes_per_request: int = DEFAULT_BYTES_PER_REQUEST
    log_bytes_per_request: int = DEFAULT_LOG_BYTES_PER_REQUEST
    artifact_bytes: int = 0
    capture_bytes: int = 0
    load_balancer_share: float = 1.0
    #: Behind a load balancer at all; without one, neither its hours nor LCUs are billed.
    load_balanced: bool = True


@dataclass(frozen=True)
class LineItem:
    name: str
    quantity: float  # per month
    unit: str
    unit_price: float  # USD per unit
    usd: float  # per month


@dataclass(frozen=True)
class Estimate:
    """A monthly estimate, item by item, with the prices' provenance."""

    items: tuple[LineItem, ...]
    region: str
    architecture: str
    price_source: str
    prices_as_of: str
    prices_note: str = ""
    workload: Workload | None = field(default=None, compare=False)

    @property
    def total(self) -> float:
        return sum(i.usd for i in self.items)

    def usd(self, name: str) -> float:
        return sum(i.usd for i in self.items if i.name == name)

    def to_dict(self) -> dict:
        return {
            "monthly_usd": round(self.total, 2),
            "items": [asdict(i) for i in self.items],
            "region": self.region,
            "architecture": self.architecture,
            "price_source": self.price_source,
            "prices_as_of": self.prices_as_of,
            "prices_note": self.prices_note,
        }

    def summary(self) -> str:
        """One line: the total and its largest parts."""
        parts = ", ".join(f"{i.name} ${i.usd:,.2f}" for i in self.items if i.usd >= 0.005)
        return f"${self.total:,.2f}/month ({parts or 'nothing billable'})"


def lcu_per_hour(requests_per_second: float, bytes_per_request: int) -> float:
    """LCUs billed per hour at a steady request rate (the dimensions counted above)."""
    new_connections = requests_per_second / LCU_NEW_CONNECTIONS_PER_SECOND
    processed = requests_per_second * bytes_per_request * 3600 / GIB / LCU_PROCESSED_GB_PER_HOUR
    return max(new_connections, processed)


def estimate(workload: Workload, book: PriceBook) -> Estimate:
    """The monthly estimate of ``workload`` at ``book``'s prices."""
    w, p = workload, book.prices
    rates = p.fargate[w.architecture]
    vcpu_hours = w.tasks * w.cpu / CPU_UNITS_PER_VCPU * HOURS_PER_MONTH
    gb_hours = w.tasks * w.memory / MIB_PER_GB * HOURS_PER_MONTH
    lb = 1.0 if w.load_balanced else 0.0
    lb_hours = lb * w.load_balancer_share * HOURS_PER_MONTH
    # The deployment's own traffic drives its LCUs; only the hourly charge is shared.
    lcu_hours = lb * lcu_per_hour(w.requests_per_second, w.bytes_per_request) * HOURS_PER_MONTH
    storage_gb = (w.artifact_bytes + w.capture_bytes) / GIB
    log_gb = w.requests_per_second * w.log_bytes_per_request * SECONDS_PER_MONTH / GIB

    def item(name: str, quantity: float, unit: str, price: float) -> LineItem:
        return LineItem(name, quantity, unit, price, quantity * price)

    items = (
        item("fargate vCPU", vcpu_hours, "vCPU-hours", rates.vcpu_hour),
        item("fargate memory", gb_hours, "GB-hours", rates.gb_hour),
        item("load balancer", lb_hours, "hours", p.alb_hour),
        item("load balancer LCUs", lcu_hours, "LCU-hours", p.lcu_hour),
        item("s3 storage", storage_gb, "GB-months", p.s3_gb_month),
        item("log ingestion", log_gb, "GB", p.logs_ingested_gb),
    )
    return Estimate(
        items=items,
        region=book.region,
        architecture=w.architecture,
        price_source=book.source,
        prices_as_of=book.as_of.isoformat(),
        prices_note=book.note,
        workload=w,
    )


def check_budget(
    estimate_: Estimate, max_monthly_usd: float | None, *, serving: str | None = None
) -> None:
    """Raise BudgetExceeded when the estimate is over ``max_monthly_usd`` (None: no
    budget). Compared in cents, as the status shows it. ``serving``: the version that
    stays live meanwhile, for the message."""
    if max_monthly_usd is None or round(estimate_.total, 2) <= max_monthly_usd:
        return
    kept = f" ({serving} is still served, as it was)" if serving else ""
    raise BudgetExceeded(
        f"the estimated monthly cost {estimate_.summary()} exceeds the budget "
        f"${max_monthly_usd:,.2f}; nothing changed{kept}",
        where="spec.budget.maxMonthlyUSD",
        hint="lower serving.replicas, cpu or memory, or raise the budget "
        f"(prices: {estimate_.price_source}, as of {estimate_.prices_as_of})",
    )


def per_thousand(usd: float, requests: float) -> float | None:
    """USD per 1,000 requests; None without requests."""
    return usd / requests * 1000 if requests > 0 else None
