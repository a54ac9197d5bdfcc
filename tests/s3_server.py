"""A real S3 endpoint for tests: moto's standalone server on loopback (what s3fs's own suite uses).

`s3_endpoint` starts one server per session; `bucket` makes a fresh bucket per test and sets the
standard AWS environment (fake keys, `AWS_ENDPOINT_URL`, region) the way a pod's Secret would.
The secret key is recognisable, so tests can assert it never reaches any output.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

import pytest

FAKE_KEY_ID = "AKIACIFAROPSTESTKEY0"
FAKE_SECRET = "cifarOpsFAKEsecret+must/NEVER-be-printed-9f3a"  # noqa: S105 - a test double
AWS_VARIABLES = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE")


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new, empty bucket on the test endpoint, with the environment that reaches it."""
    import boto3
    import s3fs

    for name in AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", FAKE_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    s3fs.S3FileSystem.clear_instance_cache()  # an instance keeps the environment it was made in
    name = f"cifar-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return name


def s3_client(endpoint: str):  # noqa: ANN201 - boto3's client type is generated
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
