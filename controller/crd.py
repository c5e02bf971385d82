"""The ModelDeployment CustomResourceDefinition, generated from the pydantic API.

``render()`` is what ``mlopsctl crd`` prints and what ``crds/modeldeployment.yaml`` holds
(a test fails when the two differ). The pydantic JSON Schema is turned into a
*structural* OpenAPI v3 schema, the dialect the Kubernetes API server enforces:

- every ``$ref`` is inlined (structural schemas have none);
- ``Optional[X]`` (``anyOf: [X, null]``) becomes plain ``X``: the API server prunes
  nulls for fields that are not ``nullable``, which is what "unset" means to pydantic;
- ``const`` becomes a one-value ``enum``; JSON Schema's numeric ``exclusiveMinimum``
  becomes OpenAPI 3.0's ``minimum`` + ``exclusiveMinimum: true``;
- ``additionalProperties: false`` is dropped (not allowed beside ``properties``; the API
  server prunes unknown fields, and ``kubectl``'s strict field validation rejects them);
- patterns, enums, ranges, ``required`` and defaults are kept, and cross-field rules come
  along as ``x-kubernetes-validations`` (CEL) from the models' ``json_schema_extra``.

The metadata field is left to the API server (only ``type: object``), as Kubernetes
requires.
"""

from __future__ import annotations

import copy
import sys
from typing import Any

import yaml

from controller import api

CRD_NAME = f"{api.PLURAL}.{api.GROUP}"

# Column order and JSONPaths shown by `kubectl get modeldeployments` (and -o wide).
PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Project", "type": "string", "jsonPath": ".spec.project"},
    {"name": "Env", "type": "string", "jsonPath": ".spec.env"},
    {
        "name": "Version",
        "type": "string",
        "jsonPath": ".spec.model.version",
        "description": "The model version asked for.",
    },
    {
        "name": "Ready",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
    },
    {
        "name": "Reason",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
    },
    {
        "name": "Drifted",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Drifted")].status',
        "description": "The newest drift check of the live version (Drifted condition).",
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {
        "name": "Live",
        "type": "string",
        "jsonPath": ".status.currentVersion",
        "priority": 1,
        "description": "The version the service runs (status.currentVersion).",
    },
    {
        "name": "Candidate",
        "type": "string",
        "jsonPath": ".spec.model.candidate",
        "priority": 1,
    },
    {
        "name": "Monthly-USD",
        "type": "number",
        "jsonPath": ".status.cost.estimatedMonthlyUSD",
        "priority": 1,
        "description": "The spec's estimated monthly cost (status.cost).",
    },
    {
        "name": "Live-USD",
        "type": "number",
        "jsonPath": ".status.cost.liveMonthlyUSD",
        "priority": 1,
        "description": "What ECS runs now, priced (status.cost.liveMonthlyUSD).",
    },
    {
        "name": "Canary-%",
        "type": "number",
        "jsonPath": ".status.rollout.canaryPercent",
        "priority": 1,
        "description": "The new revision's share of traffic in a progressive rollout.",
    },
    {
        "name": "Rollout",
        "type": "string",
        "jsonPath": ".status.rollout.stage",
        "priority": 1,
        "description": "Where ECS is in the progressive rollout (status.rollout.stage).",
    },
]

# Keys of a pydantic JSON Schema that have no place in a structural schema.
_DROP = {"title", "additionalProperties", "$defs"}


def _strip_nulls(value: Any) -> Any:
    """A default without its null members (nulls are 'unset', and not valid here)."""
    if isinstance(value, dict):
        return {k: _strip_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_strip_nulls(v) for v in value]
    return value


def _structural(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """One JSON Schema node -> a structural OpenAPI v3 node (recursively)."""
    node = dict(node)
    ref = node.pop("$ref", None)
    if ref is not None:
        target = defs[ref.rsplit("/", 1)[-1]]
        # Keys beside the $ref (default, description) win over the target's.
        node = {**target, **node}
    any_of = node.pop("anyOf", None)
    if any_of is not None:
        branches = [b for b in any_of if b.get("type") != "null"]
        if len(branches) != 1:
            raise ValueError(f"cannot express anyOf {any_of!r} in a structural schema")
        node = {**branches[0], **node}
        if "$ref" in node or "anyOf" in node:
            return _structural(node, defs)
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if isinstance(node.get("exclusiveMinimum"), int | float) and not isinstance(
        node["exclusiveMinimum"], bool
    ):
        node["minimum"] = node.pop("exclusiveMinimum")
        node["exclusiveMinimum"] = True
    if isinstance(node.get("exclusiveMaximum"), int | float) and not isinstance(
        node["exclusiveMaximum"], bool
    ):
        node["maximum"] = node.pop("exclusiveMaximum")
        node["exclusiveMaximum"] = True
    if "default" in node:
        if node["default"] is None:
            del node["default"]
        else:
            node["default"] = _strip_nulls(node["default"])
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP:
            continue
        if key == "description":
            value = value.replace("``", "`")  # docstrings are RST; kubectl explain is not
        if key == "properties":
            out[key] = {name: _structural(sub, defs) for name, sub in value.items()}
        elif key == "items":
            out[key] = _structural(value, defs)
        else:
            out[key] = value
    if "type" not in out:
        raise ValueError(f"structural schemas need a type on every node: {node!r}")
    return out


def _sorted(node: Any) -> Any:
    """Stable key order so that the generated file diffs cleanly."""
    if isinstance(node, dict):
        return {k: _sorted(node[k]) for k in sorted(node)}
    if isinstance(node, list):
        return [_sorted(v) for v in node]
    return node


def openapi_schema() -> dict[str, Any]:
    """The structural openAPIV3Schema of ModelDeployment."""
    raw = api.ModelDeployment.model_json_schema(by_alias=True, mode="validation")
    defs = raw.get("$defs", {})
    root = _structural(raw, defs)
    props = root["properties"]
    # apiVersion and kind are checked by the API server itself; metadata belongs to it.
    props["apiVersion"] = {"type": "string"}
    props["kind"] = {"type": "string"}
    props["metadata"] = {"type": "object"}
    # Conditions are a map keyed by type (the API conventions): server-side apply merges
    # them by type instead of replacing the list.
    conditions = props["status"]["properties"]["conditions"]
    conditions["x-kubernetes-list-type"] = "map"
    conditions["x-kubernetes-list-map-keys"] = ["type"]
    root["required"] = ["spec"]
    root["description"] = (
        "The desired state of one model on one environment: the controller converges the "
        "SSM model pointer and the ECS service onto it."
    )
    return _sorted(root)


def manifest() -> dict[str, Any]:
    """The CustomResourceDefinition object."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": CRD_NAME,
            "labels": {"app.kubernetes.io/part-of": "mlops-platform"},
        },
        "spec": {
            "group": api.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": api.KIND,
                "listKind": f"{api.KIND}List",
                "plural": api.PLURAL,
                "singular": api.SINGULAR,
                "shortNames": list(api.SHORT_NAMES),
                "categories": list(api.CATEGORIES),
            },
            "versions": [
                {
                    "name": api.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": copy.deepcopy(PRINTER_COLUMNS),
                    "schema": {"openAPIV3Schema": openapi_schema()},
                }
            ],
        },
    }


HEADER = (
    "# Generated by controller/crd.py from controller/api.py: do not edit by hand.\n"
    "# Regenerate: mlopsctl crd > crds/modeldeployment.yaml  (or: python -m controller.crd)\n"
)


def render() -> str:
    """The CRD as YAML (what ``mlopsctl crd`` prints)."""
    return HEADER + yaml.safe_dump(manifest(), sort_keys=False, width=100)


if __name__ == "__main__":
    sys.stdout.write(render())
