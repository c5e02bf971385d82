"""The local endpoint gives conditional creates one winner, as S3 does.

moto alone checks ``If-None-Match`` and stores the object as two steps in a threaded
server; :mod:`mlopsctl.motoserver` serialises conditional PUTs. Races are provoked with a
tiny interpreter switch interval, which makes a thread switch between moto's check and
its store likely rather than rare.
"""

from __future__ import annotations

import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import boto3
import pytest
from botocore.config import Config
from werkzeug.serving import make_server

from mlops_core import aws
from mlopsctl import local_aws
from mlopsctl.motoserver import SerialisedConditionalWrites

THREADS = 16


def race(s3, bucket: str, key: str) -> tuple[list[int], dict[int, int]]:
    """THREADS threads create ``key`` at once; returns the winners and every status."""
    barrier = threading.Barrier(THREADS)
    winners: list[int] = []
    statuses: dict[int, int] = {}

    def create(i: int) -> None:
        barrier.wait()
        try:
            s3.put_object(Bucket=bucket, Key=key, Body=f"writer {i}".encode(), IfNoneMatch="*")
            winners.append(i)
            statuses[i] = 200
        except s3.exceptions.ClientError as exc:
            statuses[i] = exc.response["ResponseMetadata"]["HTTPStatusCode"]

    threads = [threading.Thread(target=create, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return winners, statuses


def client(endpoint: str):
    # One attempt: a retried create would hide which request won.
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(max_pool_connections=THREADS * 2, retries={"total_max_attempts": 1}),
    )


@contextmanager
def serving(app: Callable) -> Iterator[str]:
    """``app`` on a threaded loopback server in this process, as moto.server runs it."""
    from moto.moto_server.werkzeug_app import MotoRequestHandler

    server = make_server(
        "127.0.0.1", local_aws.free_port(), app, threaded=True, request_handler=MotoRequestHandler
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


@contextmanager
def switching_often() -> Iterator[None]:
    saved = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(saved)


def double_wins(endpoint: str, rounds: int, *, stop_at_first: bool = False) -> int:
    s3 = client(endpoint)
    bucket = f"race-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    bad = 0
    with switching_often():
        for r in range(rounds):
            winners, _ = race(s3, bucket, f"k{r}")
            if len(winners) != 1:
                bad += 1
                if stop_at_first:
                    break
    return bad


@pytest.fixture
def moto_app():
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    return DomainDispatcherApplication(create_backend_app)


def test_moto_alone_lets_two_conditional_creates_win(moto_app):
    """Why the wrapper exists; if this ever fails, moto serialises them itself now."""
    with serving(moto_app) as endpoint:
        assert double_wins(endpoint, rounds=200, stop_at_first=True) == 1


def test_serialised_conditional_creates_have_exactly_one_winner(moto_app):
    with serving(SerialisedConditionalWrites(moto_app)) as endpoint:
        assert double_wins(endpoint, rounds=40) == 0


def test_the_local_endpoint_gives_one_winner_and_412_to_the_rest(aws_env, platform):
    s3 = client(aws_env["AWS_ENDPOINT_URL"])
    for r in range(10):
        winners, statuses = race(s3, platform.artifact_bucket, f"race/{r}")
        assert len(winners) == 1
        assert sorted(statuses.values()) == [200] + [412] * (THREADS - 1)
        body = aws.client("s3").get_object(Bucket=platform.artifact_bucket, Key=f"race/{r}")
        assert body["Body"].read() == f"writer {winners[0]}".encode()


def test_unconditional_puts_still_overwrite(aws_env, platform):
    s3 = client(aws_env["AWS_ENDPOINT_URL"])
    for body in (b"one", b"two"):
        s3.put_object(Bucket=platform.artifact_bucket, Key="plain", Body=body)
    got = s3.get_object(Bucket=platform.artifact_bucket, Key="plain")["Body"].read()
    assert got == b"two"
