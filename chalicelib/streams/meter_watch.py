"""Meter events from the registry table's stream, for the fraud detectors.

A meter's last accepted reading (counter, time, reading hash) is kept on its
provider's registry item (``PROVIDER#<id>`` / ``PROVIDER``; a provider has one
meter), which moves with every accepted reading; a refused reading is recorded
under the meter's partition (``REJECTION#...``). DynamoDB streams the changes
of one partition key in order, so a meter's readings arrive in the order they
were accepted, which is what the detectors need (the credits table's stream
would not do: a meter's credits have keys of their own, spread over its
shards). Its refusals come in order among themselves, from another
partition; the one detector that reads them (bad signatures on the meter's
channel) works on their times, so the two need not interleave in order. A meter item's own reading changes (written before the last reading
moved to the provider's item) are still read. Everything else is skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from chalicelib.adapters.dynamodb.meters import meter_from_item, meter_image, rejection_from_item
from chalicelib.domain.fraud import MintedReading
from chalicelib.domain.readings import Rejection
from chalicelib.services.fraud_watch import MeterEvent


def events_from_records(records: Iterable[Mapping[str, Any]]) -> list[MeterEvent]:
    """The meter events in a batch of registry stream records, in stream order."""
    events = []
    for record in records:
        change = record.get("dynamodb") or {}
        new = change.get("NewImage") or {}
        sort_key = new.get("sk", {}).get("S", "")
        if sort_key == "METER" and record.get("eventName") == "MODIFY":
            event = _accepted_reading(change.get("OldImage") or {}, new)
        elif sort_key == "PROVIDER" and record.get("eventName") == "MODIFY":
            # Where an accepted reading is written now (its provider's item).
            event = _accepted_reading(meter_image(change.get("OldImage") or {}), meter_image(new))
        elif sort_key.startswith("REJECTION#") and record.get("eventName") == "INSERT":
            event = _bad_signature(new)
        else:
            event = None
        if event is not None:
            events.append(event)
    return events


def _accepted_reading(
    old_image: Mapping[str, Any], new_image: Mapping[str, Any]
) -> MeterEvent | None:
    before, after = meter_from_item(dict(old_image)), meter_from_item(dict(new_image))
    if (
        after.last_reading_hash is None
        or after.last_reading_hash == before.last_reading_hash
        or after.last_counter_wh is None
        or after.last_timestamp_ms is None
    ):
        return None  # a key rotation, a refusal counted: no reading
    end = after.last_timestamp_ms
    if before.last_counter_wh is None or before.last_timestamp_ms is None:
        # The meter's first reading: its baseline, which carries no energy.
        return MeterEvent(after.meter_address, end, MintedReading(end, end, 0), after.provider_id)
    wh = after.last_counter_wh - before.last_counter_wh
    return MeterEvent(
        after.meter_address,
        end,
        MintedReading(before.last_timestamp_ms, end, wh),
        after.provider_id,
    )


def _bad_signature(image: Mapping[str, Any]) -> MeterEvent | None:
    record = rejection_from_item(dict(image))
    if record.reason != Rejection.BAD_SIGNATURE:
        return None
    return MeterEvent(record.meter_address, record.at_ms)
