"""Meters: the address claim and key, the last accepted reading, and refused readings.

A provider has exactly one meter, and every accepted reading adds energy to
the provider's item anyway; so the meter's last accepted reading (counter,
time, hash, count) is kept on the *provider's* item, and an accepted reading
changes one registry item instead of two. The meter's own item keeps what
changes rarely: its key, whether it is active, refusal counts. A meter item
written before this layout may still carry a last reading of its own; it is
read until the provider's item has one (see ``_head``).
"""

from __future__ import annotations

import base64
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
from chalicelib.domain.credits import Credit, minted_credit
from chalicelib.domain.errors import (
    AlreadyExists,
    ConcurrentUpdate,
    NotFound,
)
from chalicelib.domain.providers import MIN_STAKE_MICRO_BLOCK, EnergyType, ReadingWindow
from chalicelib.domain.readings import MeterOwner, MeterState, Rejection, RejectionRecord
from chalicelib.services.ports import Page

if TYPE_CHECKING:
    from chalicelib.adapters.dynamodb.unit_of_work import Staged

# Refused readings are kept this long for their owner, then expire (TTL).
REJECTION_RETENTION_SECONDS: Final = 30 * 86_400


def meter_from_item(item: Item, provider_item: Item | None = None) -> MeterState:
    """The meter's state: its own item, with the last reading its provider's item keeps.

    Read from the low-level attributes directly: this runs for every reading,
    and deserialising the provider's whole item would cost more than the rest.
    """
    head = _head(item, provider_item)
    active = item.get("active")
    return MeterState(
        meter_address=item["meter_address"]["S"],
        provider_id=item["provider_id"]["S"],
        public_key=item["public_key"]["S"],
        active=True if active is None else bool(active["BOOL"]),
        last_counter_wh=_int(head, "last_counter_wh"),
        last_timestamp_ms=_int(head, "last_timestamp_ms"),
        last_reading_hash=head["last_reading_hash"]["S"] if "last_reading_hash" in head else None,
        accepted_readings=_int(head, "accepted_readings") or 0,
        rejections=tuple(
            sorted(
                (k.removeprefix("rejected_"), int(n["N"]))
                for k, n in item.items()
                if k.startswith("rejected_")
            )
        ),
    )


def meter_image(provider_image: Item) -> Item:
    """A provider item's stream image as the image of its meter's item would look.

    The stream consumers that follow readings (fraud watch, analytics, live
    events) read a meter's readings from the registry's stream; since the last
    reading moved to the provider's item they read it there, through this.
    An empty image (a record without one) stays empty.
    """
    if not provider_image:
        return {}
    image = {
        "pk": {"S": f"METER#{provider_image['meter_address']['S']}"},
        "sk": {"S": "METER"},
        "meter_address": provider_image["meter_address"],
        "provider_id": provider_image["provider_id"],
        "public_key": provider_image["meter_public_key"],
        "energy_type": provider_image["energy_type"],
    }
    return image | {k: provider_image[k] for k in HEAD_ATTRIBUTES if k in provider_image}


def credit_from_provider_image(
    new_image: Item, old_image: Item, credit_lifetime_ms: int
) -> Credit | None:
    """The credit of the reading a provider item's change accepted, as ingest
    minted it; None for a change that accepted no reading, or one written
    before the item kept its last reading's credit.

    ``advance`` writes the credit's attributes together, so an image that has
    one has them all (one without is a poison record, reported as such).
    """
    if not new_image or "last_signature" not in new_image:
        return None
    reading_hash = new_image["last_reading_hash"]["S"]
    previous = old_image.get("last_reading_hash") if old_image else None
    if previous is not None and previous["S"] == reading_hash:
        return None  # the same last reading: another change of the provider

    def number(name: str) -> int:
        value = _int(new_image, name)
        if value is None:
            raise KeyError(f"{name} is missing beside last_signature")
        return value

    return minted_credit(
        reading_hash=reading_hash,
        provider_id=new_image["provider_id"]["S"],
        meter_address=new_image["meter_address"]["S"],
        energy_type=EnergyType(new_image["energy_type"]["S"]),
        jurisdiction=new_image["jurisdiction"]["S"],
        interval_start_ms=number("last_interval_start_ms"),
        interval_end_ms=number("last_timestamp_ms"),
        wh=number("last_minted_wh"),
        counter_wh=number("last_counter_wh"),
        signature=base64.b64decode(new_image["last_signature"]["S"]).hex(),
        minted_at_ms=number("last_minted_at_ms"),
        credit_lifetime_ms=credit_lifetime_ms,
    )


# The attributes of a meter's last accepted reading (on the provider's item).
HEAD_ATTRIBUTES: Final = (
    "last_counter_wh",
    "last_timestamp_ms",
    "last_reading_hash",
    "accepted_readings",
)


# What ingest reads of a provider's item and, when it must, its meter's (one
# projection serves both). A meter's refusal counts are not read.
_INGEST_ATTRIBUTES: Final = (
    "pk",
    "sk",
    "meter_address",
    "provider_id",
    "public_key",
    "meter_public_key",
    "active",
    *HEAD_ATTRIBUTES,
    "energy_type",
    "jurisdiction",
    "capacity_wh",
    "stake_micro_block",
    "reading_slot_last",
    "reading_slot_bits",
)
INGEST_PROJECTION: Final = (
    ", ".join(f"#a{n}" for n in range(len(_INGEST_ATTRIBUTES))),
    {f"#a{n}": name for n, name in enumerate(_INGEST_ATTRIBUTES)},
)


def _owner(item: Item) -> MeterOwner:
    stake = int(item["stake_micro_block"]["N"])
    window = (
        ReadingWindow(int(item["reading_slot_last"]["N"]), int(item["reading_slot_bits"]["N"]))
        if "reading_slot_last" in item
        else ReadingWindow()
    )
    return MeterOwner(
        provider_id=item["provider_id"]["S"],
        energy_type=EnergyType(item["energy_type"]["S"]),
        jurisdiction=item["jurisdiction"]["S"],
        capacity_wh=int(item["capacity_wh"]["N"]),
        suspended=stake < MIN_STAKE_MICRO_BLOCK,
        reading_window=window,
    )


def _head(meter_item: Item, provider_item: Item | None) -> Item:
    if provider_item is not None and "last_reading_hash" in provider_item:
        return provider_item
    return meter_item  # no reading since the layout moved it: the meter's own, if any


def _int(item: Item, name: str) -> int | None:
    value = item.get(name)
    if value is None:
        return None
    text: str = value["N"]
    # Counters and times are whole and positive: int() reads those digits at
    # once; anything else takes the checked path (a fraction is refused).
    return int(text) if text.isdigit() else as_int(Decimal(text))


def _meter_of_provider(item: Item) -> MeterState:
    """The meter's state from its provider's item alone, which ingest reads once
    the meter has a last reading there (``get_with_provider``)."""
    return MeterState(
        meter_address=item["meter_address"]["S"],
        provider_id=item["provider_id"]["S"],
        public_key=item["meter_public_key"]["S"],
        last_counter_wh=_int(item, "last_counter_wh"),
        last_timestamp_ms=_int(item, "last_timestamp_ms"),
        last_reading_hash=item["last_reading_hash"]["S"],
        accepted_readings=_int(item, "accepted_readings") or 0,
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
        # Where each meter's last reading was read from (a legacy meter item, or
        # the provider's): advance's condition must test the value that was read.
        self._head_on_provider: dict[str, bool] = {}

    def get(self, meter_address: str) -> MeterState | None:
        found = self._client.get_item(
            TableName=self._tables.registry,
            Key=meter_key(meter_address),
            ReturnConsumedCapacity="TOTAL",
        )
        if "Item" not in found:
            return None
        provider = self._client.get_item(
            TableName=self._tables.registry,
            Key=provider_key(found["Item"]["provider_id"]["S"]),
            ProjectionExpression=", ".join(HEAD_ATTRIBUTES),
            ReturnConsumedCapacity="TOTAL",
        )
        return meter_from_item(found["Item"], provider.get("Item"))

    def get_with_provider(
        self, meter_address: str, provider_id: str
    ) -> tuple[MeterState | None, MeterOwner | None]:
        # Strongly consistent: a redelivery arriving within replication lag
        # must see the meter state its first delivery wrote, or it would be
        # judged a counter that went backwards. Projected to what ingest needs
        # (billed the same; botocore and the mapping have far less to parse).
        #
        # The provider's item holds all ingest needs of its meter (address, key,
        # last reading), so after a meter's first reading one read answers: one
        # GetItem, 1 RCU. The meter's own item is read as well only when the
        # provider's cannot answer alone: no last reading on it yet (a meter's
        # first, or one whose last reading is still on its own item, from before
        # the layout moved it), or a reading naming a provider whose meter it is
        # not (an unknown meter, or a provider mismatch). A meter is active
        # unless its own item says otherwise, and no method deactivates one
        # (docs/api.md, getMeter): one that does must mark the provider's item
        # too.
        provider = self._get(provider_key(provider_id))
        if (
            provider is not None
            and provider["meter_address"]["S"] == meter_address
            and "last_reading_hash" in provider
        ):
            self._head_on_provider[meter_address] = True
            return _meter_of_provider(provider), _owner(provider)
        meter = self._get(meter_key(meter_address))
        if meter is None:
            return None, None
        if provider is not None and provider["provider_id"] != meter["provider_id"]:
            provider = None  # a reading naming another provider: refused, not minted
        self._head_on_provider[meter_address] = (
            provider is not None and "last_reading_hash" in provider
        )
        return meter_from_item(meter, provider), _owner(provider) if provider else None

    def _get(self, key: Item) -> Item | None:
        expression, names = INGEST_PROJECTION
        found: Item | None = self._client.get_item(
            TableName=self._tables.registry,
            Key=key,
            ConsistentRead=True,
            ProjectionExpression=expression,
            ExpressionAttributeNames=names,
            ReturnConsumedCapacity="TOTAL",
        ).get("Item")
        return found

    def advance(self, before: MeterState, credit: Credit, *, reading_window: ReadingWindow) -> None:
        # One update of the provider's item: the meter's new last reading (only
        # if its last is still ``before``'s: that is what makes two readings
        # racing from one state mint once) with its credit's own fields (all
        # that is needed to write the credit again: restore_credits), the
        # minted Wh on sale, and uptime.
        on_provider = self._head_on_provider.get(before.meter_address, True)
        condition = (
            "last_reading_hash = :previous"
            if on_provider and before.last_reading_hash is not None
            else "attribute_not_exists(last_reading_hash)"
        )
        values: Item = {
            ":counter": {"N": str(credit.counter_wh)},
            ":at": {"N": str(credit.interval_end_ms)},
            ":hash": {"S": credit.credit_id},
            ":start": {"N": str(credit.interval_start_ms)},
            ":minted": {"N": str(credit.minted_at_ms)},
            # Base64: 88 characters where the credit's hex has 128, so that the
            # provider's item stays within the 1 KB a write unit buys. Text, not
            # binary: stream images carry binary as base64 that boto3's
            # deserializer, which the stream readers use, does not take.
            ":signature": {"S": base64.b64encode(bytes.fromhex(credit.signature)).decode()},
            ":one": {"N": "1"},
            ":wh": {"N": str(credit.wh)},
            ":meter": {"S": before.meter_address},
            ":last": {"N": str(reading_window.last)},
            ":bits": {"N": str(reading_window.bits)},
        }
        if on_provider and before.last_reading_hash is not None:
            values[":previous"] = {"S": before.last_reading_hash}
        self._staged.update(
            self._tables.registry,
            provider_key(before.provider_id),
            "SET last_counter_wh = :counter, last_timestamp_ms = :at, last_reading_hash = :hash,"
            " last_interval_start_ms = :start, last_minted_wh = :wh, last_minted_at_ms = :minted,"
            " last_signature = :signature,"
            " reading_slot_last = :last, reading_slot_bits = :bits"
            " ADD accepted_readings :one, available_wh :wh",
            f"meter_address = :meter AND {condition}",
            lambda: ConcurrentUpdate(
                "the meter moved on; retry", meter_address=before.meter_address
            ),
            ExpressionAttributeValues=values,
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
