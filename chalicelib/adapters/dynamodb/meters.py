"""Meters: the address claim, key and last reading, and refused readings."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

from chalicelib.adapters.dynamodb.codec import Item, as_int, from_item, to_item
from chalicelib.adapters.dynamodb.layout import (
    Tables,
    decode_rejection_cursor,
    encode_cursor,
    meter_key,
    provider_key,
    rejection_key,
    rejection_sort_key,
)
from chalicelib.adapters.dynamodb.paging import get_all
from chalicelib.adapters.dynamodb.providers import provider_from_item
from chalicelib.domain.errors import (
    AlreadyExists,
    ConcurrentUpdate,
    NotFound,
)
from chalicelib.domain.providers import Provider
from chalicelib.domain.readings import MeterState, Rejection, RejectionRecord
from chalicelib.services.ports import Page

if TYPE_CHECKING:
    from chalicelib.adapters.dynamodb.unit_of_work import Staged

# Refused readings are kept this long for their owner, then expire (TTL).
REJECTION_RETENTION_SECONDS: Final = 30 * 86_400


def meter_from_item(item: Item) -> MeterState:
    v = from_item(item)
    optional = {k: as_int(v[k]) for k in ("last_counter_wh", "last_timestamp_ms") if k in v}
    return MeterState(
        meter_address=v["meter_address"],
        provider_id=v["provider_id"],
        public_key=v["public_key"],
        active=bool(v.get("active", True)),
        last_counter_wh=optional.get("last_counter_wh"),
        last_timestamp_ms=optional.get("last_timestamp_ms"),
        last_reading_hash=v.get("last_reading_hash"),
        accepted_readings=as_int(v.get("accepted_readings", Decimal(0))),
        rejections=tuple(
            sorted(
                (k.removeprefix("rejected_"), as_int(n))
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
        at_ms=as_int(v["at_ms"]),
        received_at_ms=as_int(v["received_at_ms"]),
        payload_hash=v["payload_hash"],
        reading_hash=v.get("reading_hash"),
    )


class DynamoMeters:
    def __init__(self, client: Any, tables: Tables, staged: Staged) -> None:
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
        # Strongly consistent: a redelivery arriving within replication lag
        # must see the meter state its first delivery wrote, or it would be
        # judged a counter that went backwards.
        found = get_all(self._client, self._tables.registry, keys, consistent=True)
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
        item = rejection_key(record) | to_item(
            {
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
