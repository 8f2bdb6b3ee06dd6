"""Builds the production object graph once per Lambda container."""

from __future__ import annotations

import time
from functools import lru_cache
from typing import TYPE_CHECKING

from chalicelib.adapters.aws import dynamodb_client
from chalicelib.adapters.dynamodb import DynamoUnitOfWork, Tables
from chalicelib.adapters.receipt_key import receipt_signing_key
from chalicelib.config import get_settings
from chalicelib.services.market import Market

if TYPE_CHECKING:
    from chalicelib.rpc.protocol import Dispatcher


def market() -> Market:
    settings = get_settings()
    client = dynamodb_client()
    tables = Tables.from_settings(settings)
    return Market(
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

    return Dispatcher(registry, market())


@lru_cache(maxsize=1)
def ingest_market() -> Market:
    """The ingest function's own graph: no JSON-RPC registry on its cold start."""
    return market()


@lru_cache(maxsize=1)
def jobs_market() -> Market:
    """The scheduled jobs' graph (one per container, like the others)."""
    return market()
