"""Training data from s3:// over the local moto server (real HTTP, boto3's config chain)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

import training
from mlops_core import aws
from mlops_core.artifacts import sha256_bytes, verify_folder
from mlops_core.errors import InvalidInput, NotFound

WHEN = datetime(2026, 11, 28, 6, 45, tzinfo=UTC)


def test_trains_from_s3_like_from_a_file(platform, make_project, csv_text, tmp_path):
    key = "datasets/usedcar-price/usedcars.csv"
    aws.client("s3").put_object(Bucket=platform.artifact_bucket, Key=key, Body=csv_text.encode())
    uri = f"s3://{platform.artifact_bucket}/{key}"
    project = make_project()

    from_s3 = training.train(project, data=uri, out_dir=tmp_path / "s3", created_at=WHEN)
    from_file = training.train(project, out_dir=tmp_path / "file", created_at=WHEN)

    assert verify_folder(tmp_path / "s3") == from_s3
    assert from_s3.data.source == uri
    assert from_s3.data.fingerprint == sha256_bytes(csv_text.encode())
    assert from_s3.data.rows == 2000
    assert from_s3.model_sha256 == from_file.model_sha256


def test_missing_s3_object(platform, make_project, tmp_path):
    uri = f"s3://{platform.artifact_bucket}/nope/usedcars.csv"
    with pytest.raises(NotFound, match="training data not found") as err:
        training.train(make_project(), data=uri, out_dir=tmp_path / "out")
    assert err.value.where == uri
    assert not (tmp_path / "out").exists()


def test_missing_bucket(aws_env, make_project, tmp_path):
    with pytest.raises(NotFound, match="NoSuchBucket"):
        training.train(
            make_project(), data="s3://no-such-bucket-here/x.csv", out_dir=tmp_path / "o"
        )
    assert not (tmp_path / "o").exists()


def test_malformed_s3_uri(make_project, tmp_path):
    with pytest.raises(InvalidInput, match="malformed S3 URI"):
        training.train(make_project(), data="s3://just-a-bucket", out_dir=tmp_path / "out")
