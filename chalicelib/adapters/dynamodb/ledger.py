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
from chalicelib.domain.carbon import Bought
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


# The BOUGHT item's counters: ``wh_<type>`` for every settled Wh of a type,
# ``origin#<type>#<jurisdiction>`` for those settled since the ledger kept
# jurisdictions (an item written before has the first kind only). Top-level
# attributes, because ADD cannot create a counter inside a map that is not
# there yet; neither a type nor a jurisdiction can hold a "#".
BY_TYPE = "wh_"
BY_ORIGIN = "origin#"


def bought_from_item(item: Item) -> Bought:
    """An account's BOUGHT item (also as a stream image: the analytics read it)."""
    by_type: dict[str, int] = {}
    by_origin: dict[tuple[str, str], int] = {}
    for name, wh in from_item(item).items():
        if name.startswith(BY_TYPE):
            by_type[name.removeprefix(BY_TYPE)] = as_int(wh)
        elif name.startswith(BY_ORIGIN):
            energy_type, _, jurisdiction = name.removeprefix(BY_ORIGIN).partition("#")
            by_origin[(energy_type, jurisdiction)] = as_int(wh)
    return Bought(by_type, by_origin)


class DynamoLedger:
    def __init__(self, client: Any, tables: Tables, staged: Staged) -> None:
        self._client, self._tables, self._staged = client, tables, staged

    def balance(self, account: str) -> int:
        # Strongly consistent: a balance answers the call that just moved it
        # (deposit, withdraw, a refusal's available_micro_block).
        found = self._client.get_item(
            TableName=self._tables.ledger,
            Key=balance_key(account),
            ConsistentRead=True,
            ReturnConsumedCapacity="TOTAL",
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

    def bought(self, account: str) -> Bought:
        found = self._client.get_item(
            TableName=self._tables.ledger, Key=bought_key(account), ReturnConsumedCapacity="TOTAL"
        )
        return bought_from_item(found.get("Item", {}))

    def record_bought(
        self,
        account: str,
        energy_type: str,
        jurisdiction: str,
        wh: int,
        *,
        at_ms: int | None = None,
    ) -> None:
        # One ADD of two counters on the one item: no read, no condition, and
        # no more write capacity than the per-type counter alone took. The
        # time dates the change for the analytics, which read it in the stream.
        stamp = " SET last_at_ms = :at" if at_ms is not None else ""
        self._staged.update(
            self._tables.ledger,
            bought_key(account),
            f"ADD #type :wh, #origin :wh{stamp}",
            None,
            lambda: ConcurrentUpdate("the account changed; retry", account=account),
            ExpressionAttributeNames={
                "#type": f"{BY_TYPE}{energy_type}",
                "#origin": f"{BY_ORIGIN}{energy_type}#{jurisdiction}",
            },
            ExpressionAttributeValues=to_item({":wh": wh, ":at": at_ms}),
        )
