"""The Helm chart rendered by Helm's own engine (helm-python-sdk binds Helm's Go SDK; no
helm binary or cluster needed), and an RBAC check in the API server's terms."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

CHART = Path(__file__).resolve().parents[2] / "charts" / "mlops-controller"


def render(values: dict[str, Any] | None = None, namespace: str = "mlops-system") -> list[dict]:
    """Every object the chart's templates produce (what `helm template` prints)."""
    with helm.Chart.load(str(CHART)) as chart:
        chart.validate_schema(values or {})
        rendered = chart.render(values or {}, name="mlops", namespace=namespace)
    docs = []
    for path, text in sorted(rendered.items()):
        if path.endswith(".txt"):
            continue
        docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


def one(docs: list[dict], kind: str, namespace: str | None = None) -> dict:
    found = [
        d
        for d in docs
        if d["kind"] == kind and (namespace is None or d["metadata"].get("namespace") == namespace)
    ]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def allows(rules: list[dict], group: str, resource: str, verb: str) -> bool:
    """Whether RBAC ``rules`` grant ``verb`` on ``group``/``resource`` (``plural`` or
    ``plural/subresource``), with RBAC's matching: exact names or ``*``."""
    return any(
        (group in r.get("apiGroups", []) or "*" in r.get("apiGroups", []))
        and (resource in r.get("resources", []) or "*" in r.get("resources", []))
        and (verb in r.get("verbs", []) or "*" in r.get("verbs", []))
        for r in rules
    )


def grants(rules: list[dict]) -> set[tuple[str, str, str]]:
    """Every (apiGroup, resource, verb) that ``rules`` name (no wildcards expected)."""
    return {
        (group, resource, verb)
        for r in rules
        for group in r["apiGroups"]
        for resource in r["resources"]
        for verb in r["verbs"]
    }
