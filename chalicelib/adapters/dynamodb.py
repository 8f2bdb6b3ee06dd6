"""DynamoDB repositories: the one place for table keys and item mapping.

Table and index names come from infra/template.yaml (the only schema); this
module knows which item lives under which key:

registry  ACCOUNT#<name>   / ACCOUNT          account: key, roles (a string set)
          ACCOUNT#<name>   / NONCE#<nonce>    a used request nonce (TTL)
          PROVIDER#<id>    / PROVIDER         provider (GSIs: type, jurisdiction, owner)
          METER#<address>  / METER            meter address claim (unique), key, last reading
          METER#<address>  / REJECTION#<at>#<hash>   a refused (or duplicate) reading (TTL)
credits   CREDIT#<reading hash> / CREDIT    a credit (or a meter's baseline reading);
                                            sparse GSI keys while on sale / held
ledger    ACCOUNT#<name>   / BALANCE          available balance
          <KIND>#<id>      / ENTRY            one ledger movement (GSI EntriesByAccount)
          TREASURY         / SHARD#<n>        treasury balance, sharded
          ACCOUNT#<name>   / BOUGHT           Wh bought (settled) per energy type
          PURCHASE#<id>    / PURCHASE         a purchase and its escrow (GSIs:
                                              PurchasesDue while open, PurchasesByBuyer)
receipts  CHAIN#<provider> / RECEIPT#<seq>    a signed settlement receipt (GSI ReceiptsByBuyer)
          CHAIN#<provider> / HEAD             the chain's newest sequence and hash
registry  JOB#<name>       / WATERMARK        the first hour a scheduled job still reads

Every write is conditional; a commit with several writes is one
TransactWriteItems call, and a single write is a plain conditional call
(half the write capacity of a one-item transaction).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final, TypeVar

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from chalicelib.adapters.keys import (
    buyer_key,
    decode_buyer_cursor,
    decode_entry_cursor,
    decode_issued_cursor,
    decode_minted_cursor,
    decode_price_cursor,
    decode_receipt_cursor,
    decode_rejection_cursor,
    encode_cursor,
    entry_key,
    expiry_slot,
    issued_key,
    minted_key,
    price_bound,
    price_key,
    receipt_sort_key,
    rejection_sort_key,
)
from chalicelib.config import Settings
from chalicelib.domain.accounts import Account, Role
from chalicelib.domain.credits import Credit, CreditState, Retirement
from chalicelib.domain.errors import (
    AlreadyExists,
    ConcurrentUpdate,
    DomainError,
    InsufficientBalance,
    InvalidCursor,
    NotFound,
    ReplayedRequest,
)
from chalicelib.domain.ledger import EntryKind, LedgerEntry
from chalicelib.domain.providers import EnergyType, Location, Provider
from chalicelib.domain.readings import MeterState, Rejection, RejectionRecord
from chalicelib.domain.receipts import ChainHead, Receipt
from chalicelib.domain.trading import Purchase, PurchaseStatus, split_part
from chalicelib.services.ports import ListingFacts, Page, ProviderQuery

Item = dict[str, Any]  # a low-level DynamoDB item: {"attr": {"S": "..."}}
T = TypeVar("T")

_serializer: Final = TypeSerializer()
_deserializer: Final = TypeDeserializer()

# A provider listing examines at most this many index items per call, whatever
# its filters: a rare filter returns a short page and a cursor instead of
# reading the whole registry.
LIST_EXAMINE_BUDGET: Final = 250


def to_item(values: dict[str, Any]) -> Item:
    return {k: _serializer.serialize(v) for k, v in values.items() if v is not None}


def from_item(item: Item) -> dict[str, Any]:
    return {k: _deserializer.deserialize(v) for k, v in item.items()}


def _int(value: Any) -> int:
    # DynamoDB numbers come back as Decimal; ours are all integers.
    if not isinstance(value, Decimal) or value != value.to_integral_value():
        raise ValueError(f"stored number is not an integer: {value!r}")
    return int(value)


@dataclass(frozen=True)
class Tables:
    registry: str
    ledger: str
    credits: str
    receipts: str
    disputes: str

    @classmethod
    def from_settings(cls, settings: Settings) -> Tables:
        return cls(
            settings.registry_table,
            settings.ledger_table,
            settings.credits_table,
            settings.receipts_table,
            settings.disputes_table,
        )


# -- keys ------------------------------------------------------------------


def account_key(name: str) -> Item:
    return to_item({"pk": f"ACCOUNT#{name}", "sk": "ACCOUNT"})


def nonce_key(name: str, nonce: str) -> Item:
    return to_item({"pk": f"ACCOUNT#{name}", "sk": f"NONCE#{nonce}"})


def provider_key(provider_id: str) -> Item:
    return to_item({"pk": f"PROVIDER#{provider_id}", "sk": "PROVIDER"})


def meter_key(meter_address: str) -> Item:
    return to_item({"pk": f"METER#{meter_address}", "sk": "METER"})


def balance_key(name: str) -> Item:
    return to_item({"pk": f"ACCOUNT#{name}", "sk": "BALANCE"})


def ledger_entry_key(kind: EntryKind, entry_id: str) -> Item:
    return to_item({"pk": f"{kind.upper()}#{entry_id}", "sk": "ENTRY"})


def bought_key(name: str) -> Item:
    return to_item({"pk": f"ACCOUNT#{name}", "sk": "BOUGHT"})


def receipt_key(chain: str, sequence: int) -> Item:
    return to_item({"pk": f"CHAIN#{chain}", "sk": receipt_sort_key(sequence)})


def chain_head_key(chain: str) -> Item:
    return to_item({"pk": f"CHAIN#{chain}", "sk": "HEAD"})


def watermark_key(job: str) -> Item:
    return to_item({"pk": f"JOB#{job}", "sk": "WATERMARK"})


TREASURY_PK: Final = "TREASURY"


# -- item mapping -----------------------------------------------------------


def account_to_item(account: Account) -> Item:
    return to_item(
        {
            "pk": f"ACCOUNT#{account.name}",
            "sk": "ACCOUNT",
            "name": account.name,
            "public_key": account.public_key,
            "roles": {str(r) for r in account.roles},  # a string set
            "created_at": account.created_at,
        }
    )


def account_from_item(item: Item) -> Account:
    values = from_item(item)
    return Account(
        name=values["name"],
        public_key=values["public_key"],
        roles=frozenset(Role(r) for r in values["roles"]),
        created_at=_int(values["created_at"]),
    )


def provider_to_item(provider: Provider) -> Item:
    return to_item(
        {
            "pk": f"PROVIDER#{provider.provider_id}",
            "sk": "PROVIDER",
            "provider_id": provider.provider_id,
            # Index keys: ProvidersByEnergyType, ProvidersByJurisdiction, ProvidersByOwner.
            "energy_type": str(provider.energy_type),
            "jurisdiction": provider.jurisdiction,
            "price_key": price_key(provider),
            "owner": provider.owner,
            # Stored (derived) so list filters can read it.
            "status": str(provider.status),
            "display_name": provider.display_name,
            "latitude_micro_deg": provider.location.latitude_micro_deg,
            "longitude_micro_deg": provider.location.longitude_micro_deg,
            "capacity_wh": provider.capacity_wh,
            "price_micro_block_per_kwh": provider.price_micro_block_per_kwh,
            "stake_micro_block": provider.stake_micro_block,
            "meter_address": provider.meter_address,
            "meter_public_key": provider.meter_public_key,
            "paused": provider.paused,
            "available_wh": provider.available_wh,
            "open_obligations": provider.open_obligations,
            "settled_purchases": provider.settled_purchases,
            "upheld_disputes": provider.upheld_disputes,
            "earned_micro_block": provider.earned_micro_block,
            "sold_wh": provider.sold_wh,
            **slots_to_attributes(provider.reading_slots),
            "created_at": provider.created_at,
            "updated_at": provider.updated_at,
            "version": provider.version,
        }
    )


def slots_to_attributes(slots: frozenset[int]) -> dict[str, int | None]:
    """Recent reading slots as a bitmap: bit n set = a reading in slot ``last - n``.

    Two small numbers instead of a set of up to 96: the provider item stays
    under 1 KB, so each of its writes is one write unit.
    """
    if not slots:
        return {"reading_slot_last": None, "reading_slot_bits": None}
    last = max(slots)
    return {"reading_slot_last": last, "reading_slot_bits": sum(1 << (last - s) for s in slots)}


def slots_from_attributes(values: dict[str, Any]) -> frozenset[int]:
    if "reading_slot_last" not in values:
        return frozenset()
    last, bits = _int(values["reading_slot_last"]), _int(values["reading_slot_bits"])
    return frozenset(last - n for n in range(bits.bit_length()) if bits >> n & 1)


def provider_from_item(item: Item) -> Provider:
    v = from_item(item)
    return Provider(
        provider_id=v["provider_id"],
        owner=v["owner"],
        display_name=v["display_name"],
        energy_type=EnergyType(v["energy_type"]),
        jurisdiction=v["jurisdiction"],
        location=Location(_int(v["latitude_micro_deg"]), _int(v["longitude_micro_deg"])),
        capacity_wh=_int(v["capacity_wh"]),
        price_micro_block_per_kwh=_int(v["price_micro_block_per_kwh"]),
        stake_micro_block=_int(v["stake_micro_block"]),
        meter_address=v["meter_address"],
        meter_public_key=v["meter_public_key"],
        paused=bool(v["paused"]),
        available_wh=_int(v["available_wh"]),
        open_obligations=_int(v["open_obligations"]),
        settled_purchases=_int(v["settled_purchases"]),
        upheld_disputes=_int(v["upheld_disputes"]),
        earned_micro_block=_int(v.get("earned_micro_block", Decimal(0))),
        sold_wh=_int(v.get("sold_wh", Decimal(0))),
        reading_slots=slots_from_attributes(v),
        created_at=_int(v["created_at"]),
        updated_at=_int(v["updated_at"]),
        version=_int(v["version"]),
    )


# Counters written by ingestion, purchases and settlement with ADD/SET of
# their own, never by a profile save (so neither overwrites the other).
_NOT_PROFILE: Final = frozenset(
    {
        "pk",
        "sk",
        "available_wh",
        "reading_slot_last",
        "reading_slot_bits",
        "open_obligations",
        "settled_purchases",
        "earned_micro_block",
        "sold_wh",
    }
)
# Refused readings are kept this long for their owner, then expire (TTL).
REJECTION_RETENTION_SECONDS: Final = 30 * 86_400


def meter_from_item(item: Item) -> MeterState:
    v = from_item(item)
    optional = {k: _int(v[k]) for k in ("last_counter_wh", "last_timestamp_ms") if k in v}
    return MeterState(
        meter_address=v["meter_address"],
        provider_id=v["provider_id"],
        public_key=v["public_key"],
        active=bool(v.get("active", True)),
        last_counter_wh=optional.get("last_counter_wh"),
        last_timestamp_ms=optional.get("last_timestamp_ms"),
        last_reading_hash=v.get("last_reading_hash"),
        accepted_readings=_int(v.get("accepted_readings", Decimal(0))),
        rejections=tuple(
            sorted(
                (k.removeprefix("rejected_"), _int(n))
                for k, n in v.items()
                if k.startswith("rejected_")
            )
        ),
    )


def rejection_from_item(item: Item) -> RejectionRecord:
    v = from_item(item)
    return RejectionRecord(
        meter_address=v["meter_address"],
        reason=Rejection(v["reason"]),
        detail=v["detail"],
        at_ms=_int(v["at_ms"]),
        received_at_ms=_int(v["received_at_ms"]),
        payload_hash=v["payload_hash"],
        reading_hash=v.get("reading_hash"),
    )


def credit_key(credit_id: str) -> Item:
    return to_item({"pk": f"CREDIT#{credit_id}", "sk": "CREDIT"})


def credit_to_item(credit: Credit) -> Item:
    values: dict[str, Any] = from_item(credit_key(credit.credit_id)) | {
        "credit_id": credit.credit_id,
        "meter_address": credit.meter_address,
        "energy_type": str(credit.energy_type),
        "jurisdiction": credit.jurisdiction,
        "interval_start_ms": credit.interval_start_ms,
        "interval_end_ms": credit.interval_end_ms,
        "wh": credit.wh,
        "counter_wh": credit.counter_wh,
        "signature": credit.signature,
        "minted_at_ms": credit.minted_at_ms,
        "expires_at_ms": credit.expires_at_ms,
        "state": str(credit.state),
        "issuer_provider_id": credit.provider_id,
        "purchase_id": credit.purchase_id,
        "parent_credit_id": credit.parent_credit_id,
        "held_by": credit.holder,
    }
    if credit.retirement is not None:
        values.update(retirement_attributes(credit.retirement))
    if credit.state == CreditState.HELD:
        values["holder"] = credit.holder  # HoldingsByOwner (sparse: held, not retired)
    if credit.state != CreditState.BASELINE:
        # Index keys: CreditsByProvider, and while on sale AvailableByProvider
        # and ExpiringBySlot (sparse: an item leaves an index with its key).
        values["provider_id"] = credit.provider_id
        values["minted_key"] = minted_key(credit)
    if credit.state == CreditState.AVAILABLE:
        values["available_provider_id"] = credit.provider_id
        values["expiry_slot"] = expiry_slot(credit.expires_at_ms, credit.credit_id)
        values["expiry_key"] = f"{credit.expires_at_ms:015d}#{credit.credit_id}"
    return to_item(values)


def credit_from_item(item: Item) -> Credit:
    v = from_item(item)
    return Credit(
        credit_id=v["credit_id"],
        provider_id=v["issuer_provider_id"],
        meter_address=v["meter_address"],
        energy_type=EnergyType(v["energy_type"]),
        jurisdiction=v["jurisdiction"],
        interval_start_ms=_int(v["interval_start_ms"]),
        interval_end_ms=_int(v["interval_end_ms"]),
        wh=_int(v["wh"]),
        counter_wh=_int(v["counter_wh"]),
        signature=v["signature"],
        minted_at_ms=_int(v["minted_at_ms"]),
        expires_at_ms=_int(v["expires_at_ms"]),
        state=CreditState(v["state"]),
        purchase_id=v.get("purchase_id"),
        parent_credit_id=v.get("parent_credit_id"),
        holder=v.get("held_by"),
        retirement=(
            Retirement(
                beneficiary=v["beneficiary"],
                period_start_ms=_int(v["period_start_ms"]),
                period_end_ms=_int(v["period_end_ms"]),
                retired_by=v["retired_by"],
                retired_at_ms=_int(v["retired_at_ms"]),
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
        micro_block=_int(v["micro_block"]),
        reference=v["reference"],
        at=_int(v["at"]),
    )


# -- unit of work -----------------------------------------------------------


@dataclass(frozen=True)
class _Write:
    """One staged conditional write and the error its failed condition means."""

    kind: str  # "Put" or "Update": the TransactWriteItems member name
    request: dict[str, Any]
    on_condition_failed: Callable[[], DomainError]


class _Staged:
    def __init__(self) -> None:
        self.writes: list[_Write] = []

    def put(
        self,
        table: str,
        item: Item,
        condition: str,
        on_failed: Callable[[], DomainError],
        **extra: Any,
    ) -> None:
        request = {"TableName": table, "Item": item, "ConditionExpression": condition, **extra}
        self.writes.append(_Write("Put", request, on_failed))

    def update(
        self,
        table: str,
        key: Item,
        expression: str,
        condition: str | None,
        on_failed: Callable[[], DomainError],
        **extra: Any,
    ) -> None:
        request = {"TableName": table, "Key": key, "UpdateExpression": expression, **extra}
        if condition is not None:  # None: an ADD that commutes with everything
            request["ConditionExpression"] = condition
        self.writes.append(_Write("Update", request, on_failed))


class DynamoAccounts:
    def __init__(self, client: Any, tables: Tables, staged: _Staged) -> None:
        self._client, self._tables, self._staged = client, tables, staged
        # Identity map: authentication and the use case both look up the
        # signer; one unit of work reads each account once.
        self._read: dict[str, Account | None] = {}

    def get(self, name: str) -> Account | None:
        if name not in self._read:
            found = self._client.get_item(
                TableName=self._tables.registry,
                Key=account_key(name),
                ReturnConsumedCapacity="TOTAL",
            )
            self._read[name] = account_from_item(found["Item"]) if "Item" in found else None
        return self._read[name]

    def add(self, account: Account) -> None:
        self._staged.put(
            self._tables.registry,
            account_to_item(account),
            "attribute_not_exists(pk)",
            lambda: AlreadyExists("account already exists", account=account.name),
        )

    def add_role(self, name: str, role: Role) -> None:
        self._change_roles(name, "ADD", role)

    def remove_role(self, name: str, role: Role) -> None:
        self._change_roles(name, "DELETE", role)

    def _change_roles(self, name: str, action: str, role: Role) -> None:
        # Roles are a string set: ADD and DELETE commute, so two role changes
        # at once both take effect instead of the later overwriting the earlier.
        self._staged.update(
            self._tables.registry,
            account_key(name),
            f"{action} #roles :role",
            "attribute_exists(pk)",
            lambda: NotFound("no such account", account=name),
            ExpressionAttributeNames={"#roles": "roles"},
            ExpressionAttributeValues=to_item({":role": {str(role)}}),
        )


class DynamoNonces:
    def __init__(self, client: Any, tables: Tables, staged: _Staged) -> None:
        self._client, self._tables, self._staged = client, tables, staged

    def seen(self, account: str, nonce: str) -> bool:
        found = self._client.get_item(
            TableName=self._tables.registry,
            Key=nonce_key(account, nonce),
            ConsistentRead=True,
            ReturnConsumedCapacity="TOTAL",
        )
        return "Item" in found

    def consume(self, account: str, nonce: str, expires_at: int) -> None:
        item = {**nonce_key(account, nonce), **to_item({"expires_at": expires_at})}
        self._staged.put(
            self._tables.registry,
            item,
            "attribute_not_exists(pk)",
            lambda: ReplayedRequest("this request was already received", nonce=nonce),
        )


class DynamoLedger:
    def __init__(self, client: Any, tables: Tables, staged: _Staged) -> None:
        self._client, self._tables, self._staged = client, tables, staged

    def balance(self, account: str) -> int:
        found = self._client.get_item(
            TableName=self._tables.ledger, Key=balance_key(account), ReturnConsumedCapacity="TOTAL"
        )
        return _int(from_item(found["Item"])["micro_block"]) if "Item" in found else 0

    def treasury(self) -> int:
        total = 0
        for item in _query_all(
            self._client,
            TableName=self._tables.ledger,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues=to_item({":pk": TREASURY_PK}),
        ):
            total += _int(from_item(item)["micro_block"])
        return total

    def entries(self, account: str, limit: int, cursor: str | None) -> Page[LedgerEntry]:
        after = decode_entry_cursor(cursor) if cursor else ""
        response = self._client.query(
            TableName=self._tables.ledger,
            IndexName="EntriesByAccount",
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

    def debit(self, account: str, micro_block: int) -> None:
        self._staged.update(
            self._tables.ledger,
            balance_key(account),
            "SET micro_block = micro_block - :m",
            "micro_block >= :m",
            lambda: InsufficientBalance("the balance does not cover this", account=account),
            ExpressionAttributeValues=to_item({":m": micro_block}),
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
            to_item({"pk": TREASURY_PK, "sk": f"SHARD#{shard:02d}"}),
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
        return {k.removeprefix("wh_"): _int(v) for k, v in values.items() if k.startswith("wh_")}

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


class DynamoProviders:
    def __init__(self, client: Any, tables: Tables, staged: _Staged) -> None:
        self._client, self._tables, self._staged = client, tables, staged

    def get(self, provider_id: str) -> Provider | None:
        found = self._client.get_item(
            TableName=self._tables.registry,
            Key=provider_key(provider_id),
            ReturnConsumedCapacity="TOTAL",
        )
        return provider_from_item(found["Item"]) if "Item" in found else None

    def owned_by(self, owner: str) -> Sequence[Provider]:
        ids = [
            from_item(item)["provider_id"]
            for item in _query_all(
                self._client,
                TableName=self._tables.registry,
                IndexName="ProvidersByOwner",
                KeyConditionExpression="#owner = :o",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues=to_item({":o": owner}),
            )
        ]
        return self._whole(ids)

    def _whole(self, provider_ids: Sequence[str]) -> list[Provider]:
        """The providers behind index entries, read whole, in the given order."""
        found: dict[str, Provider] = {}
        for start in range(0, len(provider_ids), 100):  # BatchGetItem takes 100 keys
            keys = [provider_key(pid) for pid in provider_ids[start : start + 100]]
            request: dict[str, Any] = {self._tables.registry: {"Keys": keys}}
            while request:
                response = self._client.batch_get_item(
                    RequestItems=request, ReturnConsumedCapacity="TOTAL"
                )
                for item in response["Responses"].get(self._tables.registry, []):
                    provider = provider_from_item(item)
                    found[provider.provider_id] = provider
                request = response.get("UnprocessedKeys") or {}
        return [found[pid] for pid in provider_ids if pid in found]

    def query(self, query: ProviderQuery, limit: int, cursor: str | None) -> Page[Provider]:
        after = decode_price_cursor(cursor) if cursor else ""
        upper = price_bound(
            query.max_price_micro_block_per_kwh
            if query.max_price_micro_block_per_kwh is not None
            else 10**12 - 1
        )
        # Pick the index whose partition is the narrowest equality filter; an
        # unfiltered listing reads one partition per energy type and merges
        # them, all in price order.
        if query.jurisdiction is not None:
            partitions = [("ProvidersByJurisdiction", "jurisdiction", query.jurisdiction)]
        elif query.energy_type is not None:
            partitions = [("ProvidersByEnergyType", "energy_type", str(query.energy_type))]
        else:
            partitions = [("ProvidersByEnergyType", "energy_type", str(t)) for t in EnergyType]
        # Each partition is read lazily in chunks sized so that, together, the
        # first chunks hold one page (+1 to know whether there is another).
        chunk = -(-(limit + 1) // len(partitions))
        merged = heapq.merge(
            *(
                self._partition(index, attribute, value, after, upper, chunk)
                for index, attribute, value in partitions
            ),
            key=lambda pair: pair[0],
        )
        # The remaining filters are applied here, with the same predicate as
        # every adapter (ProviderQuery.admits). Reading stops at a budget of
        # examined items, so a rare filter costs a bounded amount per call: the
        # page may then be short, and its cursor resumes after the last item
        # examined (every partition has been read in order up to it).
        page: list[str] = []  # price keys: price, then provider id
        last_key = after
        for examined, (key, facts) in enumerate(merged):
            if len(page) == limit:
                return Page(self._whole_page(page), encode_cursor(page[-1]))
            if examined == LIST_EXAMINE_BUDGET:
                return Page(self._whole_page(page), encode_cursor(last_key))
            last_key = key
            if query.admits_listing(facts):
                page.append(key)
        return Page(self._whole_page(page), None)

    def _whole_page(self, price_keys: Sequence[str]) -> list[Provider]:
        return self._whole([key.split("#", 1)[1] for key in price_keys])

    def _partition(
        self, index: str, attribute: str, value: str, after: str, upper: str, chunk: int
    ) -> Iterator[tuple[str, ListingFacts]]:
        request: dict[str, Any] = {
            "TableName": self._tables.registry,
            "IndexName": index,
            "KeyConditionExpression": "#p = :p AND price_key BETWEEN :lo AND :hi",
            "ExpressionAttributeNames": {"#p": attribute},
            "ExpressionAttributeValues": to_item({":p": value, ":lo": after + "!", ":hi": upper}),
        }
        for item in _query_all(self._client, Limit=chunk, **request):
            entry = from_item(item)
            yield (
                entry["price_key"],
                ListingFacts(
                    energy_type=entry["energy_type"],
                    jurisdiction=entry["jurisdiction"],
                    price_micro_block_per_kwh=int(entry["price_key"].split("#", 1)[0]),
                    capacity_wh=_int(entry["capacity_wh"]),
                    status=entry["status"],
                ),
            )

    def add(self, provider: Provider) -> None:
        self._staged.put(
            self._tables.registry,
            provider_to_item(provider),
            "attribute_not_exists(pk)",
            lambda: AlreadyExists("provider already registered", provider_id=provider.provider_id),
        )
        meter = {
            **meter_key(provider.meter_address),
            **to_item(
                {
                    "meter_address": provider.meter_address,
                    "provider_id": provider.provider_id,
                    "public_key": provider.meter_public_key,
                }
            ),
        }
        self._staged.put(
            self._tables.registry,
            meter,
            "attribute_not_exists(pk)",
            lambda: AlreadyExists(
                "meter address already registered", meter_address=provider.meter_address
            ),
        )

    def save(self, provider: Provider, expected_version: int) -> None:
        values = from_item(provider_to_item(provider))
        profile = {k: v for k, v in values.items() if k not in _NOT_PROFILE}
        names = {f"#a{n}": k for n, k in enumerate(profile)}
        self._staged.update(
            self._tables.registry,
            provider_key(provider.provider_id),
            "SET " + ", ".join(f"#a{n} = :a{n}" for n in range(len(profile))),
            "version = :expected",
            lambda: ConcurrentUpdate(
                "the provider changed; retry", provider_id=provider.provider_id
            ),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=to_item(
                {":expected": expected_version}
                | {f":a{n}": v for n, v in enumerate(profile.values())}
            ),
        )

    def reserve_energy(self, provider: Provider, wh: int) -> None:
        # The version moves: a stake withdrawal that read the provider before
        # this obligation opened must fail its version condition.
        self._staged.update(
            self._tables.registry,
            provider_key(provider.provider_id),
            "ADD available_wh :minus, open_obligations :one, version :one",
            "available_wh >= :wh AND #status = :active AND price_micro_block_per_kwh = :price",
            lambda: ConcurrentUpdate(
                "the provider changed; retry", provider_id=provider.provider_id
            ),
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues=to_item(
                {
                    ":minus": -wh,
                    ":one": 1,
                    ":wh": wh,
                    ":active": "active",
                    ":price": provider.price_micro_block_per_kwh,
                }
            ),
        )

    def record_generation(self, provider_id: str, wh: int, reading_slots: frozenset[int]) -> None:
        # ADD commutes with the owner's profile writes, which never touch these.
        self._staged.update(
            self._tables.registry,
            provider_key(provider_id),
            "ADD available_wh :wh SET reading_slot_last = :last, reading_slot_bits = :bits",
            "attribute_exists(pk)",
            lambda: NotFound("no such provider", provider_id=provider_id),
            ExpressionAttributeValues=to_item(
                {":wh": wh}
                | {
                    f":{k.removeprefix('reading_slot_')}": v
                    for k, v in slots_to_attributes(reading_slots).items()
                }
            ),
        )

    def settle_obligation(self, provider_id: str, earned_micro_block: int, wh: int) -> None:
        self._staged.update(
            self._tables.registry,
            provider_key(provider_id),
            "ADD open_obligations :minus_one, settled_purchases :one,"
            " earned_micro_block :earned, sold_wh :wh",
            "open_obligations >= :one",
            lambda: ConcurrentUpdate("the provider changed; retry", provider_id=provider_id),
            ExpressionAttributeValues=to_item(
                {":minus_one": -1, ":one": 1, ":earned": earned_micro_block, ":wh": wh}
            ),
        )

    def expire_energy(self, provider_id: str, wh: int) -> None:
        self._staged.update(
            self._tables.registry,
            provider_key(provider_id),
            "ADD available_wh :minus",
            "available_wh >= :wh",
            lambda: ConcurrentUpdate("the provider changed; retry", provider_id=provider_id),
            ExpressionAttributeValues=to_item({":minus": -wh, ":wh": wh}),
        )


class DynamoMeters:
    def __init__(self, client: Any, tables: Tables, staged: _Staged) -> None:
        self._client, self._tables, self._staged = client, tables, staged

    def get(self, meter_address: str) -> MeterState | None:
        found = self._client.get_item(
            TableName=self._tables.registry,
            Key=meter_key(meter_address),
            ReturnConsumedCapacity="TOTAL",
        )
        return meter_from_item(found["Item"]) if "Item" in found else None

    def get_with_provider(
        self, meter_address: str, provider_id: str
    ) -> tuple[MeterState | None, Provider | None]:
        keys = [meter_key(meter_address), provider_key(provider_id)]
        found: list[Item] = []
        # Strongly consistent: a redelivery arriving within replication lag
        # must see the meter state its first delivery wrote, or it would be
        # judged a counter that went backwards.
        request: dict[str, Any] = {self._tables.registry: {"Keys": keys, "ConsistentRead": True}}
        while request:
            response = self._client.batch_get_item(
                RequestItems=request, ReturnConsumedCapacity="TOTAL"
            )
            found.extend(response["Responses"].get(self._tables.registry, []))
            request = response.get("UnprocessedKeys") or {}
        meter = next((i for i in found if i["sk"]["S"] == "METER"), None)
        provider = next((i for i in found if i["sk"]["S"] == "PROVIDER"), None)
        return (
            meter_from_item(meter) if meter else None,
            provider_from_item(provider) if provider else None,
        )

    def advance(self, before: MeterState, after: MeterState) -> None:
        condition = (
            "attribute_not_exists(last_reading_hash)"
            if before.last_reading_hash is None
            else "last_reading_hash = :previous"
        )
        values: dict[str, Any] = {
            ":counter": after.last_counter_wh,
            ":at": after.last_timestamp_ms,
            ":hash": after.last_reading_hash,
            ":one": 1,
        }
        if before.last_reading_hash is not None:
            values[":previous"] = before.last_reading_hash
        self._staged.update(
            self._tables.registry,
            meter_key(before.meter_address),
            "SET last_counter_wh = :counter, last_timestamp_ms = :at, last_reading_hash = :hash"
            " ADD accepted_readings :one",
            f"attribute_exists(pk) AND {condition}",
            lambda: ConcurrentUpdate(
                "the meter moved on; retry", meter_address=before.meter_address
            ),
            ExpressionAttributeValues=to_item(values),
        )

    def rotate_key(self, meter_address: str, public_key: str) -> None:
        self._staged.update(
            self._tables.registry,
            meter_key(meter_address),
            "SET public_key = :key",
            "attribute_exists(pk)",
            lambda: NotFound("no such meter", meter_address=meter_address),
            ExpressionAttributeValues=to_item({":key": public_key}),
        )

    def record_rejection(self, record: RejectionRecord, meter_known: bool) -> None:
        item = to_item(
            {
                "pk": f"METER#{record.meter_address}",
                "sk": rejection_sort_key(record),
                "meter_address": record.meter_address,
                "reason": str(record.reason),
                "detail": record.detail,
                "at_ms": record.at_ms,
                "received_at_ms": record.received_at_ms,
                "payload_hash": record.payload_hash,
                "reading_hash": record.reading_hash,
                "expires_at": record.received_at_ms // 1000 + REJECTION_RETENTION_SECONDS,
            }
        )
        self._staged.put(
            self._tables.registry,
            item,
            "attribute_not_exists(pk)",
            lambda: AlreadyExists("this delivery was already recorded"),
        )
        if meter_known:
            self._staged.update(
                self._tables.registry,
                meter_key(record.meter_address),
                "ADD #count :one",
                "attribute_exists(pk)",
                lambda: NotFound("no such meter", meter_address=record.meter_address),
                ExpressionAttributeNames={"#count": f"rejected_{record.reason}"},
                ExpressionAttributeValues=to_item({":one": 1}),
            )

    def rejections(
        self, meter_address: str, limit: int, cursor: str | None
    ) -> Page[RejectionRecord]:
        # BETWEEN is inclusive: a later page asks for one more item and drops
        # the one its cursor names.
        before = decode_rejection_cursor(cursor) if cursor else "REJECTION#~"
        response = self._client.query(
            TableName=self._tables.registry,
            KeyConditionExpression="pk = :pk AND sk BETWEEN :lo AND :hi",
            ExpressionAttributeValues=to_item(
                {":pk": f"METER#{meter_address}", ":lo": "REJECTION#", ":hi": before}
            ),
            ScanIndexForward=False,
            Limit=limit + (2 if cursor else 1),
            ReturnConsumedCapacity="TOTAL",
        )
        items = [i for i in response["Items"] if i["sk"]["S"] != before]
        records = [rejection_from_item(i) for i in items]
        page = records[:limit]
        more = len(records) > limit
        return Page(page, encode_cursor(rejection_sort_key(page[-1])) if more else None)


class DynamoCredits:
    def __init__(self, client: Any, tables: Tables, staged: _Staged) -> None:
        self._client, self._tables, self._staged = client, tables, staged

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

    def available(self, provider_id: str, limit: int) -> Sequence[Credit]:
        response = self._client.query(
            TableName=self._tables.credits,
            IndexName="AvailableByProvider",
            KeyConditionExpression="available_provider_id = :p",
            ExpressionAttributeValues=to_item({":p": provider_id}),
            ScanIndexForward=True,  # oldest first
            Limit=limit,
            ReturnConsumedCapacity="TOTAL",
        )
        return [credit_from_item(item) for item in response["Items"]]

    def reserve(self, credit: Credit, purchase_id: str) -> None:
        # Leaving the sparse on-sale indexes is removing their key attributes.
        self._staged.update(
            self._tables.credits,
            credit_key(credit.credit_id),
            "SET #state = :reserved, purchase_id = :purchase"
            " REMOVE available_provider_id, expiry_slot, expiry_key",
            "#state = :available AND wh = :wh",
            lambda: ConcurrentUpdate("the credit changed; retry", credit_id=credit.credit_id),
            ExpressionAttributeNames={"#state": "state"},
            ExpressionAttributeValues=to_item(
                {
                    ":reserved": str(CreditState.RESERVED),
                    ":available": str(CreditState.AVAILABLE),
                    ":purchase": purchase_id,
                    ":wh": credit.wh,
                }
            ),
        )

    def split(self, credit: Credit, take_wh: int, purchase_id: str) -> Credit:
        part = split_part(credit, take_wh, purchase_id)
        self._staged.update(
            self._tables.credits,
            credit_key(credit.credit_id),
            "SET wh = :left",
            "#state = :available AND wh = :wh",
            lambda: ConcurrentUpdate("the credit changed; retry", credit_id=credit.credit_id),
            ExpressionAttributeNames={"#state": "state"},
            ExpressionAttributeValues=to_item(
                {
                    ":left": credit.wh - take_wh,
                    ":available": str(CreditState.AVAILABLE),
                    ":wh": credit.wh,
                }
            ),
        )
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
        found: dict[str, Credit] = {}
        for start in range(0, len(credit_ids), 100):  # BatchGetItem takes 100 keys
            keys = [credit_key(c) for c in dict.fromkeys(credit_ids[start : start + 100])]
            request: dict[str, Any] = {self._tables.credits: {"Keys": keys, "ConsistentRead": True}}
            while request:
                response = self._client.batch_get_item(
                    RequestItems=request, ReturnConsumedCapacity="TOTAL"
                )
                for item in response["Responses"].get(self._tables.credits, []):
                    credit = credit_from_item(item)
                    found[credit.credit_id] = credit
                request = response.get("UnprocessedKeys") or {}
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
        return _newest_first(
            self._client,
            _IndexRange(self._tables.credits, "HoldingsByOwner", "holder", holder, "minted_key"),
            decode_minted_cursor(cursor) if cursor else None,
            limit,
            credit_from_item,
            minted_key,
        )

    def expiring(self, slot: str, now_ms: int, limit: int) -> Sequence[Credit]:
        response = self._client.query(
            TableName=self._tables.credits,
            IndexName="ExpiringBySlot",
            KeyConditionExpression="expiry_slot = :slot AND expiry_key <= :now",
            ExpressionAttributeValues=to_item({":slot": slot, ":now": f"{now_ms:015d}#~"}),
            Limit=limit,
            ReturnConsumedCapacity="TOTAL",
        )
        return [credit_from_item(i) for i in response["Items"]]

    def expire(self, credit: Credit) -> None:
        self._staged.update(
            self._tables.credits,
            credit_key(credit.credit_id),
            "SET #state = :expired REMOVE available_provider_id, expiry_slot, expiry_key",
            "#state = :available AND wh = :wh",
            lambda: ConcurrentUpdate("the credit changed; retry", credit_id=credit.credit_id),
            ExpressionAttributeNames={"#state": "state"},
            ExpressionAttributeValues=to_item(
                {
                    ":expired": str(CreditState.EXPIRED),
                    ":available": str(CreditState.AVAILABLE),
                    ":wh": credit.wh,
                }
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

    def by_provider(self, provider_id: str, limit: int, cursor: str | None) -> Page[Credit]:
        return _newest_first(
            self._client,
            _IndexRange(
                self._tables.credits, "CreditsByProvider", "provider_id", provider_id, "minted_key"
            ),
            decode_minted_cursor(cursor) if cursor else None,
            limit,
            credit_from_item,
            minted_key,
        )


@dataclass(frozen=True)
class _IndexRange:
    """One partition of a table index, read along its sort key."""

    table: str
    index: str
    partition_attribute: str
    partition: str
    sort_attribute: str


def _newest_first(
    client: Any,
    where: _IndexRange,
    before: str | None,
    limit: int,
    decode: Callable[[Item], T],
    sort_key_of: Callable[[T], str],
) -> Page[T]:
    """One page of an index partition, highest sort key first, below the cursor's."""
    key_condition = "#p = :p"
    names = {"#p": where.partition_attribute}
    values: dict[str, Any] = {":p": where.partition}
    if before is not None:
        key_condition += " AND #s < :before"
        names["#s"] = where.sort_attribute
        values[":before"] = before
    response = client.query(
        TableName=where.table,
        IndexName=where.index,
        KeyConditionExpression=key_condition,
        ExpressionAttributeNames=names,
        ExpressionAttributeValues=to_item(values),
        ScanIndexForward=False,
        Limit=limit + 1,
        ReturnConsumedCapacity="TOTAL",
    )
    found = [decode(item) for item in response["Items"]]
    page = found[:limit]
    more = len(found) > limit
    return Page(page, encode_cursor(sort_key_of(page[-1])) if more else None)


def _query_all(client: Any, **request: Any) -> Iterator[Item]:
    """Every item of a Query, page by page, lazily: stop reading when the caller stops."""
    while True:
        response = client.query(ReturnConsumedCapacity="TOTAL", **request)
        yield from response["Items"]
        if "LastEvaluatedKey" not in response:
            return
        request["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def purchase_key(purchase_id: str) -> Item:
    return to_item({"pk": f"PURCHASE#{purchase_id}", "sk": "PURCHASE"})


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
    }
    if purchase.status == PurchaseStatus.OPEN:
        # PurchasesDue (sparse): the settlement job reads the hours that are due.
        values["due_slot"] = due_slot(purchase.settles_at_ms // 3_600_000)
        values["due_key"] = f"{purchase.settles_at_ms:015d}#{purchase.purchase_id}"
    return to_item(values)


def purchase_from_item(item: Item) -> Purchase:
    v = from_item(item)
    return Purchase(
        purchase_id=v["purchase_id"],
        buyer=v["buyer"],
        provider_id=v["provider_id"],
        wh=_int(v["wh"]),
        price_micro_block_per_kwh=_int(v["price_micro_block_per_kwh"]),
        escrow_micro_block=_int(v["escrow_micro_block"]),
        credit_ids=tuple(v["credit_ids"]),
        created_at_ms=_int(v["created_at_ms"]),
        settles_at_ms=_int(v["settles_at_ms"]),
        status=PurchaseStatus(v["status"]),
        settled_at_ms=_int(v["settled_at_ms"]) if "settled_at_ms" in v else None,
        receipt_chain=v.get("receipt_chain"),
        receipt_sequence=_int(v["receipt_sequence"]) if "receipt_sequence" in v else None,
        receipt_hash=v.get("receipt_hash"),
    )


def due_slot(hour: int) -> str:
    return f"D{hour}"


class DynamoPurchases:
    def __init__(self, client: Any, tables: Tables, staged: _Staged) -> None:
        self._client, self._tables, self._staged = client, tables, staged

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

    def due(self, hour: int, now_ms: int, limit: int) -> Sequence[Purchase]:
        response = self._client.query(
            TableName=self._tables.ledger,
            IndexName="PurchasesDue",
            KeyConditionExpression="due_slot = :slot AND due_key <= :now",
            ExpressionAttributeValues=to_item(
                {":slot": due_slot(hour), ":now": f"{now_ms:015d}#~"}
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
            IndexName="PurchasesByBuyer",
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
        sequence=_int(v["sequence"]),
        previous_hash=v["previous_hash"],
        kind=v["kind"],
        transaction_id=v["transaction_id"],
        buyer=v["buyer"],
        provider_id=v["provider_id"],
        provider_owner=v["provider_owner"],
        wh=_int(v["wh"]),
        price_micro_block_per_kwh=_int(v["price_micro_block_per_kwh"]),
        total_cost_micro_block=_int(v["total_cost_micro_block"]),
        fee_micro_block=_int(v["fee_micro_block"]),
        provider_amount_micro_block=_int(v["provider_amount_micro_block"]),
        credit_ids=tuple(v["credit_ids"]),
        settled_at_ms=_int(v["settled_at_ms"]),
        settled_by=v["settled_by"],
        receipt_hash=v["receipt_hash"],
        signature=v["signature"],
    )


class DynamoReceipts:
    def __init__(self, client: Any, tables: Tables, staged: _Staged) -> None:
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
        return ChainHead(chain, _int(v["sequence"]), v["receipt_hash"])

    def get(self, chain: str, sequence: int) -> Receipt | None:
        found = self._client.get_item(
            TableName=self._tables.receipts,
            Key=receipt_key(chain, sequence),
            ConsistentRead=True,
            ReturnConsumedCapacity="TOTAL",
        )
        return receipt_from_item(found["Item"]) if "Item" in found else None

    def append(self, receipt: Receipt) -> None:
        self._staged.put(
            self._tables.receipts,
            receipt_to_item(receipt),
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
        receipts = [receipt_from_item(i) for i in response["Items"] if i["sk"]["S"] != after]
        page = receipts[:limit]
        more = len(receipts) > limit
        return Page(page, encode_cursor(receipt_sort_key(page[-1].sequence)) if more else None)

    def by_buyer(self, buyer: str, limit: int, cursor: str | None) -> Page[Receipt]:
        return _newest_first(
            self._client,
            _IndexRange(self._tables.receipts, "ReceiptsByBuyer", "buyer", buyer, "issued_key"),
            decode_issued_cursor(cursor) if cursor else None,
            limit,
            receipt_from_item,
            issued_key,
        )


class DynamoJobs:
    def __init__(self, client: Any, tables: Tables, staged: _Staged) -> None:
        self._client, self._tables, self._staged = client, tables, staged

    def watermark(self, job: str) -> int | None:
        found = self._client.get_item(
            TableName=self._tables.registry,
            Key=watermark_key(job),
            ConsistentRead=True,
            ReturnConsumedCapacity="TOTAL",
        )
        return _int(from_item(found["Item"])["hour"]) if "Item" in found else None

    def advance(self, job: str, hour: int) -> None:
        self._staged.update(
            self._tables.registry,
            watermark_key(job),
            "SET #hour = :hour",
            "attribute_not_exists(pk) OR #hour < :hour",
            lambda: ConcurrentUpdate("another run moved the watermark", job=job),
            ExpressionAttributeNames={"#hour": "hour"},
            ExpressionAttributeValues=to_item({":hour": hour}),
        )


class DynamoUnitOfWork:
    def __init__(self, client: Any, tables: Tables) -> None:
        self._client = client
        self._staged = _Staged()
        self.accounts = DynamoAccounts(client, tables, self._staged)
        self.nonces = DynamoNonces(client, tables, self._staged)
        self.ledger = DynamoLedger(client, tables, self._staged)
        self.providers = DynamoProviders(client, tables, self._staged)
        self.meters = DynamoMeters(client, tables, self._staged)
        self.credits = DynamoCredits(client, tables, self._staged)
        self.purchases = DynamoPurchases(client, tables, self._staged)
        self.receipts = DynamoReceipts(client, tables, self._staged)
        self.jobs = DynamoJobs(client, tables, self._staged)

    def commit(self) -> None:
        writes, self._staged.writes = self._staged.writes, []
        if not writes:
            return
        if len(writes) == 1:
            self._commit_one(writes[0])
        else:
            self._commit_transaction(writes)

    def _commit_one(self, write: _Write) -> None:
        call = self._client.put_item if write.kind == "Put" else self._client.update_item
        try:
            call(ReturnConsumedCapacity="TOTAL", **write.request)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise write.on_condition_failed() from exc
            raise

    def _commit_transaction(self, writes: list[_Write]) -> None:
        try:
            self._client.transact_write_items(
                TransactItems=[{w.kind: w.request} for w in writes],
                ReturnConsumedCapacity="TOTAL",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            reasons = exc.response.get("CancellationReasons") or []
            codes = [r.get("Code", "None") for r in reasons]
            for write, code in zip(writes, codes, strict=False):
                if code == "ConditionalCheckFailed":
                    raise write.on_condition_failed() from exc
            # TransactionConflict: another transaction held one of the items.
            raise ConcurrentUpdate(
                "another request changed the same records; retry", cancellation_reasons=codes
            ) from exc
