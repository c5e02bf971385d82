"""What AWS billed: Cost Explorer's ``GetCostAndUsage``, filtered to one project's cost
allocation tags and grouped by ``mlops:deployment``.

The tags are only in the bill once they are activated as cost allocation tags in the
Billing console (and from then on: AWS does not tag spend retroactively), and Cost
Explorer must be enabled for the account. Costs tagged with the project but no deployment
(the artifact bucket, the repositories, the cluster, training) come back under the empty
deployment, reported as the project's shared cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date

from botocore.exceptions import BotoCoreError, ClientError

from mlops_core import aws
from mlops_core.naming import COST_TAG_DEPLOYMENT, COST_TAG_PLATFORM, COST_TAG_PROJECT

METRIC = "UnblendedCost"
# Cost Explorer's endpoint region (its data covers every region).
CE_REGION = "us-east-1"
# A year of daily results is a few pages; a token that never ends is not a bill.
MAX_PAGES = 100
# The longest the bill may take to arrive, every page (an answer that trickles in
# included; botocore's read timeout bounds each read, not a response).
DEADLINE_SECONDS = 40.0


class NotACostReport(Exception):
    """Cost Explorer answered something that is not a GetCostAndUsage result."""


@dataclass(frozen=True)
class ActualCost:
    """USD billed between ``start`` (inclusive) and ``end`` (exclusive), by deployment."""

    start: date
    end: date
    by_deployment: dict[str, float] = field(default_factory=dict)
    #: Tagged with the project but with no deployment (shared by its deployments).
    shared: float = 0.0
    #: Cost Explorer answered with data for the window.
    available: bool = False
    #: Some of the figures are still estimates (the month is not closed).
    estimated: bool = False
    #: Why there are no figures, when there are none.
    reason: str = ""


def _request(platform: str, project: str, start: date, end: date) -> dict:
    def tag(key: str, value: str) -> dict:
        return {"Tags": {"Key": key, "Values": [value], "MatchOptions": ["EQUALS"]}}

    return {
        "TimePeriod": {"Start": start.isoformat(), "End": end.isoformat()},
        "Granularity": "DAILY",
        "Metrics": [METRIC],
        "Filter": {"And": [tag(COST_TAG_PLATFORM, platform), tag(COST_TAG_PROJECT, project)]},
        "GroupBy": [{"Type": "TAG", "Key": COST_TAG_DEPLOYMENT}],
    }


def actual_costs(platform: str, project: str, start: date, end: date) -> ActualCost:
    """The project's billed cost per deployment over [start, end). Never raises for what
    an account may lack (Cost Explorer off, no permission) or a broken answer: ``reason``
    says it."""
    try:
        return aws.within(DEADLINE_SECONDS, lambda: _actual_costs(platform, project, start, end))
    except aws.CallTimedOut as exc:
        return ActualCost(start, end, reason=f"Cost Explorer unavailable: {exc}")


def _actual_costs(platform: str, project: str, start: date, end: date) -> ActualCost:
    ce = aws.client("ce", region=CE_REGION, config=aws.FAIL_FAST_CONFIG)
    request = _request(platform, project, start, end)
    by_deployment: dict[str, float] = {}
    shared = 0.0
    estimated = False
    periods = 0
    token = None
    try:
        for _ in range(MAX_PAGES):
            page = ce.get_cost_and_usage(**request, **({"NextPageToken": token} if token else {}))
            for result in page.get("ResultsByTime", []):
                periods += 1
                estimated = estimated or bool(result.get("Estimated"))
                for group in result.get("Groups") or []:
                    value = group["Keys"][0].partition("$")[2]
                    amount = float(group["Metrics"][METRIC]["Amount"])
                    if not math.isfinite(amount):
                        raise NotACostReport(f"an amount of {amount} USD for {value!r}")
                    if value:
                        by_deployment[value] = by_deployment.get(value, 0.0) + amount
                    else:
                        shared += amount
            token = page.get("NextPageToken")
            if not token:
                break
        else:
            raise NotACostReport(f"no last page after {MAX_PAGES} pages")
    except (ClientError, BotoCoreError) as exc:
        return ActualCost(start, end, reason=_unavailable(exc))
    except (NotACostReport, KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
        # AttributeError/TypeError also come from botocore parsing a body of another shape.
        what = str(exc) if isinstance(exc, NotACostReport) else f"{type(exc).__name__}: {exc}"
        return ActualCost(
            start, end, reason=f"Cost Explorer's answer is not a cost report ({what})"[:300]
        )
    if periods == 0:
        return ActualCost(
            start,
            end,
            reason="Cost Explorer has no data for the window (is it enabled, and are "
            f"{COST_TAG_PLATFORM}, {COST_TAG_PROJECT} and {COST_TAG_DEPLOYMENT} activated "
            "as cost allocation tags?)",
        )
    return ActualCost(start, end, by_deployment, shared, True, estimated)


def _unavailable(exc: ClientError | BotoCoreError) -> str:
    """Why there is no bill, and what would give one."""
    code = aws.error_code(exc)
    if not code:
        return f"Cost Explorer unavailable ({type(exc).__name__}): {exc}"[:300]
    message = str(getattr(exc, "response", {}).get("Error", {}).get("Message", "")).strip()
    if code == "AccessDeniedException" and "not enabled" in message.lower():
        hint = "enable Cost Explorer in the Billing console; its data follows within a day"
    elif code == "AccessDeniedException":
        hint = "allow ce:GetCostAndUsage to the caller"
    elif code == "DataUnavailableException":
        hint = "Cost Explorer has no data for this window yet"
    else:
        hint = ""
    detail = message if message and not message.startswith("<") else ""
    return "; ".join(
        part for part in (f"Cost Explorer unavailable ({code}): {detail}"[:300], hint) if part
    )
