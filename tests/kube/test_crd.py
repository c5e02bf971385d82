"""The ModelDeployment CRD: generated, structural, and as strict as the pydantic API.

The API server is not here, so ``apiserver_admission.admit`` applies the CRD the way it
does (null pruning, defaulting, OpenAPI v3 validation with strict fields, CEL rules).
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest
import yaml
from apiserver_admission import admit, crd_schema, walk
from pydantic import ValidationError

from controller import api, crd
from controller.api import ModelDeployment, ModelDeploymentStatus, Serving, set_condition

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / "modeldeployment.yaml"
EXAMPLES = ROOT / "crds" / "examples"
GOOD = sorted(EXAMPLES.glob("*.yaml"))
INVALID = sorted((EXAMPLES / "invalid").glob("*.yaml"))


@pytest.fixture(scope="module")
def generated() -> dict:
    return yaml.safe_load(crd.render())


def test_checked_in_crd_is_the_generated_one():
    assert CRD_FILE.read_text() == crd.render(), (
        "crds/modeldeployment.yaml is stale: regenerate it with "
        "`python -m controller.crd > crds/modeldeployment.yaml`"
    )


def test_crd_identity_and_subresources(generated):
    spec = generated["spec"]
    assert generated["metadata"]["name"] == "modeldeployments.mlops.platform.io"
    assert spec["group"] == api.GROUP and spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == "ModelDeployment"
    assert spec["names"]["shortNames"] == ["mdep"]
    assert spec["names"]["categories"] == ["mlops"]
    (version,) = spec["versions"]
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert columns == ["Project", "Env", "Version", "Ready", "Reason", "Drifted", "Age"]


def test_schema_is_structural(generated):
    """What the API server demands of a v1 CRD schema (structural-schema rules)."""
    schema = crd_schema(generated)
    for path, node in walk(schema):
        assert "type" in node, f"{path}: no type"
        for banned in ("$ref", "anyOf", "oneOf", "allOf", "not", "const", "title", "$defs"):
            assert banned not in node, f"{path}: {banned} is not structural"
        assert not ("properties" in node and "additionalProperties" in node), path
        if "exclusiveMinimum" in node:
            assert node["exclusiveMinimum"] is True and "minimum" in node, path
        if "default" in node:
            assert None not in _leaves(node["default"]), f"{path}: null in default"
    assert schema["properties"]["metadata"] == {"type": "object"}
    assert schema["required"] == ["spec"]


def _leaves(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    else:
        yield value


def test_validation_the_server_enforces_is_present(generated):
    nodes = dict(walk(crd_schema(generated)))
    assert nodes[".spec.project"]["pattern"] == api.PROJECT_RE.pattern
    assert nodes[".spec.model.version"]["pattern"]
    assert nodes[".spec.serving.cpu"]["enum"] == sorted(api.FARGATE_SIZES)
    assert nodes[".spec.serving.replicas"]["minimum"] == 0
    assert nodes[".spec.serving.replicas"]["maximum"] == 100
    assert nodes[".spec.strategy.type"]["enum"] == ["Rolling", "Canary", "Linear", "BlueGreen"]
    assert nodes[".spec.strategy.canary.percent"]["minimum"] == 0.1
    assert nodes[".status.conditions[].status"]["enum"] == ["True", "False", "Unknown"]
    assert set(nodes[".spec"]["required"]) == {"project", "env", "model", "serving"}
    assert nodes[".status.conditions"]["x-kubernetes-list-map-keys"] == ["type"]
    for path in (".spec.model", ".spec.serving"):
        (rule,) = nodes[path]["x-kubernetes-validations"]
        assert rule["rule"] and rule["message"]


def test_patterns_are_valid_for_the_api_servers_regexp_engine(generated):
    """Go's RE2 has no lookaround or backreferences; Python compiles the rest the same."""
    for path, node in walk(crd_schema(generated)):
        if "pattern" in node:
            assert not re.search(r"\(\?[=!<]|\\[1-9]", node["pattern"]), path
            re.compile(node["pattern"])


def test_good_examples_are_admitted_and_valid():
    assert GOOD, "no example manifests"
    for path in GOOD:
        obj = yaml.safe_load(path.read_text())
        stored, errors = admit(obj, yaml.safe_load(CRD_FILE.read_text()))
        assert errors == [], f"{path.name}: {errors}"
        # What the API server stores (with its defaults) is what pydantic reads back.
        assert ModelDeployment.model_validate(stored) == ModelDeployment.model_validate(obj)


def _crd_expectation(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    match = re.match(r"#\s*crd:\s*(rejects|accepts)\b", first)
    return match.group(1) if match else "rejects"


@pytest.mark.parametrize("path", INVALID, ids=[p.name for p in INVALID])
def test_invalid_examples_are_rejected(path):
    """Every invalid example is refused by the API (pydantic), and by the cluster itself
    unless the file says ``# crd: accepts`` (a rule the schema cannot express)."""
    obj = yaml.safe_load(path.read_text())
    with pytest.raises(ValidationError):
        ModelDeployment.model_validate(obj)
    _, errors = admit(obj, yaml.safe_load(CRD_FILE.read_text()))
    if _crd_expectation(path) == "rejects":
        assert errors, f"{path.name}: the API server would admit it"
    else:
        assert not errors


def test_fargate_cel_rule_agrees_with_pydantic_on_every_size(generated):
    """The CEL rule and the pydantic validator are two spellings of FARGATE_SIZES."""
    serving_schema = dict(walk(crd_schema(generated)))[".spec.serving"]
    cpus = sorted(api.FARGATE_SIZES)
    memories = range(256, 123_904 + 1, 256)
    disagreements = []
    for cpu, memory in itertools.product(cpus, memories):
        obj = {"image": "mlops/serving:1", "cpu": cpu, "memory": memory}
        try:
            Serving.model_validate(obj)
            pydantic_ok = True
        except ValidationError:
            pydantic_ok = False
        wrapped = {"spec": {"serving": obj}}
        fake = {"spec": {"versions": [{"schema": {"openAPIV3Schema": {
            "type": "object",
            "properties": {"spec": {"type": "object", "properties": {"serving": serving_schema}}},
        }}}]}}  # fmt: skip
        _, errors = admit(wrapped, fake)
        if pydantic_ok != (errors == []):
            disagreements.append((cpu, memory, pydantic_ok))
    assert disagreements == []


def test_exactly_one_model_rule_agrees_with_pydantic(generated):
    for version, candidate in itertools.product(
        [None, "20261128T064500Z-3f9a2c1"], [None, "s3://mlops-artifacts/cand/run-1/"]
    ):
        model = {k: v for k, v in {"version": version, "candidate": candidate}.items() if v}
        obj = {
            "apiVersion": api.API_VERSION,
            "kind": api.KIND,
            "metadata": {"name": "x"},
            "spec": {
                "project": "usedcar-price",
                "env": "prod",
                "model": model,
                "serving": {"image": "mlops/serving:1"},
            },
        }
        _, errors = admit(obj, generated)
        try:
            ModelDeployment.model_validate(obj)
            assert errors == [], model
        except ValidationError:
            assert errors, model


def test_status_the_controller_writes_is_admitted(generated):
    """A status serialized the way the adapters write it passes the status schema."""
    conditions = set_condition([], "Ready", "False", "RolloutInProgress", "rolling out", 3)
    conditions = set_condition(conditions, "Progressing", "True", "RolloutInProgress", "", 3)
    status = ModelDeploymentStatus(
        observed_generation=3, current_version="20261128T064500Z-3f9a2c1", conditions=conditions
    )
    obj = yaml.safe_load(GOOD[0].read_text())
    obj["status"] = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    stored, errors = admit(obj, generated)
    assert errors == []
    assert ModelDeploymentStatus.model_validate(stored["status"]) == status
    obj["status"]["conditions"][0]["status"] = "Maybe"
    assert admit(obj, generated)[1]


def test_mlopsctl_crd_prints_the_checked_in_crd(capsys):
    from mlopsctl.cli import main

    assert main(["crd"]) == 0
    assert capsys.readouterr().out == CRD_FILE.read_text()
