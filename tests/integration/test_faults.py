"""What DynamoDB's transient failures do to a call: retried, or refused whole."""

from __future__ import annotations

import os
from typing import Any

import pytest
from botocore.exceptions import ClientError

from energy_client.rpc_client import RpcError, unwrap
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


class ThrottledReads:
    """The real (moto) client, except that while ``throttling`` every read is
    refused as DynamoDB refuses a request still throttled after botocore's
    retries (with ``from_first_write``, from the first write on)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.throttling = False
        self.from_first_write = False
        self.refused = 0
        self.at_most: int | None = None  # reads refused in all (None: every one)

    def _read(self, operation: str) -> Any:
        method = getattr(self._client, operation)

        def read(**request: Any) -> Any:
            if not self.throttling or self.refused == self.at_most:
                return method(**request)
            self.refused += 1
            error = {"Code": "ProvisionedThroughputExceededException", "Message": "throttled"}
            raise ClientError({"Error": error}, operation)

        return read

    def _write(self, operation: str) -> Any:
        method = getattr(self._client, operation)

        def write(**request: Any) -> Any:
            answer = method(**request)
            self.throttling = self.throttling or self.from_first_write
            return answer

        return write

    def __getattr__(self, name: str) -> Any:
        if name in ("get_item", "batch_get_item", "query", "scan"):
            return self._read(name)
        if name in ("put_item", "update_item", "delete_item", "transact_write_items"):
            return self._write(name)
        return getattr(self._client, name)


@pytest.mark.parametrize(
    ("method", "params", "signed"),
    [
        ("energy.getAccount", {"name": "alice.theblock"}, False),
        ("energy.listProviders", {}, False),
        ("energy.withdraw", {"amount_micro_block": BLOCK, "destination": "0xalice-wallet"}, True),
    ],
)
def test_a_throttled_read_is_storage_busy_and_changes_nothing(
    dynamodb: Any, method: str, params: dict[str, Any], signed: bool
) -> None:
    """docs/api.md: storage_busy (5002), nothing changed, trying again after a
    short wait is safe; never an internal error, which a client could not
    tell from a bug. (The call's first read is refused; a signed call's
    nonce, read after it, shows nothing was applied.)"""
    throttled = ThrottledReads(dynamodb)
    market = dynamodb_market(throttled, tables_from_environment(dict(os.environ)))
    alice = market.funded_account("alice.theblock", block=10)
    before = market.snapshot()
    throttled.throttling, throttled.at_most = True, 1
    with pytest.raises(RpcError) as refused:
        market.client.call(method, params, alice if signed else None)
    throttled.throttling = False
    assert (refused.value.code, refused.value.reason) == (5002, "storage_busy")
    assert "applied" not in refused.value.data
    assert throttled.refused == 1
    assert market.snapshot() == before


@pytest.mark.parametrize(
    ("reads_refused", "answer"),
    [
        (1, (1002, "replayed_request", True)),  # the balance read back; its nonce is read
        (None, (5002, "storage_busy", "unknown")),  # nothing can be read back
    ],
)
def test_a_signed_call_throttled_after_its_write_never_says_nothing_changed(
    dynamodb: Any, reads_refused: int | None, answer: tuple[int, str, Any]
) -> None:
    """Reads throttled from the withdrawal's write on. Its nonce read back says
    it was applied; when even that is throttled, whether it was is not known,
    and the answer says so. Either way the same request sent again is told
    it was applied, and it was, once."""
    throttled = ThrottledReads(dynamodb)
    market = dynamodb_market(throttled, tables_from_environment(dict(os.environ)))
    alice = market.funded_account("alice.theblock", block=10)
    params = {"amount_micro_block": BLOCK, "destination": "0xalice-wallet"}
    body = market.client.request("energy.withdraw", params, alice)
    throttled.from_first_write, throttled.at_most = True, reads_refused
    with pytest.raises(RpcError) as refused:
        unwrap(market.client.send(body))
    throttled.throttling = throttled.from_first_write = False
    error = refused.value
    assert (error.code, error.reason, error.data["applied"]) == answer
    assert market.audit().withdrawals == BLOCK  # it was applied
    with pytest.raises(RpcError) as again:
        unwrap(market.client.send(body))
    assert again.value.data.get("applied") is True
    assert market.audit().withdrawals == BLOCK  # and once


def test_a_throttled_read_in_ingest_fails_the_delivery_for_a_retry(dynamodb: Any) -> None:
    """The topic rule's asynchronous invocation is retried by Lambda, then kept
    in the dead-letter queue: a throttled read records no refusal."""
    from chalicelib.domain.errors import StorageBusy
    from chalicelib.services.ingest import Status, record_payload
    from tests.support import NOW, metered_provider

    throttled = ThrottledReads(dynamodb)
    market = dynamodb_market(throttled, tables_from_environment(dict(os.environ)))
    market.clock.now = NOW + 3_600
    meter = metered_provider(market, capacity_kwh=10_000)
    payload = meter.payload(1_000, (NOW + 3_000) * 1000)
    received_at_ms = (NOW + 3_600) * 1000
    before = market.snapshot()
    throttled.throttling = True
    with pytest.raises(StorageBusy):
        record_payload(
            market.deps,
            payload,
            topic_meter_address=meter.meter_address,
            received_at_ms=received_at_ms,
        )
    throttled.throttling = False
    assert market.snapshot() == before
    outcome = record_payload(
        market.deps,
        payload,
        topic_meter_address=meter.meter_address,
        received_at_ms=received_at_ms,
    )
    assert outcome.status == Status.ACCEPTED
