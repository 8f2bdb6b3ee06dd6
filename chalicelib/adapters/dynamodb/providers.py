"""Providers: the registry item, its listing indexes and its counters."""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

from chalicelib.adapters.dynamodb.codec import Item, as_int, from_item, to_item
from chalicelib.adapters.dynamodb.layout import (
    PROVIDERS_BY_ENERGY_TYPE,
    PROVIDERS_BY_JURISDICTION,
    PROVIDERS_BY_OWNER,
    Tables,
    decode_price_cursor,
    encode_cursor,
    meter_key,
    price_bound,
    price_key,
    provider_key,
)
from chalicelib.adapters.dynamodb.paging import get_all, query_all
from chalicelib.domain.credits import Freeze
from chalicelib.domain.errors import (
    AlreadyExists,
    ConcurrentUpdate,
)
from chalicelib.domain.providers import (
    EnergyType,
    ListingFacts,
    Location,
    Provider,
    ProviderQuery,
    ReadingWindow,
)
from chalicelib.services.ports import Page

if TYPE_CHECKING:
    from chalicelib.adapters.dynamodb.unit_of_work import Staged


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
            **window_attributes(provider.reading_window),
            "freezes": freezes_to_list(provider.freezes),
            "disputes_version": provider.disputes_version,
            "created_at": provider.created_at,
            "updated_at": provider.updated_at,
            "version": provider.version,
        }
    )


def freezes_to_list(freezes: Sequence[Freeze]) -> list[dict[str, Any]]:
    return [
        {"dispute_id": f.dispute_id, "from_ms": f.from_ms, "to_ms": f.to_ms, "wh": f.wh}
        | ({"reading_hash": f.reading_hash} if f.reading_hash is not None else {})
        for f in freezes
    ]


def freezes_from_list(values: list[dict[str, Any]]) -> tuple[Freeze, ...]:
    return tuple(
        Freeze(
            v["dispute_id"],
            as_int(v["from_ms"]),
            as_int(v["to_ms"]),
            v.get("reading_hash"),
            as_int(v.get("wh", Decimal(0))),
        )
        for v in values
    )


def window_attributes(window: ReadingWindow) -> dict[str, int | None]:
    """The recent reading slots' bitmap: two numbers (absent before a reading)."""
    if window.last is None:
        return {"reading_slot_last": None, "reading_slot_bits": None}
    return {"reading_slot_last": window.last, "reading_slot_bits": window.bits}


def window_from_attributes(values: dict[str, Any]) -> ReadingWindow:
    if "reading_slot_last" not in values:
        return ReadingWindow()
    return ReadingWindow(as_int(values["reading_slot_last"]), as_int(values["reading_slot_bits"]))


def provider_from_item(item: Item) -> Provider:
    v = from_item(item)
    return Provider(
        provider_id=v["provider_id"],
        owner=v["owner"],
        display_name=v["display_name"],
        energy_type=EnergyType(v["energy_type"]),
        jurisdiction=v["jurisdiction"],
        location=Location(as_int(v["latitude_micro_deg"]), as_int(v["longitude_micro_deg"])),
        capacity_wh=as_int(v["capacity_wh"]),
        price_micro_block_per_kwh=as_int(v["price_micro_block_per_kwh"]),
        stake_micro_block=as_int(v["stake_micro_block"]),
        meter_address=v["meter_address"],
        meter_public_key=v["meter_public_key"],
        paused=bool(v["paused"]),
        available_wh=as_int(v["available_wh"]),
        open_obligations=as_int(v["open_obligations"]),
        settled_purchases=as_int(v["settled_purchases"]),
        upheld_disputes=as_int(v["upheld_disputes"]),
        earned_micro_block=as_int(v.get("earned_micro_block", Decimal(0))),
        sold_wh=as_int(v.get("sold_wh", Decimal(0))),
        reading_window=window_from_attributes(v),
        freezes=freezes_from_list(v.get("freezes", [])),
        disputes_version=as_int(v.get("disputes_version", Decimal(0))),
        created_at=as_int(v["created_at"]),
        updated_at=as_int(v["updated_at"]),
        version=as_int(v["version"]),
    )


# A provider listing examines at most this many index items per call, whatever
# its filters: a rare filter returns a short page and a cursor instead of
# reading the whole registry.
LIST_EXAMINE_BUDGET: Final = 250

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
        "upheld_disputes",
        "freezes",
        "disputes_version",
    }
)


def _disputes_as_read(provider: Provider) -> tuple[str, dict[str, Any]]:
    """The condition that the provider's disputes are as ``provider`` shows them."""
    if provider.disputes_version == 0:
        return "(attribute_not_exists(disputes_version) OR disputes_version = :dv)", {":dv": 0}
    return "disputes_version = :dv", {":dv": provider.disputes_version}


class DynamoProviders:
    def __init__(self, client: Any, tables: Tables, staged: Staged) -> None:
        self._client, self._tables, self._staged = client, tables, staged

    def get(self, provider_id: str) -> Provider | None:
        found = self._client.get_item(
            TableName=self._tables.registry,
            Key=provider_key(provider_id),
            ReturnConsumedCapacity="TOTAL",
        )
        return provider_from_item(found["Item"]) if "Item" in found else None

    def owned_by(self, owner: str, *, consistent: bool = False) -> Sequence[Provider]:
        ids = [
            from_item(item)["provider_id"]
            for item in query_all(
                self._client,
                TableName=self._tables.registry,
                IndexName=PROVIDERS_BY_OWNER,
                KeyConditionExpression="#owner = :o",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues=to_item({":o": owner}),
            )
        ]
        return self._whole(ids, consistent=consistent)

    def _whole(self, provider_ids: Sequence[str], consistent: bool = False) -> list[Provider]:
        """The providers behind index entries, read whole, in the given order."""
        keys = [provider_key(pid) for pid in provider_ids]
        items = get_all(self._client, self._tables.registry, keys, consistent=consistent)
        found = {provider.provider_id: provider for provider in map(provider_from_item, items)}
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
            partitions = [(PROVIDERS_BY_JURISDICTION, "jurisdiction", query.jurisdiction)]
        elif query.energy_type is not None:
            partitions = [(PROVIDERS_BY_ENERGY_TYPE, "energy_type", str(query.energy_type))]
        else:
            partitions = [(PROVIDERS_BY_ENERGY_TYPE, "energy_type", str(t)) for t in EnergyType]
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
        for item in query_all(self._client, Limit=chunk, **request):
            entry = from_item(item)
            yield (
                entry["price_key"],
                ListingFacts(
                    energy_type=entry["energy_type"],
                    jurisdiction=entry["jurisdiction"],
                    price_micro_block_per_kwh=int(entry["price_key"].split("#", 1)[0]),
                    capacity_wh=as_int(entry["capacity_wh"]),
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
                    # For the analytics: a reading's energy counts under its type.
                    "energy_type": str(provider.energy_type),
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
        disputes, dispute_values = _disputes_as_read(provider)
        self._staged.update(
            self._tables.registry,
            provider_key(provider.provider_id),
            "ADD available_wh :minus, open_obligations :one, version :one",
            "available_wh >= :wh AND #status = :active AND price_micro_block_per_kwh = :price"
            f" AND {disputes}",
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
                | dispute_values
            ),
        )

    def settle_obligation(
        self, provider: Provider, earned_micro_block: int, wh: int, *, at_ms: int | None = None
    ) -> None:
        disputes, dispute_values = _disputes_as_read(provider)
        # sold_at_ms dates the change of sold_wh for the analytics' leaderboard.
        self._staged.update(
            self._tables.registry,
            provider_key(provider.provider_id),
            "ADD open_obligations :minus_one, settled_purchases :one,"
            " earned_micro_block :earned, sold_wh :wh"
            + (" SET sold_at_ms = :at" if at_ms is not None else ""),
            f"open_obligations >= :one AND {disputes}",
            lambda: ConcurrentUpdate(
                "the provider changed; retry", provider_id=provider.provider_id
            ),
            ExpressionAttributeValues=to_item(
                {
                    ":minus_one": -1,
                    ":one": 1,
                    ":earned": earned_micro_block,
                    ":wh": wh,
                    ":at": at_ms,
                }
                | dispute_values
            ),
        )

    def hold_for_dispute(self, provider: Provider, freeze: Freeze) -> None:
        self._set_freezes(provider, (*provider.freezes, freeze), obligations=1, upheld=0)

    def release_dispute(self, provider: Provider, dispute_id: str, *, upheld: bool) -> None:
        kept = tuple(f for f in provider.freezes if f.dispute_id != dispute_id)
        self._set_freezes(provider, kept, obligations=-1, upheld=int(upheld))

    def _set_freezes(
        self, provider: Provider, freezes: Sequence[Freeze], *, obligations: int, upheld: int
    ) -> None:
        disputes, dispute_values = _disputes_as_read(provider)
        # The version moves too: a stake withdrawal that read the provider
        # before this dispute opened must fail its version condition.
        self._staged.update(
            self._tables.registry,
            provider_key(provider.provider_id),
            "SET freezes = :freezes ADD disputes_version :one, version :one,"
            " open_obligations :obligations, upheld_disputes :upheld",
            disputes,
            lambda: ConcurrentUpdate(
                "the provider's disputes changed; retry", provider_id=provider.provider_id
            ),
            ExpressionAttributeValues=to_item(
                {
                    ":freezes": freezes_to_list(freezes),
                    ":one": 1,
                    ":obligations": obligations,
                    ":upheld": upheld,
                }
                | dispute_values
            ),
        )

    def slash(self, provider: Provider, micro_block: int) -> None:
        after = replace(provider, stake_micro_block=provider.stake_micro_block - micro_block)
        # The version moves, as for any change of stake: a withdrawal that read
        # the stake before the slash fails its condition.
        self._staged.update(
            self._tables.registry,
            provider_key(provider.provider_id),
            "SET stake_micro_block = :after, #status = :status ADD version :one",
            # The status is derived from the stake and the pause as read.
            "stake_micro_block = :before AND paused = :paused",
            lambda: ConcurrentUpdate(
                "the provider's stake changed; retry", provider_id=provider.provider_id
            ),
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues=to_item(
                {
                    ":after": after.stake_micro_block,
                    ":status": str(after.status),
                    ":one": 1,
                    ":before": provider.stake_micro_block,
                    ":paused": provider.paused,
                }
            ),
        )

    def revoke_energy(
        self,
        provider_id: str,
        available_wh: int,
        closed_obligations: int,
        *,
        sold_wh: int = 0,
        at_ms: int | None = None,
    ) -> None:
        self._staged.update(
            self._tables.registry,
            provider_key(provider_id),
            "ADD available_wh :minus_wh, open_obligations :minus_closed, sold_wh :minus_sold"
            + (" SET sold_at_ms = :at" if at_ms is not None else ""),
            "available_wh >= :wh AND open_obligations >= :closed AND sold_wh >= :sold",
            lambda: ConcurrentUpdate("the provider changed; retry", provider_id=provider_id),
            ExpressionAttributeValues=to_item(
                {
                    ":minus_wh": -available_wh,
                    ":wh": available_wh,
                    ":minus_closed": -closed_obligations,
                    ":closed": closed_obligations,
                    ":minus_sold": -sold_wh,
                    ":sold": sold_wh,
                    ":at": at_ms,
                }
            ),
        )

    def take_off_market(self, provider_id: str, wh: int) -> None:
        self._staged.update(
            self._tables.registry,
            provider_key(provider_id),
            "ADD available_wh :minus",
            "available_wh >= :wh",
            lambda: ConcurrentUpdate("the provider changed; retry", provider_id=provider_id),
            ExpressionAttributeValues=to_item({":minus": -wh, ":wh": wh}),
        )
