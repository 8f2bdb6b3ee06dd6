"""The analytics' contributions in a batch of stream records (registry or ledger).

Each record is decoded with the item mappings of the table's own adapters, so
a stream image means exactly what the item means, and becomes the domain's
contributions (``chalicelib.domain.analytics``):

registry  PROVIDER       the market's state (status, capacity, price, on sale), the
                         seller's sales (``sold_wh``, dated ``sold_at_ms``), and an
                         accepted reading (the meter's last reading is kept on its
                         provider's item): energy by type, the meter's latest slot
          METER          the same for a meter item that still carries its reading
          REJECTION#...  a refused reading (or a duplicate delivery), by reason
ledger    PURCHASE       a trade when it opens; a sale when it settles; a revocation
          BALANCE        a buyer's latest purchase (``last_bought_ms``) moving
          BOUGHT         an account's settled energy by origin (settled, or revoked):
                         the market's carbon, bucketed by the record's time

Everything else is skipped. The batch's shard comes with the event
(``shardId``: Lambda sends it to functions with a tumbling window, which is
why the event sources have one); a record's sequence number orders it within
the shard.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from chalicelib.adapters.dynamodb.codec import as_int, from_item
from chalicelib.adapters.dynamodb.ledger import bought_from_item
from chalicelib.adapters.dynamodb.meters import meter_image, rejection_from_item
from chalicelib.adapters.dynamodb.providers import provider_from_item
from chalicelib.adapters.dynamodb.purchases import purchase_from_item
from chalicelib.domain import analytics
from chalicelib.domain.analytics import (
    AggregateKey,
    Buckets,
    Contribution,
    Delta,
    MeterFacts,
    ProviderFacts,
    TradeFacts,
)
from chalicelib.domain.trading import Purchase

# A purchase made before purchases kept their provider's type and place.
UNKNOWN = "unknown"


class MissingShard(ValueError):
    """The event names no shard: the event source lacks its tumbling window."""


def shard_of(event: Mapping[str, Any]) -> str:
    """The batch's shard, named across streams: a short digest of stream and shard ids.

    Shard ids are unique within a stream only, and the analytics read two.
    """
    shard = event.get("shardId")
    records = event.get("Records") or [{}]
    stream = event.get("eventSourceARN") or records[0].get("eventSourceARN")
    if not isinstance(shard, str) or not shard or not isinstance(stream, str):
        raise MissingShard(
            "the stream event has no shardId; give the event source a tumbling window"
            " (TumblingWindowInSeconds), as infra/template.yaml does"
        )
    return hashlib.sha256(f"{stream}\n{shard}".encode()).hexdigest()[:16]


def contributions(records: Iterable[Mapping[str, Any]], buckets: Buckets) -> list[Contribution]:
    """What a batch of registry or ledger stream records adds, in stream order."""
    found = []
    for record in records:
        change = record.get("dynamodb") or {}
        sequence = analytics.padded_sequence(str(change.get("SequenceNumber", "")))
        for key, delta in _record(record, change, buckets):
            found.append(Contribution(sequence, key, delta))
    return found


def _record(
    record: Mapping[str, Any], change: Mapping[str, Any], buckets: Buckets
) -> list[tuple[AggregateKey, Delta]]:
    old = change.get("OldImage") or {}
    new = change.get("NewImage") or {}
    sort_key = (new or old or change.get("Keys") or {}).get("sk", {}).get("S", "")
    if sort_key == "PROVIDER":
        image = new or old
        provider_id = str(image.get("provider_id", {}).get("S", ""))
        found = analytics.provider_change(provider_id, _provider(old), _provider(new))
        if new:
            # An accepted reading moves the meter's last reading on this item.
            found += analytics.meter_change(
                _meter(meter_image(old)), _meter_facts(meter_image(new)), buckets
            )
        return found
    if sort_key == "METER" and new:
        return analytics.meter_change(_meter(old), _meter_facts(new), buckets)
    if sort_key.startswith("REJECTION#") and record.get("eventName") == "INSERT":
        refused = rejection_from_item(dict(new))
        return analytics.refusal(str(refused.reason), refused.received_at_ms, buckets)
    if sort_key == "PURCHASE" and new:
        return analytics.purchase_change(
            _trade(old), _trade_facts(purchase_from_item(dict(new))), buckets
        )
    if sort_key == "BALANCE":
        return analytics.buyer_change(_bought_at(old), _bought_at(new), buckets)
    if sort_key == "BOUGHT":
        # Dated by the settlement or revocation that wrote it; an item from
        # before it carried the time, by the stream record's.
        stamped = (new or {}).get("last_at_ms", {}).get("N")
        at_ms = (
            int(stamped)
            if stamped is not None
            else int(change.get("ApproximateCreationDateTime", 0)) * 1000
        )
        return analytics.bought_change(
            bought_from_item(dict(old)).wh_by_origin if old else {},
            bought_from_item(dict(new)).wh_by_origin if new else {},
            at_ms,
            buckets,
        )
    return []


def _provider(image: Mapping[str, Any]) -> ProviderFacts | None:
    if not image:
        return None
    provider = provider_from_item(dict(image))
    sold_at = image.get("sold_at_ms", {}).get("N")
    return ProviderFacts(
        energy_type=str(provider.energy_type),
        status=str(provider.status),
        capacity_wh=provider.capacity_wh,
        price_micro_block_per_kwh=provider.price_micro_block_per_kwh,
        on_sale_wh=provider.on_sale_wh,
        sold_wh=provider.sold_wh,
        sold_at_ms=int(sold_at) if sold_at is not None else None,
    )


def _meter(image: Mapping[str, Any]) -> MeterFacts | None:
    return _meter_facts(image) if image else None


def _meter_facts(image: Mapping[str, Any]) -> MeterFacts:
    v = from_item(dict(image))
    return MeterFacts(
        energy_type=v.get("energy_type", UNKNOWN),
        counter_wh=as_int(v["last_counter_wh"]) if "last_counter_wh" in v else None,
        timestamp_ms=as_int(v["last_timestamp_ms"]) if "last_timestamp_ms" in v else None,
        reading_hash=v.get("last_reading_hash"),
    )


def _trade(image: Mapping[str, Any]) -> TradeFacts | None:
    return _trade_facts(purchase_from_item(dict(image))) if image else None


def _trade_facts(purchase: Purchase) -> TradeFacts:
    return TradeFacts(
        purchase_id=purchase.purchase_id,
        provider_id=purchase.provider_id,
        energy_type=purchase.energy_type or UNKNOWN,
        jurisdiction=purchase.jurisdiction or UNKNOWN,
        wh=purchase.wh,
        micro_block=purchase.escrow_micro_block,
        price_micro_block_per_kwh=purchase.price_micro_block_per_kwh,
        status=str(purchase.status),
        created_at_ms=purchase.created_at_ms,
        closed_at_ms=purchase.closed_at_ms,
    )


def _bought_at(image: Mapping[str, Any]) -> int | None:
    value = image.get("last_bought_ms", {}).get("N")
    return int(value) if value is not None else None
