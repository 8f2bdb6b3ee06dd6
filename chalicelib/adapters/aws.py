"""AWS clients, built on first use so that importing the app makes no AWS call.

Endpoints come from the standard environment (``AWS_ENDPOINT_URL_DYNAMODB``
points the local stack at moto); nothing here knows whether it is talking to
AWS or an emulator.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def dynamodb_client() -> Any:
    import boto3  # deferred: boto3 costs ~100 ms to import, the cold start pays it once
    from botocore.config import Config

    return boto3.client(
        "dynamodb",
        config=Config(
            retries={"mode": "standard", "max_attempts": 4},
            connect_timeout=2,
            read_timeout=5,
            # Several concurrent requests share one Lambda container's client
            # only in local runs; keep enough sockets for them.
            max_pool_connections=32,
            # Our requests are built by the adapters, and DynamoDB validates
            # them anyway: botocore's own checks cost some 120 us of CPU a
            # reading, an eighth of it (bench/ingest.py, section 3).
            parameter_validation=False,
        ),
    )


@lru_cache(maxsize=1)
def ssm_client() -> Any:
    import boto3

    return boto3.client("ssm")


@lru_cache(maxsize=4)
def connections_client(endpoint: str) -> Any:
    """The WebSocket API's @connections management API at ``endpoint``.

    Chalice's own ``websocket_api.send`` knows its endpoint only inside a
    WebSocket handler; the stream handlers and jobs that push events take it
    from configuration (WEBSOCKET_MANAGEMENT_ENDPOINT).
    """
    import boto3
    from botocore.config import Config

    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=endpoint,
        config=Config(
            retries={"mode": "standard", "max_attempts": 3},
            connect_timeout=2,
            read_timeout=5,
            max_pool_connections=32,
        ),
    )
