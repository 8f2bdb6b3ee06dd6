"""Receipts: each provider's chains of signed settlement and slash receipts, and their heads."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from chalicelib.adapters.dynamodb.codec import Item, as_int, from_item, to_item
from chalicelib.adapters.dynamodb.layout import (
    RECEIPTS_BY_BUYER,
    Tables,
    chain_head_key,
    decode_issued_cursor,
    decode_receipt_cursor,
    encode_cursor,
    issued_key,
    receipt_key,
)
from chalicelib.adapters.dynamodb.paging import IndexRange, newest_first
from chalicelib.domain.errors import (
    ConcurrentUpdate,
)
from chalicelib.domain.receipts import ChainHead, Receipt, SlashReceipt, slash_receipt_from_json
from chalicelib.services.ports import Page

if TYPE_CHECKING:
    from chalicelib.adapters.dynamodb.unit_of_work import Staged

T = TypeVar("T")


def receipt_to_item(receipt: Receipt) -> Item:
    return to_item(
        from_item(receipt_key(receipt.chain, receipt.sequence))
        | receipt.body()
        | {
            "receipt_hash": receipt.receipt_hash,
            "signature": receipt.signature,
            "issued_key": issued_key(receipt),  # ReceiptsByBuyer (with buyer)
        }
    )


def receipt_from_item(item: Item) -> Receipt:
    v = from_item(item)
    return Receipt(
        marketplace_id=v["marketplace_id"],
        chain=v["chain"],
        sequence=as_int(v["sequence"]),
        previous_hash=v["previous_hash"],
        kind=v["kind"],
        transaction_id=v["transaction_id"],
        buyer=v["buyer"],
        provider_id=v["provider_id"],
        provider_owner=v["provider_owner"],
        wh=as_int(v["wh"]),
        price_micro_block_per_kwh=as_int(v["price_micro_block_per_kwh"]),
        total_cost_micro_block=as_int(v["total_cost_micro_block"]),
        fee_micro_block=as_int(v["fee_micro_block"]),
        provider_amount_micro_block=as_int(v["provider_amount_micro_block"]),
        credit_ids=tuple(v["credit_ids"]),
        settled_at_ms=as_int(v["settled_at_ms"]),
        settled_by=v["settled_by"],
        receipt_hash=v["receipt_hash"],
        signature=v["signature"],
    )


class DynamoReceipts:
    def __init__(self, client: Any, tables: Tables, staged: Staged) -> None:
        self._client, self._tables, self._staged = client, tables, staged

    def head(self, chain: str) -> ChainHead | None:
        found = self._client.get_item(
            TableName=self._tables.receipts,
            Key=chain_head_key(chain),
            ConsistentRead=True,  # the next receipt links to exactly this one
            ReturnConsumedCapacity="TOTAL",
        )
        if "Item" not in found:
            return None
        v = from_item(found["Item"])
        return ChainHead(chain, as_int(v["sequence"]), v["receipt_hash"])

    def get(self, chain: str, sequence: int) -> Receipt | None:
        found = self._client.get_item(
            TableName=self._tables.receipts,
            Key=receipt_key(chain, sequence),
            ConsistentRead=True,
            ReturnConsumedCapacity="TOTAL",
        )
        return receipt_from_item(found["Item"]) if "Item" in found else None

    def append(self, receipt: Receipt) -> None:
        self._append(
            receipt_to_item(receipt),
            ChainHead(receipt.chain, receipt.sequence, receipt.receipt_hash),
        )

    def append_slash(self, receipt: SlashReceipt) -> None:
        # Kept whole as its signed JSON: it is written once and read rarely.
        item = receipt_key(receipt.chain, receipt.sequence) | to_item(
            {"kind": receipt.kind, "body": json.dumps(receipt.to_json(), sort_keys=True)}
        )
        self._append(item, ChainHead(receipt.chain, receipt.sequence, receipt.receipt_hash))

    def slash_receipt(self, chain: str, sequence: int) -> SlashReceipt | None:
        found = self._client.get_item(
            TableName=self._tables.receipts,
            Key=receipt_key(chain, sequence),
            ConsistentRead=True,
            ReturnConsumedCapacity="TOTAL",
        )
        if "Item" not in found or "body" not in found["Item"]:
            return None
        return slash_receipt_from_json(json.loads(found["Item"]["body"]["S"]))

    def _append(self, item: Item, receipt: ChainHead) -> None:
        self._staged.put(
            self._tables.receipts,
            item,
            "attribute_not_exists(pk)",
            lambda: ConcurrentUpdate("the receipt chain moved on; retry", chain=receipt.chain),
        )
        condition = "attribute_not_exists(pk)" if receipt.sequence == 1 else "#sequence = :previous"
        self._staged.update(
            self._tables.receipts,
            chain_head_key(receipt.chain),
            "SET #sequence = :sequence, receipt_hash = :hash",
            condition,
            lambda: ConcurrentUpdate("the receipt chain moved on; retry", chain=receipt.chain),
            ExpressionAttributeNames={"#sequence": "sequence"},
            ExpressionAttributeValues=to_item(
                {":sequence": receipt.sequence, ":hash": receipt.receipt_hash}
                | ({":previous": receipt.sequence - 1} if receipt.sequence > 1 else {})
            ),
        )

    def by_chain(self, chain: str, limit: int, cursor: str | None) -> Page[Receipt]:
        return self._chain_page(chain, limit, cursor, receipt_from_item)

    def slash_receipts(self, chain: str, limit: int, cursor: str | None) -> Page[SlashReceipt]:
        return self._chain_page(
            chain,
            limit,
            cursor,
            lambda item: slash_receipt_from_json(json.loads(item["body"]["S"])),
        )

    def _chain_page(
        self,
        chain: str,
        limit: int,
        cursor: str | None,
        decode: Callable[[Item], T],
    ) -> Page[T]:
        after = decode_receipt_cursor(cursor) if cursor else "RECEIPT#"
        response = self._client.query(
            TableName=self._tables.receipts,
            KeyConditionExpression="pk = :pk AND sk BETWEEN :after AND :end",
            ExpressionAttributeValues=to_item(
                {":pk": f"CHAIN#{chain}", ":after": after, ":end": "RECEIPT#~"}
            ),
            Limit=limit + (2 if cursor else 1),
            ReturnConsumedCapacity="TOTAL",
        )
        found = [(i["sk"]["S"], decode(i)) for i in response["Items"] if i["sk"]["S"] != after]
        page = found[:limit]
        more = len(found) > limit
        return Page([r for _, r in page], encode_cursor(page[-1][0]) if more else None)

    def by_buyer(self, buyer: str, limit: int, cursor: str | None) -> Page[Receipt]:
        return newest_first(
            self._client,
            IndexRange(self._tables.receipts, RECEIPTS_BY_BUYER, "buyer", buyer, "issued_key"),
            decode_issued_cursor(cursor) if cursor else None,
            limit,
            receipt_from_item,
            issued_key,
        )
