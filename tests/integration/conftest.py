"""A market on each storage adapter: every test here runs on both."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import MarketHarness, dynamodb_market, memory_market, tables_from_environment


@pytest.fixture(params=["memory", "dynamodb"])
def market(request: pytest.FixtureRequest) -> MarketHarness:
    if request.param == "memory":
        return memory_market()
    client: Any = request.getfixturevalue("dynamodb")
    return dynamodb_market(client, tables_from_environment(dict(os.environ)))


@pytest.fixture
def lambda_client(
    dynamodb: Any, market: MarketHarness, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    """The deployed handlers, through chalice.test.Client, on the moto tables of the
    requesting module's own ``market`` (a moto-backed one)."""
    from chalice.test import Client

    from app import app
    from chalicelib.adapters.aws import dynamodb_client
    from chalicelib.config import get_settings
    from chalicelib.wiring import jobs_dependencies

    monkeypatch.setenv("MARKETPLACE_ID", market.deps.settings.marketplace_id)
    monkeypatch.setenv("OPERATOR_PUBLIC_KEY", market.operator.public_key)
    caches = (get_settings, jobs_dependencies, dynamodb_client)
    for cache in caches:
        cache.cache_clear()
    with Client(app) as client:
        yield client
    for cache in caches:
        cache.cache_clear()
