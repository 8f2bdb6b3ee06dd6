"""Generic test fixtures: fake AWS credentials, moto-backed tables from infra/, a moto server."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, settings
from moto import mock_aws

from chalicelib import observability
from infra.emulation import create_tables
from infra.moto_server import LocalMotoServer

TEST_STACK_NAME = "energy-marketplace-test"
TEST_REGION = "us-east-1"

# moto is slow enough that wall-clock deadlines only make tests flaky.
settings.register_profile("dev", max_examples=50, deadline=None)
settings.register_profile(
    "ci",
    max_examples=200,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)


# The process's logging as the test session found it, before any app.py import.
_PRISTINE_CHALICELIB_LEVEL = logging.getLogger("chalicelib").level
_PRISTINE_BOTOCORE_LEVEL = logging.getLogger("botocore").level


@pytest.fixture(autouse=True)
def observability_stays_in_its_test() -> Iterator[None]:
    """Importing app.py (or calling observability.configure) turns on metric lines on
    stdout and JSON log formatting for the whole process, as it should in Lambda. In
    the test process that would leak into every later test that reads stdout (the
    CLI's output), so after each test the process's logging is as the session found
    it. (A module-scoped fixture may import app.py before this fixture starts, so the
    state is reset to the session's, not to a snapshot taken here.)"""
    yield
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, observability._StdoutHandler):
            root.removeHandler(handler)
        elif isinstance(handler.formatter, observability.JsonFormatter):
            handler.setFormatter(None)
    logging.getLogger("chalicelib").setLevel(_PRISTINE_CHALICELIB_LEVEL)
    logging.getLogger("botocore").setLevel(_PRISTINE_BOTOCORE_LEVEL)
    observability._configured = False
    observability._write_to_stdout = False


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials in us-east-1, and no endpoint override: nothing reaches a real AWS."""
    for name in list(os.environ):
        if name.startswith("AWS_ENDPOINT_URL") or name in {"AWS_PROFILE", "AWS_DEFAULT_PROFILE"}:
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SECURITY_TOKEN", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", TEST_REGION)
    monkeypatch.setenv("AWS_REGION", TEST_REGION)
    # botocore 1.44 sends DynamoDB (streams) calls to account-scoped hosts moto does not match.
    monkeypatch.setenv("AWS_ACCOUNT_ID_ENDPOINT_MODE", "disabled")
    # A developer's ~/.aws must not supply credentials, regions or endpoints.
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)


@pytest.fixture
def dynamodb(aws_credentials: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A moto DynamoDB client with every table of infra/template.yaml created.

    The table environment variables (REGISTRY_TABLE, ...) are set for the test, so
    application code finds the tables the way it does in Lambda.
    """
    with mock_aws():
        client = boto3.client("dynamodb", region_name=TEST_REGION)
        for variable, table_name in create_tables(client, TEST_STACK_NAME).items():
            monkeypatch.setenv(variable, table_name)
        yield client


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """A moto server on a free local port for the whole session; yields its endpoint URL.

    It shares moto's in-process state with mock_aws(), which resets that state when a
    mocked test ends: name resources per test and do not rely on them across tests.
    """
    server = LocalMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()
