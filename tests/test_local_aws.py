from mlops_core import aws
from mlopsctl import local_aws


def test_bootstrap_creates_base_resources_idempotently(platform):
    # A second bootstrap must not fail on what the first created.
    ensured = local_aws.bootstrap(platform)
    s3 = aws.client("s3")
    assert s3.get_bucket_versioning(Bucket=platform.artifact_bucket)["Status"] == "Enabled"
    clusters = aws.client("ecs").describe_clusters(clusters=[platform.ecs_cluster])["clusters"]
    assert [c["status"] for c in clusters] == ["ACTIVE"]
    repos = aws.client("ecr").describe_repositories()["repositories"]
    assert {r["repositoryName"] for r in repos} == {
        ensured["ecr_serving_repository"],
        ensured["ecr_training_repository"],
    }
    assert all(r["imageTagMutability"] == "IMMUTABLE" for r in repos)


def test_clients_reach_the_local_endpoint_over_http(aws_env):
    s3 = aws.client("s3")
    assert s3.meta.endpoint_url == aws_env["AWS_ENDPOINT_URL"]


def test_bootstrap_network_is_found_again_not_duplicated(platform):
    first = local_aws.bootstrap(platform)
    second = local_aws.bootstrap(platform)
    assert first["subnets"] == second["subnets"]
    assert len(first["subnets"].split(",")) == 2
    assert first["security_groups"] == second["security_groups"]
    assert (
        len(
            aws.client("ec2").describe_vpcs(
                Filters=[{"Name": "tag:mlops.platform.io/network", "Values": [platform.platform]}]
            )["Vpcs"]
        )
        == 1
    )
