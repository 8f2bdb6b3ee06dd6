"""The floor of an accepted reading's CPU in CPython: the same work as one function.

``bench/ingest.py`` (section 6) times this against the use case. It does what
the accepted path cannot avoid whatever its design, for the one case the
benchmark ingests (a meter whose last reading is on its provider's item, a
reading in order that passes every rule): decode the payload, check its fields
and convert its numbers exactly, build the signed message and its hash, read
the provider's item, verify the signature, apply the rules, send the same two
conditional writes and write the same metric line. No unit of work, no
repository, no domain value; every other case raises ``NotFloorCase``.

It is a measuring stick, not a second implementation: the benchmark first
checks that it sends exactly the requests the use case sends for the same
reading, so it cannot drift from what it claims to measure.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from decimal import Decimal
from typing import Any, Final

from chalicelib.adapters.dynamodb.layout import EXPIRY_SHARDS, Tables
from chalicelib.domain import signing
from chalicelib.domain.providers import (
    MIN_STAKE_MICRO_BLOCK,
    UPTIME_SLOT_SECONDS,
    UPTIME_WINDOW_SLOTS,
)
from chalicelib.domain.readings import (
    PAYLOAD_FIELDS,
    PLAUSIBILITY_SLACK_WH,
    PLAUSIBILITY_TOLERANCE_PERCENT,
    READING_DOMAIN,
)
from chalicelib.observability import emit_metrics

_DOMAIN: Final = READING_DOMAIN.decode()
_PROVIDER_ID: Final = re.compile(r"^energy-0x[0-9a-f]{16}$")
_SIGNATURE: Final = re.compile(r"(0x)?[0-9a-fA-F]{128}")
_JSON: Final = json.JSONDecoder(parse_float=Decimal)
_WINDOW_MASK: Final = (1 << UPTIME_WINDOW_SLOTS) - 1


class NotFloorCase(Exception):
    """A reading outside the one case the floor covers."""


def _thousandths(value: Any) -> int:
    scaled = value * 1000
    if type(value) is not int and scaled != scaled.to_integral_value():
        raise NotFloorCase("more than 3 decimals")
    return int(scaled)


def record_accepted(
    client: Any,
    tables: Tables,
    payload: bytes,
    *,
    topic_meter_address: str,
    now_ms: int,
    max_clock_skew_ms: int,
    max_age_ms: int,
    credit_lifetime_ms: int,
) -> str:
    """Mint the reading in ``payload``; return its hash."""
    document = _JSON.decode(payload.decode())
    if type(document) is not dict or not PAYLOAD_FIELDS.issuperset(document):
        raise NotFloorCase("not a reading")
    provider_id = document["provider_id"]
    meter_address = document["meter_address"]
    signature = document["signature"]
    if not (
        type(provider_id) is str
        and type(meter_address) is str
        and type(signature) is str
        and _PROVIDER_ID.match(provider_id)
        and _SIGNATURE.fullmatch(signature)
        and meter_address == topic_meter_address
        and meter_address.isascii()
    ):
        raise NotFloorCase("a field is not as the protocol says")
    counter_wh = _thousandths(document["kwh_reading"])
    timestamp_ms = _thousandths(document["timestamp"])
    signature = signature[2:].lower() if signature[:2] in ("0x", "0X") else signature.lower()
    message = f"{_DOMAIN}\n{provider_id}\n{meter_address}\n{counter_wh}\n{timestamp_ms}".encode()
    reading_hash = hashlib.sha256(message).hexdigest()

    key = {"pk": {"S": f"PROVIDER#{provider_id}"}, "sk": {"S": "PROVIDER"}}
    item = client.get_item(
        TableName=tables.registry,
        Key=key,
        ConsistentRead=True,
        ReturnConsumedCapacity="TOTAL",
    ).get("Item")
    if item is None or item["meter_address"]["S"] != meter_address:
        raise NotFloorCase("not this provider's meter")
    if "last_reading_hash" not in item:
        raise NotFloorCase("a meter's first reading")
    if not signing.verify(item["meter_public_key"]["S"], message, signature):
        raise NotFloorCase("bad signature")
    last_hash = item["last_reading_hash"]["S"]
    last_counter_wh = int(item["last_counter_wh"]["N"])
    last_timestamp_ms = int(item["last_timestamp_ms"]["N"])
    if reading_hash == last_hash:
        raise NotFloorCase("a duplicate")
    elapsed_ms = timestamp_ms - last_timestamp_ms
    wh = counter_wh - last_counter_wh
    capacity_wh = int(item["capacity_wh"]["N"])
    if (
        item.get("active", {"BOOL": True})["BOOL"] is not True
        or int(item["stake_micro_block"]["N"]) < MIN_STAKE_MICRO_BLOCK
        or wh <= 0
        or elapsed_ms <= 0
        or timestamp_ms > now_ms + max_clock_skew_ms
        or timestamp_ms < now_ms - max_age_ms
        or wh
        > capacity_wh * elapsed_ms * (100 + PLAUSIBILITY_TOLERANCE_PERCENT) // (3_600_000 * 100)
        + PLAUSIBILITY_SLACK_WH
    ):
        raise NotFloorCase("a rule refuses it")
    slot = timestamp_ms // 1000 // UPTIME_SLOT_SECONDS
    slot_last = int(item["reading_slot_last"]["N"])
    if slot < slot_last:
        raise NotFloorCase("a reading out of order")
    slot_bits = (int(item["reading_slot_bits"]["N"]) << (slot - slot_last) | 1) & _WINDOW_MASK

    client.update_item(
        TableName=tables.registry,
        Key=key,
        UpdateExpression=(
            "SET last_counter_wh = :counter, last_timestamp_ms = :at, last_reading_hash = :hash,"
            " last_interval_start_ms = :start, last_minted_wh = :wh, last_minted_at_ms = :minted,"
            " last_signature = :signature,"
            " reading_slot_last = :last, reading_slot_bits = :bits"
            " ADD accepted_readings :one, available_wh :wh"
        ),
        ConditionExpression="meter_address = :meter AND last_reading_hash = :previous",
        ExpressionAttributeValues={
            ":counter": {"N": str(counter_wh)},
            ":at": {"N": str(timestamp_ms)},
            ":hash": {"S": reading_hash},
            ":start": {"N": str(last_timestamp_ms)},
            ":minted": {"N": str(now_ms)},
            ":signature": {"S": base64.b64encode(bytes.fromhex(signature)).decode()},
            ":one": {"N": "1"},
            ":wh": {"N": str(wh)},
            ":meter": {"S": meter_address},
            ":last": {"N": str(slot)},
            ":bits": {"N": str(slot_bits)},
            ":previous": {"S": last_hash},
        },
        ReturnConsumedCapacity="TOTAL",
    )
    expires_at_ms = now_ms + credit_lifetime_ms
    client.put_item(
        TableName=tables.credits,
        Item={
            "pk": {"S": f"CREDIT#{reading_hash}"},
            "sk": {"S": "CREDIT"},
            "credit_id": {"S": reading_hash},
            "meter_address": {"S": meter_address},
            "energy_type": item["energy_type"],
            "jurisdiction": item["jurisdiction"],
            "interval_start_ms": {"N": str(last_timestamp_ms)},
            "interval_end_ms": {"N": str(timestamp_ms)},
            "wh": {"N": str(wh)},
            "counter_wh": {"N": str(counter_wh)},
            "signature": {"S": signature},
            "minted_at_ms": {"N": str(now_ms)},
            "expires_at_ms": {"N": str(expires_at_ms)},
            "state": {"S": "available"},
            "issuer_provider_id": {"S": provider_id},
            "minted_key": {"S": f"{timestamp_ms:015d}#{reading_hash}"},
            "available_provider_id": {"S": provider_id},
            "expiry_slot": {
                "S": f"H{expires_at_ms // 3_600_000}#{int(reading_hash[:8], 16) % EXPIRY_SHARDS:02d}"
            },
            "expiry_key": {"S": f"{expires_at_ms:015d}#{reading_hash}"},
        },
        ConditionExpression="attribute_not_exists(pk)",
        ReturnConsumedCapacity="TOTAL",
    )
    emit_metrics(
        {"ReadingsAccepted": 1},
        dimensions={},
        dimension_sets=[[]],
        properties={"meter_address": meter_address},
    )
    return reading_hash
