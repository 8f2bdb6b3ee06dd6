"""What DynamoDB's transient failures do to a call: retried, or refused whole."""

from __future__ import annotations

import os
from typing import Any

import pytest
from botocore.exceptions import ClientError

from energy_client.rpc_client import RpcError
from tests.support import BLOCK, dynamodb_market, tables_from_environment


class ConflictingClient:
    """The real (moto) client, except that the next ``conflicts`` transactions are
    cancelled the way DynamoDB cancels one that raced another on the same item."""

    def __init__(self, client: Any, conflicts: int) -> None:
        self._client = client
        self.conflicts = conflicts
        self.transactions = 0

    def transact_write_items(self, **request: Any) -> Any:
        self.transactions += 1
        if self.conflicts > 0:
            self.conflicts -= 1
            reasons = [{"Code": "TransactionConflict"}] + [{"Code": "None"}] * (
                len(request["TransactItems"]) - 1
            )
            raise ClientError(
                {
                    "Error": {
                        "Code": "TransactionCanceledException",
                        "Message": "Transaction cancelled",
                    },
                    "CancellationReasons": reasons,
                },
                "TransactWriteItems",
            )
        return self._client.transact_write_items(**request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


@pytest.fixture
def conflicting(dynamodb: Any) -> ConflictingClient:
    return ConflictingClient(dynamodb, conflicts=0)


def test_a_transaction_conflict_is_retried_and_applies_once(conflicting: ConflictingClient) -> None:
    market = dynamodb_market(conflicting, tables_from_environment(dict(os.environ)))
    alice = market.funded_account("alice.theblock", block=10)
    conflicting.conflicts, conflicting.transactions = 2, 0
    result = market.client.call(
        "energy.withdraw", {"amount_micro_block": BLOCK, "destination": "0xalice-wallet"}, alice
    )
    assert result["balance"] == 9 * BLOCK
    assert conflicting.transactions == 3
    assert market.audit().withdrawals == BLOCK


def test_persistent_conflicts_refuse_the_call_and_change_nothing(
    conflicting: ConflictingClient,
) -> None:
    market = dynamodb_market(conflicting, tables_from_environment(dict(os.environ)))
    alice = market.funded_account("alice.theblock", block=10)
    conflicting.conflicts = 100
    before = market.snapshot()
    with pytest.raises(RpcError) as refused:
        market.client.call(
            "energy.withdraw", {"amount_micro_block": BLOCK, "destination": "0xalice-wallet"}, alice
        )
    assert (refused.value.code, refused.value.reason) == (5001, "concurrent_update")
    assert market.snapshot() == before
