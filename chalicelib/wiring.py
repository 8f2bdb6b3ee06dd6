"""Builds the production object graph once per Lambda container."""

from __future__ import annotations

import time
from functools import lru_cache
from typing import TYPE_CHECKING

from chalicelib.adapters.aws import dynamodb_client
from chalicelib.adapters.dynamodb import DynamoUnitOfWork, Tables
from chalicelib.adapters.receipt_key import receipt_signing_key
from chalicelib.config import get_settings
from chalicelib.services.dependencies import Dependencies

if TYPE_CHECKING:
    from chalicelib.adapters.push import Pusher
    from chalicelib.rpc.protocol import Dispatcher


def dependencies() -> Dependencies:
    settings = get_settings()
    client = dynamodb_client()
    tables = Tables.from_settings(settings)
    return Dependencies(
        settings=settings,
        unit_of_work=lambda: DynamoUnitOfWork(client, tables),
        clock=lambda: int(time.time()),
        clock_ms=lambda: time.time_ns() // 1_000_000,
        receipt_key=lambda: receipt_signing_key(settings),
    )


@lru_cache(maxsize=1)
def dispatcher() -> Dispatcher:
    from chalicelib.rpc.methods import registry
    from chalicelib.rpc.protocol import Dispatcher

    return Dispatcher(registry, dependencies())


@lru_cache(maxsize=1)
def ingest_dependencies() -> Dependencies:
    """The ingest function's own graph: no JSON-RPC registry on its cold start."""
    return dependencies()


@lru_cache(maxsize=1)
def jobs_dependencies() -> Dependencies:
    """The scheduled jobs' graph (one per container, like the others)."""
    return dependencies()


@lru_cache(maxsize=1)
def live_dependencies() -> Dependencies:
    """The WebSocket routes' graph: no JSON-RPC registry on their cold start."""
    return dependencies()


def live_pusher() -> Pusher | None:
    """The @connections API the configuration names; None: live events are off."""
    from chalicelib.adapters.push import ConnectionsApiPusher

    endpoint = get_settings().websocket_management_endpoint
    return ConnectionsApiPusher(endpoint) if endpoint else None
