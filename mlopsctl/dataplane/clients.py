"""boto3 clients of the data plane: to its own endpoint, over HTTP, like any client."""

from __future__ import annotations

import threading
from typing import Any

import boto3
from botocore.config import Config

from mlopsctl.local_aws import DUMMY_CREDENTIALS

CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=30)


class Clients:
    """Clients for ``endpoint`` (``http://127.0.0.1:PORT``), one per service and region."""

    def __init__(self, endpoint: str, region: str):
        self.endpoint = endpoint
        self.region = region
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, str], Any] = {}
        self._session = boto3.session.Session(
            aws_access_key_id=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    def __call__(self, service: str, region: str | None = None) -> Any:
        key = (service, region or self.region)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = self._session.client(
                    service, region_name=key[1], endpoint_url=self.endpoint, config=CONFIG
                )
                self._clients[key] = client
            return client
