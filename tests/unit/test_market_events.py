"""Ledger stream records -> market events, as the stream function sees them."""

from __future__ import annotations

from typing import Any

from chalicelib.adapters.dynamodb.purchases import purchase_to_item
from chalicelib.domain.trading import Purchase, PurchaseStatus
from chalicelib.streams.purchase_events import OPENED, SETTLED, events_from_records, publish


def _purchase(status: str, settled_at_ms: int | None = None) -> dict[str, Any]:
    """A purchase item as the ledger stores it (the adapter's own mapping)."""
    return purchase_to_item(
        Purchase(
            purchase_id="pur-1",
            buyer="bob.theblock",
            provider_id="energy-0x0000000000000001",
            wh=1500,
            price_micro_block_per_kwh=80_000,
            escrow_micro_block=120000,
            credit_ids=("c1",),
            created_at_ms=1000,
            settles_at_ms=4000,
            status=PurchaseStatus(status),
            settled_at_ms=settled_at_ms,
        )
    )


def _record(name: str, new: dict[str, Any] | None, old: dict[str, Any] | None, seq: str) -> Any:
    change: dict[str, Any] = {"SequenceNumber": seq}
    if new is not None:
        change["NewImage"] = new
    if old is not None:
        change["OldImage"] = old
    return {"eventName": name, "dynamodb": change}


def test_opened_and_settled_purchases_become_events_and_nothing_else_does() -> None:
    opened = _purchase("open")
    settled = _purchase("settled", settled_at_ms=5000)
    balance = {"pk": {"S": "ACCOUNT#bob"}, "sk": {"S": "BALANCE"}, "micro_block": {"N": "1"}}
    events = events_from_records(
        [
            _record("INSERT", opened, None, "1"),
            _record("MODIFY", balance, balance, "2"),
            _record("MODIFY", settled, opened, "3"),
            _record("MODIFY", settled, settled, "4"),  # a later change of a settled purchase
            _record("REMOVE", None, opened, "5"),
        ]
    )
    assert [(e.kind, e.at_ms, e.sequence_number) for e in events] == [
        (OPENED, 1000, "1"),
        (SETTLED, 5000, "3"),
    ]
    assert publish(events) == {
        "PurchasesOpened": 1,
        "PurchasesSettled": 1,
        "SettledWh": 1500,
        "SettledMicroBlock": 120000,
    }
