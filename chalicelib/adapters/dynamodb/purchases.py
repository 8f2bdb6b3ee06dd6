"""Purchases: escrow and reserved credits, open until settled."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from chalicelib.adapters.due_work import purchases_due
from chalicelib.adapters.dynamodb.codec import Item, as_int, from_item, to_item
from chalicelib.adapters.dynamodb.layout import (
    PURCHASES_BY_BUYER,
    PURCHASES_DUE,
    Tables,
    buyer_key,
    decode_buyer_cursor,
    due_by,
    due_key,
    due_slot,
    due_slot_of_hour,
    encode_cursor,
    purchase_key,
)
from chalicelib.domain.errors import (
    AlreadyExists,
    ConcurrentUpdate,
    InvalidCursor,
)
from chalicelib.domain.trading import Purchase, PurchaseStatus
from chalicelib.services.ports import DueHandler, JobRun, Page

if TYPE_CHECKING:
    from chalicelib.adapters.due_work import Watermarks
    from chalicelib.adapters.dynamodb.unit_of_work import Staged


def purchase_to_item(purchase: Purchase) -> Item:
    values: dict[str, Any] = from_item(purchase_key(purchase.purchase_id)) | {
        "purchase_id": purchase.purchase_id,
        "buyer": purchase.buyer,
        "provider_id": purchase.provider_id,
        "wh": purchase.wh,
        "price_micro_block_per_kwh": purchase.price_micro_block_per_kwh,
        "escrow_micro_block": purchase.escrow_micro_block,
        "credit_ids": list(purchase.credit_ids),
        "created_at_ms": purchase.created_at_ms,
        "settles_at_ms": purchase.settles_at_ms,
        "status": str(purchase.status),
        "buyer_key": buyer_key(purchase),  # PurchasesByBuyer
        "settled_at_ms": purchase.settled_at_ms,
        "receipt_chain": purchase.receipt_chain,
        "receipt_sequence": purchase.receipt_sequence,
        "receipt_hash": purchase.receipt_hash,
        "revoked_at_ms": purchase.revoked_at_ms,
        "energy_type": purchase.energy_type,
        "jurisdiction": purchase.jurisdiction,
    }
    if purchase.status == PurchaseStatus.OPEN:
        # PurchasesDue (sparse): the settlement job reads the hours that are due.
        values["due_slot"] = due_slot(purchase.settles_at_ms)
        values["due_key"] = due_key(purchase)
    return to_item(values)


def purchase_from_item(item: Item) -> Purchase:
    v = from_item(item)
    return Purchase(
        purchase_id=v["purchase_id"],
        buyer=v["buyer"],
        provider_id=v["provider_id"],
        wh=as_int(v["wh"]),
        price_micro_block_per_kwh=as_int(v["price_micro_block_per_kwh"]),
        escrow_micro_block=as_int(v["escrow_micro_block"]),
        credit_ids=tuple(v["credit_ids"]),
        created_at_ms=as_int(v["created_at_ms"]),
        settles_at_ms=as_int(v["settles_at_ms"]),
        status=PurchaseStatus(v["status"]),
        settled_at_ms=as_int(v["settled_at_ms"]) if "settled_at_ms" in v else None,
        receipt_chain=v.get("receipt_chain"),
        receipt_sequence=as_int(v["receipt_sequence"]) if "receipt_sequence" in v else None,
        receipt_hash=v.get("receipt_hash"),
        revoked_at_ms=as_int(v["revoked_at_ms"]) if "revoked_at_ms" in v else None,
        energy_type=v.get("energy_type"),
        jurisdiction=v.get("jurisdiction"),
    )


class DynamoPurchases:
    def __init__(self, client: Any, tables: Tables, staged: Staged, watermarks: Watermarks) -> None:
        self._client, self._tables, self._staged = client, tables, staged
        self._watermarks = watermarks

    def get(self, purchase_id: str) -> Purchase | None:
        found = self._client.get_item(
            TableName=self._tables.ledger,
            Key=purchase_key(purchase_id),
            ConsistentRead=True,  # decides whether a retried purchase buys again
            ReturnConsumedCapacity="TOTAL",
        )
        return purchase_from_item(found["Item"]) if "Item" in found else None

    def add(self, purchase: Purchase) -> None:
        self._staged.put(
            self._tables.ledger,
            purchase_to_item(purchase),
            "attribute_not_exists(pk)",
            lambda: AlreadyExists("purchase already recorded", purchase_id=purchase.purchase_id),
        )

    def settle(self, settled: Purchase) -> None:
        self._staged.update(
            self._tables.ledger,
            purchase_key(settled.purchase_id),
            "SET #status = :settled, settled_at_ms = :at, buyer_key = :buyer_key,"
            " receipt_chain = :chain, receipt_sequence = :sequence, receipt_hash = :hash"
            " REMOVE due_slot, due_key",
            "#status = :open",
            lambda: ConcurrentUpdate(
                "the purchase was settled already", transaction_id=settled.purchase_id
            ),
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues=to_item(
                {
                    ":settled": str(PurchaseStatus.SETTLED),
                    ":open": str(PurchaseStatus.OPEN),
                    ":at": settled.settled_at_ms,
                    ":buyer_key": buyer_key(settled),
                    ":chain": settled.receipt_chain,
                    ":sequence": settled.receipt_sequence,
                    ":hash": settled.receipt_hash,
                }
            ),
        )

    def revise(self, before: Purchase, after: Purchase) -> None:
        self._staged.put(
            self._tables.ledger,
            purchase_to_item(after),
            "#status = :open AND wh = :wh",
            lambda: ConcurrentUpdate(
                "the purchase changed; retry", transaction_id=before.purchase_id
            ),
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues=to_item(
                {":open": str(PurchaseStatus.OPEN), ":wh": before.wh}
            ),
        )

    def each_due(self, run: JobRun, now_ms: int, budget: int, settle: DueHandler[Purchase]) -> None:
        purchases_due(self._watermarks, self._due_in_hour, run, now_ms, budget, settle)

    def _due_in_hour(self, hour: int, now_ms: int, limit: int) -> Sequence[Purchase]:
        """Up to ``limit`` open purchases due in ``hour`` by ``now_ms``, earliest first."""
        response = self._client.query(
            TableName=self._tables.ledger,
            IndexName=PURCHASES_DUE,
            KeyConditionExpression="due_slot = :slot AND due_key <= :now",
            ExpressionAttributeValues=to_item(
                {":slot": due_slot_of_hour(hour), ":now": due_by(now_ms)}
            ),
            Limit=limit,
            ReturnConsumedCapacity="TOTAL",
        )
        return [purchase_from_item(i) for i in response["Items"]]

    def by_buyer(
        self, buyer: str, *, open_only: bool, limit: int, cursor: str | None
    ) -> Page[Purchase]:
        prefix = "O#" if open_only else "S#"
        values: dict[str, Any] = {":b": buyer}
        if cursor:
            after = decode_buyer_cursor(cursor)
            if not after.startswith(prefix):
                raise InvalidCursor("cursor is not one this listing issued")
            # Open purchases list oldest first, settled ones newest first.
            key_condition = (
                "buyer = :b AND buyer_key BETWEEN :after AND :end"
                if open_only
                else "buyer = :b AND buyer_key BETWEEN :start AND :after"
            )
            values[":after"] = after
            values[":end" if open_only else ":start"] = prefix + ("~" if open_only else "")
        else:
            key_condition = "buyer = :b AND begins_with(buyer_key, :prefix)"
            values[":prefix"] = prefix
        response = self._client.query(
            TableName=self._tables.ledger,
            IndexName=PURCHASES_BY_BUYER,
            KeyConditionExpression=key_condition,
            ExpressionAttributeValues=to_item(values),
            ScanIndexForward=open_only,
            Limit=limit + (2 if cursor else 1),
            ReturnConsumedCapacity="TOTAL",
        )
        purchases = [
            purchase_from_item(i)
            for i in response["Items"]
            if not cursor or i["buyer_key"]["S"] != values[":after"]
        ]
        page = purchases[:limit]
        more = len(purchases) > limit
        return Page(page, encode_cursor(buyer_key(page[-1])) if more else None)
