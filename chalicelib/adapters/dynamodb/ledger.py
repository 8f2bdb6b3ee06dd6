"""The ledger: balances, entries, the sharded treasury and what accounts bought."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalicelib.adapters.dynamodb.codec import Item, as_int, from_item, to_item
from chalicelib.adapters.dynamodb.layout import (
    ENTRIES_BY_ACCOUNT,
    TREASURY_PK,
    Tables,
    balance_key,
    bought_key,
    decode_entry_cursor,
    encode_cursor,
    entry_key,
    ledger_entry_key,
    treasury_shard_key,
)
from chalicelib.adapters.dynamodb.paging import query_all
from chalicelib.domain.errors import (
    AlreadyExists,
    ConcurrentUpdate,
    InsufficientBalance,
    NotFound,
)
from chalicelib.domain.ledger import EntryKind, LedgerEntry
from chalicelib.services.ports import Page

if TYPE_CHECKING:
    from chalicelib.adapters.dynamodb.unit_of_work import Staged


def entry_to_item(entry: LedgerEntry) -> Item:
    values: dict[str, Any] = from_item(ledger_entry_key(entry.kind, entry.entry_id))
    values.update(
        {
            "entry_id": entry.entry_id,
            "kind": str(entry.kind),
            "account": entry.account,
            "entry_key": entry_key(entry.at, entry.kind, entry.entry_id),
            "micro_block": entry.micro_block,
            "reference": entry.reference,
            "at": entry.at,
        }
    )
    return to_item(values)


def entry_from_item(item: Item) -> LedgerEntry:
    v = from_item(item)
    return LedgerEntry(
        entry_id=v["entry_id"],
        kind=EntryKind(v["kind"]),
        account=v["account"],
        micro_block=as_int(v["micro_block"]),
        reference=v["reference"],
        at=as_int(v["at"]),
    )


class DynamoLedger:
    def __init__(self, client: Any, tables: Tables, staged: Staged) -> None:
        self._client, self._tables, self._staged = client, tables, staged

    def balance(self, account: str) -> int:
        found = self._client.get_item(
            TableName=self._tables.ledger, Key=balance_key(account), ReturnConsumedCapacity="TOTAL"
        )
        return as_int(from_item(found["Item"])["micro_block"]) if "Item" in found else 0

    def treasury(self) -> int:
        total = 0
        for item in query_all(
            self._client,
            TableName=self._tables.ledger,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues=to_item({":pk": TREASURY_PK}),
        ):
            total += as_int(from_item(item)["micro_block"])
        return total

    def entries(self, account: str, limit: int, cursor: str | None) -> Page[LedgerEntry]:
        after = decode_entry_cursor(cursor) if cursor else ""
        response = self._client.query(
            TableName=self._tables.ledger,
            IndexName=ENTRIES_BY_ACCOUNT,
            KeyConditionExpression="account = :a AND entry_key > :after",
            ExpressionAttributeValues=to_item({":a": account, ":after": after or "0"}),
            Limit=limit + 1,
            ReturnConsumedCapacity="TOTAL",
        )
        items = [entry_from_item(i) for i in response["Items"]]
        page = items[:limit]
        more = len(items) > limit
        last = page[-1] if page else None
        return Page(
            page,
            encode_cursor(entry_key(last.at, last.kind, last.entry_id)) if more and last else None,
        )

    def open_account(self, account: str) -> None:
        item = {**balance_key(account), **to_item({"micro_block": 0})}
        self._staged.put(
            self._tables.ledger,
            item,
            "attribute_not_exists(pk)",
            lambda: AlreadyExists("account already exists", account=account),
        )

    def credit(self, account: str, micro_block: int) -> None:
        self._staged.update(
            self._tables.ledger,
            balance_key(account),
            "SET micro_block = micro_block + :m",
            "attribute_exists(pk)",
            lambda: NotFound("no such account", account=account),
            ExpressionAttributeValues=to_item({":m": micro_block}),
        )

    def debit(self, account: str, micro_block: int, *, bought_at_ms: int | None = None) -> None:
        # A purchase also stamps the buyer's balance with its time: the
        # analytics count active buyers from that one attribute's changes.
        bought = ", last_bought_ms = :at" if bought_at_ms is not None else ""
        self._staged.update(
            self._tables.ledger,
            balance_key(account),
            f"SET micro_block = micro_block - :m{bought}",
            "micro_block >= :m",
            lambda: InsufficientBalance("the balance does not cover this", account=account),
            ExpressionAttributeValues=to_item({":m": micro_block, ":at": bought_at_ms}),
        )

    def record(self, entry: LedgerEntry) -> None:
        self._staged.put(
            self._tables.ledger,
            entry_to_item(entry),
            "attribute_not_exists(pk)",
            lambda: AlreadyExists(
                f"this {entry.kind} was already recorded", entry_id=entry.entry_id
            ),
        )

    def credit_treasury(self, shard: int, micro_block: int) -> None:
        # ADD creates the shard on first use; shards spread the writes of
        # every settlement in the market over several items.
        self._staged.update(
            self._tables.ledger,
            treasury_shard_key(shard),
            "ADD micro_block :m",
            None,
            lambda: ConcurrentUpdate("the treasury changed; retry"),
            ExpressionAttributeValues=to_item({":m": micro_block}),
        )

    def bought(self, account: str) -> dict[str, int]:
        found = self._client.get_item(
            TableName=self._tables.ledger, Key=bought_key(account), ReturnConsumedCapacity="TOTAL"
        )
        values = from_item(found.get("Item", {}))
        return {k.removeprefix("wh_"): as_int(v) for k, v in values.items() if k.startswith("wh_")}

    def record_bought(self, account: str, energy_type: str, wh: int) -> None:
        self._staged.update(
            self._tables.ledger,
            bought_key(account),
            "ADD #wh :wh",
            None,
            lambda: ConcurrentUpdate("the account changed; retry", account=account),
            ExpressionAttributeNames={"#wh": f"wh_{energy_type}"},
            ExpressionAttributeValues=to_item({":wh": wh}),
        )
