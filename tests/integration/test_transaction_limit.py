"""DynamoDB's 100 items per transaction: the largest purchase fits, one more credit does not.

The limit lives in the DynamoDB unit of work (MAX_TRANSACTION_WRITES); the
purchase rule asks the unit of work for it. These tests count the items of
the real (moto) TransactWriteItems calls.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from botocore.exceptions import ClientError

from chalicelib.adapters.dynamodb import MAX_TRANSACTION_WRITES, DynamoUnitOfWork, Tables
from chalicelib.adapters.dynamodb.unit_of_work import Staged, ThrottledIsBusy, commit
from chalicelib.domain.errors import ConcurrentUpdate, StorageBusy, TransactionTooLarge
from energy_client.rpc_client import RpcError
from tests.support import buy, dynamodb_market, selling_provider, tables_from_environment


class RecordingClient:
    """The real (moto) client, recording how many items each transaction wrote."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.transactions: list[int] = []

    def transact_write_items(self, **request: Any) -> Any:
        answer = self._client.transact_write_items(**request)
        self.transactions.append(len(request["TransactItems"]))
        return answer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_the_largest_purchase_settles_early_in_one_transaction_of_99_writes(
    dynamodb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MARKET_FEE_BPS", "100")  # a fee: settlement writes the treasury too
    recording = RecordingClient(dynamodb)
    market = dynamodb_market(recording, tables_from_environment(dict(os.environ)))
    meter = selling_provider(market, [10] * 95)  # 95 credits of 10 Wh
    bob = market.funded_account("bob.theblock", block=10)

    # Given the largest purchase allowed: 90 credits, split one of them too.
    recording.transactions.clear()
    purchase = buy(market, bob, meter.provider_id, "0.895")  # 89 whole, 5 Wh of the 90th
    assert len(purchase["credit_ids"]) == 90
    assert recording.transactions == [96]

    # When the buyer settles it early (the largest commit of a purchase's life)
    recording.transactions.clear()
    market.client.call("energy.settle", {"transaction_id": purchase["transaction_id"]}, bob)

    # Then it was one transaction of 99 writes, and it applied.
    assert recording.transactions == [99]
    assert market.deps.settings.market_fee_bps == 100
    assert max(recording.transactions) < MAX_TRANSACTION_WRITES
    settled = market.client.call(
        "energy.getPurchase", {"transaction_id": purchase["transaction_id"]}
    )
    assert settled["status"] == "settled"


def test_one_credit_more_is_refused_as_purchase_too_large_and_changes_nothing(
    dynamodb: Any,
) -> None:
    recording = RecordingClient(dynamodb)
    market = dynamodb_market(recording, tables_from_environment(dict(os.environ)))
    meter = selling_provider(market, [10] * 95)
    bob = market.funded_account("bob.theblock", block=10)
    before = market.snapshot()
    recording.transactions.clear()
    with pytest.raises(RpcError) as refused:
        buy(market, bob, meter.provider_id, "0.905")  # 90 whole credits and a part of a 91st
    assert refused.value.reason == "purchase_too_large"
    assert refused.value.data["max_credits"] == 90
    assert recording.transactions == []  # refused before any write
    assert market.snapshot() == before


class RefusingClient:
    """Answers every write with the given DynamoDB error."""

    def __init__(self, error: ClientError) -> None:
        self.error = error
        self.calls = 0

    def _refuse(self, **request: Any) -> Any:
        self.calls += 1
        raise self.error

    put_item = update_item = transact_write_items = _refuse


def _error(code: str, reasons: list[str] | None = None) -> ClientError:
    response: dict[str, Any] = {"Error": {"Code": code, "Message": code}}
    if reasons is not None:
        response["CancellationReasons"] = [{"Code": r} for r in reasons]
    return ClientError(response, "TransactWriteItems")


def _staged(writes: int) -> Staged:
    staged = Staged()
    for n in range(writes):
        staged.update(
            "ledger", {"pk": {"S": f"K#{n}"}}, "ADD n :one", None, lambda: ConcurrentUpdate("raced")
        )
    return staged


@pytest.mark.parametrize(
    ("writes", "code", "reasons"),
    [
        (1, "ProvisionedThroughputExceededException", None),
        (1, "ThrottlingException", None),
        (2, "ProvisionedThroughputExceededException", None),
        (2, "RequestLimitExceeded", None),
        (2, "TransactionCanceledException", ["ThrottlingError", "None"]),
    ],
)
def test_throttling_is_storage_busy_not_a_conflict(
    writes: int, code: str, reasons: list[str] | None
) -> None:
    client = RefusingClient(_error(code, reasons))
    with pytest.raises(StorageBusy) as busy:
        commit(ThrottledIsBusy(client), _staged(writes))  # the unit of work's client
    assert not isinstance(busy.value, ConcurrentUpdate)
    assert (busy.value.code, busy.value.reason) == (5002, "storage_busy")
    assert client.calls == 1


def test_a_transaction_conflict_stays_a_concurrent_update() -> None:
    client = RefusingClient(_error("TransactionCanceledException", ["None", "TransactionConflict"]))
    with pytest.raises(ConcurrentUpdate):
        commit(client, _staged(2))


@pytest.mark.parametrize(
    "error",
    [
        _error("ValidationException"),
        _error("TransactionCanceledException", ["ValidationError", "None"]),
    ],
)
def test_a_validation_error_is_a_bug_not_a_conflict(error: ClientError) -> None:
    client = RefusingClient(error)
    with pytest.raises(ClientError):
        commit(client, _staged(2))


def test_a_commit_of_more_than_100_writes_is_refused_before_any_call() -> None:
    client = RefusingClient(_error("ShouldNotBeCalled"))
    with pytest.raises(TransactionTooLarge):
        commit(client, _staged(MAX_TRANSACTION_WRITES + 1))
    assert client.calls == 0
    assert DynamoUnitOfWork(client, Tables("r", "l", "c", "x", "d", "a", "w")).max_writes == 100
