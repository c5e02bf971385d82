"""The Helm chart, rendered and linted by Helm's own engine (see chart_render), and the
controller image's Dockerfile (statically: there is no Docker engine here)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import helm_python as helm
import pytest
import yaml
from chart_render import CHART, one, render

from controller import api
from controller.plan import NetworkConfig
from controller.settings import ControllerSettings
from mlops_core.config import PlatformSettings

ROOT = Path(__file__).resolve().parents[2]
ROLE_ARN = "arn:aws:iam::123456789012:role/mlops-controller"

# The complete permission set of the operator (cluster-wide): nothing more is granted.
CLUSTER_RULES = {
    ("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"},
    ("mlops.platform.io", "modeldeployments"): {"list", "watch", "patch"},
    ("mlops.platform.io", "modeldeployments/status"): {"patch"},
    ("", "events"): {"create"},
}
# The Lease that makes replicas exclusive, in the release's namespace only.
LEASE_RULES = {("coordination.k8s.io", "leases"): {"get", "create", "patch"}}


def _grants(rules: list[dict]) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


def _env(deployment: dict) -> dict[str, str]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value") for e in container["env"]}


def test_chart_crds_are_the_generated_ones():
    assert (CHART / "crds" / "modeldeployment.yaml").read_text() == (
        ROOT / "crds" / "modeldeployment.yaml"
    ).read_text(), "copy crds/modeldeployment.yaml to charts/mlops-controller/crds/"
    assert sorted(p.name for p in (CHART / "crds").iterdir()) == ["modeldeployment.yaml"]


def test_helm_lint_finds_no_warning_or_error():
    report = helm.lint(str(CHART), strict=True)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_cluster_wide_rbac_is_exactly_least_privilege():
    docs = render()
    role = one(docs, "ClusterRole")
    assert _grants(role["rules"]) == CLUSTER_RULES
    (lease_role,) = [d for d in docs if d["kind"] == "Role"]
    assert lease_role["metadata"]["namespace"] == "mlops-system"
    assert _grants(lease_role["rules"]) == LEASE_RULES
    binding = one(docs, "ClusterRoleBinding")
    account = one(docs, "ServiceAccount")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": account["metadata"]["name"],
            "namespace": "mlops-system",
        }
    ]
    deployment = one(docs, "Deployment")
    assert (
        deployment["spec"]["template"]["spec"]["serviceAccountName"]
        == (account["metadata"]["name"])
    )
    assert "MLOPS_KUBE_NAMESPACE" not in _env(deployment)


def test_one_namespace_gets_a_role_there_and_only_the_crd_watch_cluster_wide():
    docs = render({"watchNamespace": "ml"})
    cluster = one(docs, "ClusterRole")
    assert _grants(cluster["rules"]) == {
        ("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"}
    }
    role = one(docs, "Role", namespace="ml")
    grants = _grants(role["rules"])
    assert grants == {k: v for k, v in CLUSTER_RULES.items() if k[0] != "apiextensions.k8s.io"}
    assert one(docs, "RoleBinding", namespace="ml")["roleRef"]["name"] == role["metadata"]["name"]
    lease_role = one(docs, "Role", namespace="mlops-system")
    assert _grants(lease_role["rules"]) == LEASE_RULES
    assert _env(one(docs, "Deployment"))["MLOPS_KUBE_NAMESPACE"] == "ml"


def test_service_account_carries_the_irsa_role_only_when_given():
    account = one(render({"serviceAccount": {"roleArn": ROLE_ARN}}), "ServiceAccount")
    assert account["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": ROLE_ARN}
    assert "annotations" not in one(render(), "ServiceAccount")["metadata"]


def test_deployment_is_locked_down_and_probed_on_kopfs_liveness_endpoint():
    deployment = one(render(), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    ctx = container["securityContext"]
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"]["drop"] == ["ALL"]
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/tmp"}
    requests = container["resources"]["requests"]
    assert requests["cpu"] and requests["memory"]

    # The probe calls the endpoint the operator serves (MLOPS_KUBE_LIVENESS).
    env = _env(deployment)
    url = re.fullmatch(r"http://0\.0\.0\.0:(\d+)(/\S+)", env["MLOPS_KUBE_LIVENESS"])
    assert url, env["MLOPS_KUBE_LIVENESS"]
    probe = container["livenessProbe"]["httpGet"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert probe["path"] == url.group(2)
    assert ports[probe["port"]] == int(url.group(1))
    assert container["args"] == ["--resync", "60"]
    assert deployment["spec"]["replicas"] == 2
    # Readiness and the metrics Service use the port the controller serves /readyz on.
    ready = container["readinessProbe"]["httpGet"]
    assert ready["path"] == "/readyz"
    assert ports[ready["port"]] == int(env["MLOPS_CONTROLLER_METRICS_PORT"])
    # The lease identity is the pod's name (a restart in place resumes at once).
    (identity,) = [e for e in container["env"] if e["name"] == "MLOPS_CONTROLLER_IDENTITY"]
    assert identity["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_metrics_service_and_the_optional_service_monitor():
    docs = render()
    service = one(docs, "Service")
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9090, "targetPort": "metrics"}]
    assert not [d for d in docs if d["kind"] == "ServiceMonitor"]
    docs = render(
        {
            "metrics": {
                "port": 9100,
                "serviceMonitor": {"enabled": True, "labels": {"release": "prom"}},
            }
        }
    )
    monitor = one(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "30s"}
    ]
    assert monitor["spec"]["selector"]["matchLabels"] == one(docs, "Service")["spec"]["selector"]


def test_the_environment_the_chart_sets_is_what_the_controller_reads(monkeypatch):
    values = {
        "deletePolicy": "ScaleToZero",
        "platform": {
            "name": "acme-ml",
            "subnets": ["subnet-0a1b", "subnet-2c3d"],
            "securityGroups": ["sg-0f00"],
            "executionRoleArn": ROLE_ARN,
        },
    }
    env = _env(one(render(values), "Deployment"))
    env = {k: v if v is not None else "from-the-downward-api" for k, v in env.items()}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = ControllerSettings()
    assert settings.delete_policy == "ScaleToZero" and settings.delete_policy in api.DELETE_POLICIES
    assert settings.identity == "from-the-downward-api"
    assert settings.kube_lease_namespace == "from-the-downward-api"
    assert settings.kube_liveness == env["MLOPS_KUBE_LIVENESS"]
    assert settings.lease_ttl == 30 and settings.metrics_port == 9090
    network = NetworkConfig.from_settings(PlatformSettings.load())
    assert network.subnets == ("subnet-0a1b", "subnet-2c3d")
    assert network.security_groups == ("sg-0f00",)
    assert network.execution_role_arn == ROLE_ARN


@pytest.mark.parametrize(
    "values",
    [
        {"deletePolicy": "Delete"},
        {"metrics": {"port": 80}},
        {"leaseSeconds": 1},
        {"replicas": 0},
        {"resyncSeconds": "often"},
        {"serviceAccount": {"roleArn": "my-role"}},
        {"platform": {"name": "mlops", "subnets": ["10.0.1.0/24"]}},
        {"watchNamespace": "Not_A_Namespace"},
        {"imagee": {"tag": "x"}},
    ],
    ids=lambda v: json.dumps(v),
)
def test_values_schema_refuses_bad_values(values):
    with helm.Chart.load(str(CHART)) as chart, pytest.raises(helm.HelmValuesError):
        chart.validate_schema(values)


def test_values_yaml_passes_its_own_schema():
    with helm.Chart.load(str(CHART)) as chart:
        chart.validate_schema(yaml.safe_load((CHART / "values.yaml").read_text()))


# -- controller/Dockerfile -----------------------------------------------------------------
def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (ROOT / "controller" / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def test_controller_image_is_pinned_non_root_and_runs_the_operator():
    instructions = _instructions()
    froms = [rest for kw, rest in instructions if kw == "FROM"]
    assert froms == ["python:3.11.11-slim-bookworm"]
    user = [rest for kw, rest in instructions if kw == "USER"][-1]
    assert user.split(":")[0] not in ("root", "0")
    (entry,) = [rest for kw, rest in instructions if kw == "ENTRYPOINT"]
    assert json.loads(entry) == ["mlopsctl", "controller", "run", "--source", "kube"]
    (expose,) = [rest for kw, rest in instructions if kw == "EXPOSE"]
    defaults = ControllerSettings.model_fields
    liveness, metrics = defaults["kube_liveness"].default, defaults["metrics_port"].default
    assert expose.split() == [liveness.split(":")[2].split("/")[0], str(metrics)]
    copied = {rest.split()[0] for kw, rest in instructions if kw == "COPY"}
    assert {"mlops_core", "mlopsctl", "controller"} <= copied
