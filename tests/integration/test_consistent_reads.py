"""Every balance a signed call reports after its write is read strongly consistent.

An adapter spy wraps the real DynamoDB client (moto) and records the reads a
signed call makes after its first write: each must be a consistent GetItem,
BatchGetItem or base-table Query. A global secondary index cannot be read
consistently, so none may feed such an answer. The one index read allowed is
the owner index's list of *which* providers an account has (only a
registration changes it); the providers, and so their stakes, are then read
consistently.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from chalicelib.adapters.dynamodb.layout import PROVIDERS_BY_OWNER
from tests.integration.test_authorisation import SCENARIOS
from tests.support import dynamodb_market, tables_from_environment

WRITES = frozenset({"put_item", "update_item", "delete_item", "transact_write_items"})
READS = frozenset({"get_item", "batch_get_item", "query", "scan"})


class ReadSpy:
    """The DynamoDB client, recording each call's operation and arguments."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if name not in WRITES | READS:
            return attribute

        def recorded(**kwargs: Any) -> Any:
            self.calls.append((name, kwargs))
            return attribute(**kwargs)

        return recorded

    def reads_after_first_write(self) -> list[tuple[str, dict[str, Any]]]:
        first = next((i for i, (op, _) in enumerate(self.calls) if op in WRITES), None)
        if first is None:
            return []
        return [(op, kw) for op, kw in self.calls[first:] if op in READS]


def _is_consistent(operation: str, arguments: dict[str, Any]) -> bool:
    if operation == "batch_get_item":
        return all(t.get("ConsistentRead") is True for t in arguments["RequestItems"].values())
    if operation == "scan":
        return False
    if arguments.get("IndexName") == PROVIDERS_BY_OWNER:
        return True
    return arguments.get("ConsistentRead") is True and "IndexName" not in arguments


@pytest.mark.parametrize("method", sorted(SCENARIOS))
def test_reads_after_a_signed_write_are_consistent(dynamodb: Any, method: str) -> None:
    spy = ReadSpy(dynamodb)
    market = dynamodb_market(spy, tables_from_environment(dict(os.environ)))
    scenario = SCENARIOS[method](market)
    request = market.client.request(method, scenario.params, scenario.signer)
    spy.calls.clear()
    answer = market.client.send(request)
    assert "result" in answer, answer
    assert spy.calls, "the call read and wrote nothing"
    stale = [
        (op, kw.get("TableName"), kw.get("IndexName"), kw.get("Key"))
        for op, kw in spy.reads_after_first_write()
        if not _is_consistent(op, kw)
    ]
    assert stale == []


def test_the_spy_sees_an_eventually_consistent_read(dynamodb: Any) -> None:
    # The check above could pass by recording nothing: a plain getAccount reads the
    # account without ConsistentRead, and the spy must notice.
    spy = ReadSpy(dynamodb)
    market = dynamodb_market(spy, tables_from_environment(dict(os.environ)))
    market.funded_account("alice.theblock", block=1)
    spy.calls.clear()
    market.client.call("energy.getAccount", {"name": "alice.theblock"})
    reads = [(op, kw) for op, kw in spy.calls if op in READS]
    assert any(not _is_consistent(op, kw) for op, kw in reads)
    assert all(
        kw.get("ConsistentRead") is True
        for op, kw in reads
        if op == "get_item" and kw["Key"]["sk"]["S"] == "BALANCE"
    )
