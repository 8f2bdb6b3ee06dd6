"""A market on each storage adapter: every test here runs on both."""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.support import MarketHarness, dynamodb_market, memory_market, tables_from_environment


@pytest.fixture(params=["memory", "dynamodb"])
def market(request: pytest.FixtureRequest) -> MarketHarness:
    if request.param == "memory":
        return memory_market()
    client: Any = request.getfixturevalue("dynamodb")
    return dynamodb_market(client, tables_from_environment(dict(os.environ)))
