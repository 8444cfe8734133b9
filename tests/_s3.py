"""An S3-compatible server on loopback for the tests: moto's standalone server, one per
session, on a free port; a bucket of its own per test.

The fixture points the AWS environment at it (`AWS_ENDPOINT_URL`, dummy credentials, a
region) the way a lab points harvester at MinIO, so harvester finds it exactly as it would a
real store, through pyarrow. The tests read the bucket back with boto3, not with harvester's
own code.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

#: Dummy credentials: the server accepts any, and a test that checks for leaks looks for these.
ACCESS_KEY = "AKIAHARVESTERTEST01"
SECRET_KEY = "harvester-test-secret-0123456789abcdefSECRET"


@dataclass
class Bucket:
    """A fresh bucket on the session's server."""

    name: str
    endpoint: str
    client: Any

    def url(self, prefix: str) -> str:
        return f"s3://{self.name}/{prefix}"

    def listing(self, prefix: str = "") -> list[str]:
        """Every object key under `prefix` (directory markers included: they are objects)."""
        out: list[str] = []
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.name, Prefix=prefix
        )
        for page in pages:
            out += [o["Key"] for o in page.get("Contents", [])]
        return sorted(out)

    def env(self) -> dict[str, str]:
        """The environment a child process needs to reach the bucket."""
        return aws_env(self.endpoint)


def aws_env(endpoint: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_REGION": "us-east-1",
        # Nothing on this machine is an EC2 instance: never wait for its metadata service.
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def moto_server() -> Iterator[str]:
    """Start moto's server on 127.0.0.1 (a free port); yield its URL; stop it."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def new_bucket(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Bucket:
    import boto3

    for key, value in aws_env(endpoint).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )
    name = f"test-{uuid.uuid4().hex[:16]}"
    client.create_bucket(Bucket=name)
    return Bucket(name, endpoint, client)
