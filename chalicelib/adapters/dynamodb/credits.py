"""Credits: minted from readings, on sale, reserved, held, retired or expired."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from chalicelib.adapters.due_work import credits_expired
from chalicelib.adapters.dynamodb.codec import Item, as_int, from_item, to_item
from chalicelib.adapters.dynamodb.layout import (
    AVAILABLE_BY_PROVIDER,
    CREDITS_BY_PROVIDER,
    EXPIRING_BY_SLOT,
    HOLDINGS_BY_OWNER,
    Tables,
    credit_key,
    decode_minted_cursor,
    due_by,
    encode_cursor,
    expiry_key,
    expiry_slot,
    expiry_slots,
    minted_key,
    window_keys,
)
from chalicelib.adapters.dynamodb.paging import IndexRange, get_all, newest_first
from chalicelib.domain.credits import Credit, CreditState, Retirement
from chalicelib.domain.errors import (
    AlreadyExists,
    ConcurrentUpdate,
)
from chalicelib.domain.providers import EnergyType
from chalicelib.domain.trading import split_part
from chalicelib.services.ports import DueHandler, JobRun, Page

if TYPE_CHECKING:
    from chalicelib.adapters.due_work import Watermarks
    from chalicelib.adapters.dynamodb.unit_of_work import Staged

# Leaving the sparse on-sale indexes is removing their key attributes, and
# entering CreditsByProvider, which holds the credits *not* on sale: a credit
# on sale is in AvailableByProvider (same sort key), so minting one writes two
# index entries, not three. A provider's credits are the two indexes merged.
LEAVE_SALE = "provider_id = :issuer REMOVE available_provider_id, expiry_slot, expiry_key"


_ID_ONLY: Final = ("#id", {"#id": "credit_id"})


def credit_to_item(credit: Credit) -> Item:
    # Typed here rather than through to_item: every attribute's type is known,
    # and ingest writes one of these per reading.
    credit_id, provider_id = credit.credit_id, credit.provider_id
    item: Item = {
        **credit_key(credit_id),
        "credit_id": {"S": credit_id},
        "meter_address": {"S": credit.meter_address},
        "energy_type": {"S": str(credit.energy_type)},
        "jurisdiction": {"S": credit.jurisdiction},
        "interval_start_ms": {"N": str(credit.interval_start_ms)},
        "interval_end_ms": {"N": str(credit.interval_end_ms)},
        "wh": {"N": str(credit.wh)},
        "counter_wh": {"N": str(credit.counter_wh)},
        "signature": {"S": credit.signature},
        "minted_at_ms": {"N": str(credit.minted_at_ms)},
        "expires_at_ms": {"N": str(credit.expires_at_ms)},
        "state": {"S": str(credit.state)},
        "issuer_provider_id": {"S": provider_id},
    }
    if credit.purchase_id is not None:
        item["purchase_id"] = {"S": credit.purchase_id}
    if credit.parent_credit_id is not None:
        item["parent_credit_id"] = {"S": credit.parent_credit_id}
    state = credit.state
    if credit.holder is not None:
        item["held_by"] = {"S": credit.holder}
        if state == CreditState.HELD:
            item["holder"] = {"S": credit.holder}  # HoldingsByOwner (sparse: held, not retired)
    if credit.retirement is not None:
        item.update(to_item(retirement_attributes(credit.retirement)))
    if state == CreditState.BASELINE:
        return item
    # Index keys: while on sale AvailableByProvider and ExpiringBySlot, after it
    # CreditsByProvider (sparse: an item leaves an index with its key).
    item["minted_key"] = {"S": minted_key(credit)}
    if state == CreditState.AVAILABLE:
        item["available_provider_id"] = {"S": provider_id}
        item["expiry_slot"] = {"S": expiry_slot(credit.expires_at_ms, credit_id)}
        item["expiry_key"] = {"S": expiry_key(credit)}
    else:
        item["provider_id"] = {"S": provider_id}
    return item


def credit_from_item(item: Item) -> Credit:
    v = from_item(item)
    return Credit(
        credit_id=v["credit_id"],
        provider_id=v["issuer_provider_id"],
        meter_address=v["meter_address"],
        energy_type=EnergyType(v["energy_type"]),
        jurisdiction=v["jurisdiction"],
        interval_start_ms=as_int(v["interval_start_ms"]),
        interval_end_ms=as_int(v["interval_end_ms"]),
        wh=as_int(v["wh"]),
        counter_wh=as_int(v["counter_wh"]),
        signature=v["signature"],
        minted_at_ms=as_int(v["minted_at_ms"]),
        expires_at_ms=as_int(v["expires_at_ms"]),
        state=CreditState(v["state"]),
        purchase_id=v.get("purchase_id"),
        parent_credit_id=v.get("parent_credit_id"),
        holder=v.get("held_by"),
        retirement=(
            Retirement(
                beneficiary=v["beneficiary"],
                period_start_ms=as_int(v["period_start_ms"]),
                period_end_ms=as_int(v["period_end_ms"]),
                retired_by=v["retired_by"],
                retired_at_ms=as_int(v["retired_at_ms"]),
            )
            if "retired_at_ms" in v
            else None
        ),
    )


def retirement_attributes(retirement: Retirement) -> dict[str, Any]:
    return {
        "beneficiary": retirement.beneficiary,
        "period_start_ms": retirement.period_start_ms,
        "period_end_ms": retirement.period_end_ms,
        "retired_by": retirement.retired_by,
        "retired_at_ms": retirement.retired_at_ms,
    }


class DynamoCredits:
    def __init__(self, client: Any, tables: Tables, staged: Staged, watermarks: Watermarks) -> None:
        self._client, self._tables, self._staged = client, tables, staged
        self._watermarks = watermarks

    def get(self, credit_id: str) -> Credit | None:
        found = self._client.get_item(
            TableName=self._tables.credits,
            Key=credit_key(credit_id),
            ConsistentRead=True,  # decides whether a reading is a duplicate
            ReturnConsumedCapacity="TOTAL",
        )
        return credit_from_item(found["Item"]) if "Item" in found else None

    def mint(self, credit: Credit) -> None:
        self._staged.put(
            self._tables.credits,
            credit_to_item(credit),
            "attribute_not_exists(pk)",
            lambda: AlreadyExists("this reading was already minted", credit_id=credit.credit_id),
        )

    def written(self, credit_ids: Sequence[str]) -> set[str]:
        # Eventually consistent, the id only: half a read unit a credit, and a
        # credit this misses is put on a condition that keeps the one there.
        keys = [credit_key(c) for c in dict.fromkeys(credit_ids)]
        found = get_all(
            self._client, self._tables.credits, keys, consistent=False, projection=_ID_ONLY
        )
        return {item["credit_id"]["S"] for item in found}

    def available(self, provider_id: str, limit: int) -> Sequence[Credit]:
        response = self._client.query(
            TableName=self._tables.credits,
            IndexName=AVAILABLE_BY_PROVIDER,
            KeyConditionExpression="available_provider_id = :p",
            ExpressionAttributeValues=to_item({":p": provider_id}),
            ScanIndexForward=True,  # oldest first
            Limit=limit,
            ReturnConsumedCapacity="TOTAL",
        )
        return [credit_from_item(item) for item in response["Items"]]

    def reserve(self, credit: Credit, purchase_id: str) -> None:
        self._update_on_sale(
            credit,
            f"SET #state = :reserved, purchase_id = :purchase, {LEAVE_SALE}",
            {":reserved": str(CreditState.RESERVED), ":purchase": purchase_id},
        )

    def split(self, credit: Credit, take_wh: int, purchase_id: str) -> Credit:
        part = split_part(credit, take_wh, purchase_id)
        self._update_on_sale(credit, "SET wh = :left", {":left": credit.wh - take_wh})
        self._staged.put(
            self._tables.credits,
            credit_to_item(part),
            "attribute_not_exists(pk)",
            lambda: ConcurrentUpdate(
                "the credit was split already; retry", credit_id=part.credit_id
            ),
        )
        return part

    def get_many(self, credit_ids: Sequence[str]) -> Sequence[Credit]:
        keys = [credit_key(c) for c in dict.fromkeys(credit_ids)]
        items = get_all(self._client, self._tables.credits, keys, consistent=True)
        found = {credit.credit_id: credit for credit in map(credit_from_item, items)}
        return [found[c] for c in credit_ids if c in found]

    def hold(self, credit_id: str, purchase_id: str, buyer: str) -> None:
        self._staged.update(
            self._tables.credits,
            credit_key(credit_id),
            "SET #state = :held, holder = :buyer, held_by = :buyer",
            "#state = :reserved AND purchase_id = :purchase",
            lambda: ConcurrentUpdate("the credit changed; retry", credit_id=credit_id),
            ExpressionAttributeNames={"#state": "state"},
            ExpressionAttributeValues=to_item(
                {
                    ":held": str(CreditState.HELD),
                    ":reserved": str(CreditState.RESERVED),
                    ":purchase": purchase_id,
                    ":buyer": buyer,
                }
            ),
        )

    def holdings(self, holder: str, limit: int, cursor: str | None) -> Page[Credit]:
        return newest_first(
            self._client,
            IndexRange(self._tables.credits, HOLDINGS_BY_OWNER, "holder", holder, "minted_key"),
            decode_minted_cursor(cursor) if cursor else None,
            limit,
            credit_from_item,
            minted_key,
        )

    def each_expired(
        self, run: JobRun, now_ms: int, budget: int, expire: DueHandler[Credit]
    ) -> None:
        credits_expired(
            self._watermarks, expiry_slots, self._expired_in_slot, run, now_ms, budget, expire
        )

    def _expired_in_slot(self, slot: str, now_ms: int, limit: int) -> Sequence[Credit]:
        """Up to ``limit`` credits on sale in expiry ``slot`` that expired by ``now_ms``."""
        response = self._client.query(
            TableName=self._tables.credits,
            IndexName=EXPIRING_BY_SLOT,
            KeyConditionExpression="expiry_slot = :slot AND expiry_key <= :now",
            ExpressionAttributeValues=to_item({":slot": slot, ":now": due_by(now_ms)}),
            Limit=limit,
            ReturnConsumedCapacity="TOTAL",
        )
        return [credit_from_item(i) for i in response["Items"]]

    def expire(self, credit: Credit) -> None:
        self._update_on_sale(
            credit, f"SET #state = :expired, {LEAVE_SALE}", {":expired": str(CreditState.EXPIRED)}
        )

    def _update_on_sale(self, credit: Credit, update: str, values: dict[str, Any]) -> None:
        """Stage ``update`` on ``credit`` if it is still on sale, whole."""
        self._staged.update(
            self._tables.credits,
            credit_key(credit.credit_id),
            update,
            "#state = :available AND wh = :wh",
            lambda: ConcurrentUpdate("the credit changed; retry", credit_id=credit.credit_id),
            ExpressionAttributeNames={"#state": "state"},
            ExpressionAttributeValues=to_item(
                {":available": str(CreditState.AVAILABLE), ":wh": credit.wh}
                | ({":issuer": credit.provider_id} if ":issuer" in update else {})
                | values
            ),
        )

    def retire(self, credit: Credit, retirement: Retirement) -> None:
        attributes = retirement_attributes(retirement)
        self._staged.update(
            self._tables.credits,
            credit_key(credit.credit_id),
            "SET #state = :retired, "
            + ", ".join(f"{name} = :{name}" for name in attributes)
            + " REMOVE holder",
            "#state = :held AND holder = :holder",
            lambda: ConcurrentUpdate("the credit changed; retry", credit_id=credit.credit_id),
            ExpressionAttributeNames={"#state": "state"},
            ExpressionAttributeValues=to_item(
                {
                    ":retired": str(CreditState.RETIRED),
                    ":held": str(CreditState.HELD),
                    ":holder": retirement.retired_by,
                }
                | {f":{name}": value for name, value in attributes.items()}
            ),
        )

    def in_window(
        self, provider_id: str, from_ms: int, to_ms: int, limit: int, cursor: str | None
    ) -> Page[Credit]:
        low, high = window_keys(from_ms, to_ms)
        if cursor is not None:
            low = decode_minted_cursor(cursor) + "\x00"  # just after the cursor's key
        found: list[Item] = []
        for index, attribute in _PROVIDER_INDEXES:  # off sale, and on sale
            found += self._client.query(
                TableName=self._tables.credits,
                IndexName=index,
                KeyConditionExpression="#p = :p AND minted_key BETWEEN :low AND :high",
                ExpressionAttributeNames={"#p": attribute},
                ExpressionAttributeValues=to_item({":p": provider_id, ":low": low, ":high": high}),
                Limit=limit + 1,
                ReturnConsumedCapacity="TOTAL",
            )["Items"]
        merged = _merged(found, newest_first=False)
        page = merged[:limit]
        more = len(merged) > limit
        return Page(page, encode_cursor(minted_key(page[-1])) if more else None)

    def revoke(self, credit: Credit) -> None:
        # Off sale, off the expiry index and out of its holder's holdings; it
        # stays among the provider's credits, marked revoked.
        self._staged.update(
            self._tables.credits,
            credit_key(credit.credit_id),
            f"SET #state = :revoked, {LEAVE_SALE}, holder",
            "#state = :read AND wh = :wh",
            lambda: ConcurrentUpdate("the credit changed; retry", credit_id=credit.credit_id),
            ExpressionAttributeNames={"#state": "state"},
            ExpressionAttributeValues=to_item(
                {
                    ":revoked": str(CreditState.REVOKED),
                    ":read": str(credit.state),
                    ":wh": credit.wh,
                    ":issuer": credit.provider_id,
                }
            ),
        )

    def by_provider(self, provider_id: str, limit: int, cursor: str | None) -> Page[Credit]:
        before = decode_minted_cursor(cursor) if cursor else None
        pages = [
            newest_first(
                self._client,
                IndexRange(self._tables.credits, index, attribute, provider_id, "minted_key"),
                before,
                limit,
                lambda item: item,
                lambda item: item["minted_key"]["S"],
            )
            for index, attribute in _PROVIDER_INDEXES  # off sale, and on sale
        ]
        merged = _merged([i for p in pages for i in p.items], newest_first=True)
        page = merged[:limit]
        more = len(merged) > limit or any(p.next_cursor is not None for p in pages)
        return Page(page, encode_cursor(minted_key(page[-1])) if more and page else None)


# A provider's credits: those off sale (CreditsByProvider) and those on sale
# (AvailableByProvider), both sorted by minted_key.
_PROVIDER_INDEXES: Final = (
    (CREDITS_BY_PROVIDER, "provider_id"),
    (AVAILABLE_BY_PROVIDER, "available_provider_id"),
)


def _merged(items: Sequence[Item], *, newest_first: bool) -> list[Credit]:
    """Items of both provider indexes as one listing in minted_key order; a credit
    stored before the split may be in both, and is listed once."""
    by_key = {item["minted_key"]["S"]: item for item in items}
    return [credit_from_item(by_key[k]) for k in sorted(by_key, reverse=newest_first)]
