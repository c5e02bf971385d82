"""Published artifact objects carry the platform's cost allocation tags."""

from __future__ import annotations

from factories import make_artifacts, project_config

from mlops_core import aws, naming
from mlops_core.artifacts import MANIFEST
from mlops_core.registry import Registry


def test_every_published_object_is_tagged_with_platform_and_project(platform, tmp_path):
    registry = Registry(platform)
    registry.register_project(project_config())
    m = make_artifacts(tmp_path / "a")
    registry.publish(tmp_path / "a")
    s3 = aws.client("s3")
    prefix = platform.version_prefix(m.project, m.version)
    want = [
        {"Key": naming.COST_TAG_PLATFORM, "Value": platform.platform},
        {"Key": naming.COST_TAG_PROJECT, "Value": m.project},
    ]
    for name in [*m.files, MANIFEST]:
        tags = s3.get_object_tagging(Bucket=platform.artifact_bucket, Key=prefix + name)
        assert sorted(tags["TagSet"], key=lambda t: t["Key"]) == want, name
