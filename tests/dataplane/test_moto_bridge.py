"""The one module that reaches into moto's state, checked against the installed moto.

These fail loudly, naming what moved, when a moto upgrade changes what
``mlopsctl/dataplane/moto_bridge.py`` relies on; port the bridge, then this test.
"""

from __future__ import annotations

import inspect
import threading

import boto3
import pytest
from werkzeug.serving import make_server

from mlops_core.errors import MlopsError
from mlopsctl import local_aws
from mlopsctl.dataplane import moto_bridge as bridge
from mlopsctl.dataplane.front import EcsFront


def _params(fn) -> set[str]:
    return set(inspect.signature(fn).parameters)


def test_the_installed_moto_is_one_the_bridge_was_written_for():
    assert bridge.check_moto_version()


def test_another_moto_is_refused_with_what_to_do(monkeypatch):
    monkeypatch.setattr(bridge, "package_version", lambda name: "5.3.0")
    with pytest.raises(MlopsError) as refused:
        bridge.check_moto_version()
    assert "written for moto 5.2.x, but moto 5.3.0 is installed" in refused.value.what
    assert "moto[server]==5.2.*" in (refused.value.hint or "")


def test_the_moto_internals_the_bridge_uses_are_there():
    from moto.core.exceptions import ServiceException
    from moto.ec2.models import ec2_backends
    from moto.ec2.models.elastic_network_interfaces import NetworkInterface
    from moto.ecs.exceptions import InvalidParameterException
    from moto.ecs.models import EC2ContainerServiceBackend, Service, Task, ecs_backends
    from moto.elbv2.models import ELBv2Backend, FakeHealthStatus, FakeTargetGroup
    from moto.moto_api import state_manager
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )

    assert callable(DomainDispatcherApplication) and callable(create_backend_app)
    assert MotoRequestHandler is not None and callable(state_manager.set_transition)
    assert issubclass(InvalidParameterException, ServiceException)
    assert {
        "cluster", "task_definition", "container_instance_arn", "resource_requirements",
        "backend", "group", "launch_type", "overrides", "started_by", "tags",
        "networking_configuration", "platform_version",
    } <= _params(Task.__init__)  # fmt: skip
    assert isinstance(Task.last_status, property) and Task.last_status.fset is not None
    assert {"tasks", "services"} <= set(vars(EC2ContainerServiceBackend("us-east-1", "1")))
    assert {"_get_cluster", "_get_service", "describe_task_definition"} <= set(
        dir(EC2ContainerServiceBackend)
    )
    assert "deployments" in inspect.getsource(Service.__init__)
    assert {"subnet", "private_ip_address", "group_ids", "description"} <= _params(
        ec2_backends[bridge.ACCOUNT_ID]["us-east-1"].create_network_interface
    )
    source = inspect.getsource(NetworkInterface.__init__)
    assert "self.private_ip_address" in source and "self.mac_address" in source
    assert _params(FakeTargetGroup.register) == {"self", "targets"}
    assert _params(FakeTargetGroup.deregister) == {"self", "targets"}
    assert _params(ELBv2Backend.describe_target_health) >= {"self", "target_group_arn", "targets"}
    assert len(_params(FakeHealthStatus.__init__)) == 7
    assert ecs_backends[bridge.ACCOUNT_ID]["us-east-1"] is not None
    # GetMetricStatistics' exact-dimension view: the signature and the one backend method
    # moto's implementation reads its metrics through.
    from moto.cloudwatch.models import CloudWatchBackend, Dimension

    assert _params(CloudWatchBackend.get_metric_statistics) == {
        "self", "namespace", "metric_name", "start_time", "end_time", "period", "stats",
        "dimensions", "unit",
    }  # fmt: skip
    assert "self.get_all_metrics()" in inspect.getsource(CloudWatchBackend.get_metric_statistics)
    assert {"name", "value"} <= set(vars(Dimension("n", "v")))


@pytest.fixture
def endpoint(monkeypatch):
    """moto behind the ECS front, in this process (what the data plane serves), with no
    data plane threads: the bridge's writes are the only ones."""
    port = local_aws.free_port()
    bridge.install(lambda seconds: seconds)
    server = make_server("127.0.0.1", port, EcsFront(bridge.wsgi_app()), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    for key, value in local_aws.local_env(port).items():
        monkeypatch.setenv(key, value)
    yield f"http://127.0.0.1:{port}"
    local_aws.reset(port)
    server.shutdown()


def test_bridge_writes_come_back_in_the_api_shapes(endpoint):
    ecs = boto3.client("ecs", endpoint_url=endpoint)
    ec2 = boto3.client("ec2", endpoint_url=endpoint)
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.0.0/24")["Subnet"]["SubnetId"]
    ecs.create_cluster(clusterName="c")
    td = ecs.register_task_definition(
        family="f",
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="256",
        memory="512",
        containerDefinitions=[{"name": "app", "image": "mlops/serving:1"}],
    )["taskDefinition"]["taskDefinitionArn"]
    network = {"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": []}}
    svc = ecs.create_service(
        cluster="c", serviceName="s", taskDefinition=td, desiredCount=1,
        launchType="FARGATE", networkConfiguration=network,
    )["service"]  # fmt: skip
    (deployment,) = svc["deployments"]
    assert (deployment["status"], deployment["rolloutState"], deployment["runningCount"]) == (
        "PRIMARY", "IN_PROGRESS", 0,
    )  # fmt: skip
    assert svc["deploymentConfiguration"]["strategy"] == "ROLLING"
    assert svc["deploymentConfiguration"]["deploymentCircuitBreaker"] == {
        "enable": False, "rollback": False,
    }  # fmt: skip
    arn = bridge.start_service_task(svc["serviceArn"], deployment["id"])
    bridge.update_task(arn, lastStatus="RUNNING", container={"lastStatus": "RUNNING"})
    (task,) = ecs.describe_tasks(cluster="c", tasks=[arn])["tasks"]
    assert (task["lastStatus"], task["startedBy"], task["group"]) == (
        "RUNNING",
        deployment["id"],
        "service:s",
    )
    assert task["attachments"][0]["details"][-1]["value"].startswith("10.9.0.")
    assert ecs.describe_services(cluster="c", services=["s"])["services"][0]["runningCount"] == 1
    assert ecs.list_tasks(cluster="c", serviceName="s")["taskArns"] == [arn]
    bridge.request_stop(arn, "because", "UserInitiated")
    bridge.task_exited(arn, 0)
    (task,) = ecs.describe_tasks(cluster="c", tasks=[arn])["tasks"]
    assert (task["lastStatus"], task["stopCode"], task["stoppedReason"]) == (
        "STOPPED",
        "UserInitiated",
        "because",
    )
    assert task["containers"][0]["exitCode"] == 0
    # Describing does not move a task along (moto's default would).
    for _ in range(5):
        ecs.describe_tasks(cluster="c", tasks=[arn])
    assert ecs.describe_tasks(cluster="c", tasks=[arn])["tasks"][0]["lastStatus"] == "STOPPED"
    listed = ecs.list_service_deployments(cluster="c", service="s")["serviceDeployments"]
    assert [d["status"] for d in listed] == ["IN_PROGRESS"]


def test_targets_drain_and_report_the_measured_health(endpoint):
    elb = boto3.client("elbv2", endpoint_url=endpoint)
    ec2 = boto3.client("ec2", endpoint_url=endpoint)
    vpc = ec2.create_vpc(CidrBlock="10.8.0.0/16")["Vpc"]["VpcId"]
    group = elb.create_target_group(
        Name="g", Protocol="HTTP", Port=8080, VpcId=vpc, TargetType="ip"
    )["TargetGroups"][0]["TargetGroupArn"]
    elb.modify_target_group_attributes(
        TargetGroupArn=group,
        Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": "1"}],
    )
    elb.register_targets(TargetGroupArn=group, Targets=[{"Id": "10.8.0.9", "Port": 8080}])

    def states():
        found = elb.describe_target_health(TargetGroupArn=group)["TargetHealthDescriptions"]
        return [(d["Target"]["Id"], d["TargetHealth"]["State"]) for d in found]

    assert states() == [("10.8.0.9", "initial")]
    bridge.set_target_health(group, "10.8.0.9", "unhealthy", "Target.Timeout", "Request timed out")
    assert states() == [("10.8.0.9", "unhealthy")]
    elb.deregister_targets(TargetGroupArn=group, Targets=[{"Id": "10.8.0.9", "Port": 8080}])
    assert states() == [("10.8.0.9", "draining")]
    import time

    time.sleep(1.2)
    assert states() == []
