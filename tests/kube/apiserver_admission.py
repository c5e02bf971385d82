"""What the Kubernetes API server does with a custom resource before storing it, for tests.

There is no kube-apiserver on these machines, so the CRD's schema is applied here the way
the API server applies it (apiextensions.k8s.io/v1, structural schemas):

1. nulls are pruned from fields that are not ``nullable``;
2. defaults are filled in where a field is absent;
3. the OpenAPI v3 schema is checked (OpenAPI 3.0 is JSON Schema draft 4 for everything
   used here: boolean ``exclusiveMinimum``, ``pattern``, ``enum``, ranges, ``required``),
   with unknown fields refused as kubectl's strict field validation (the default since
   Kubernetes 1.27) does;
4. the ``x-kubernetes-validations`` CEL rules are evaluated with ``self`` bound to the
   node, by a CEL implementation (the ``common-expression-language`` package), only once
   the schema passes (the API server also skips CEL when the schema already failed).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import cel
import jsonschema


def crd_schema(crd: dict[str, Any]) -> dict[str, Any]:
    (version,) = crd["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]


def walk(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node with its path (``.spec.serving.cpu``; ``[]`` for array items)."""
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from walk(sub, f"{path}.{name}")
    if "items" in schema:
        yield from walk(schema["items"], f"{path}[]")


def _prune_nulls(value: Any, schema: dict[str, Any]) -> Any:
    if isinstance(value, dict):
        props = schema.get("properties", {})
        return {
            k: _prune_nulls(v, props.get(k, {}))
            for k, v in value.items()
            if v is not None or props.get(k, {}).get("nullable")
        }
    if isinstance(value, list):
        return [_prune_nulls(v, schema.get("items", {})) for v in value]
    return value


def _default(value: Any, schema: dict[str, Any]) -> Any:
    if isinstance(value, dict):
        out = dict(value)
        for name, sub in schema.get("properties", {}).items():
            if name not in out and "default" in sub:
                out[name] = copy.deepcopy(sub["default"])
            if name in out:
                out[name] = _default(out[name], sub)
        return out
    if isinstance(value, list):
        return [_default(v, schema.get("items", {})) for v in value]
    return value


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with unknown fields refused (kubectl --validate=strict)."""
    schema = copy.deepcopy(schema)
    for _, node in walk(schema):
        if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
            node["additionalProperties"] = False
    return schema


def _cel_errors(value: Any, schema: dict[str, Any], path: str) -> list[str]:
    errors = []
    for rule in schema.get("x-kubernetes-validations", []):
        if cel.evaluate(rule["rule"], {"self": value}) is not True:
            errors.append(f"{path or '<root>'}: Invalid value: {rule['message']}")
    if isinstance(value, dict):
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                errors += _cel_errors(value[name], sub, f"{path}.{name}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errors += _cel_errors(item, schema["items"], f"{path}[{i}]")
    return errors


def admit(obj: dict[str, Any], crd: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """(the object as it would be stored, the errors the API server would answer with)."""
    schema = crd_schema(crd)
    stored = _default(_prune_nulls(obj, schema), schema)
    validator = jsonschema.Draft4Validator(_strict(schema))
    errors = [
        f".{'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(stored)
    ]
    if not errors:
        errors = _cel_errors(stored, schema, "")
    return stored, errors
