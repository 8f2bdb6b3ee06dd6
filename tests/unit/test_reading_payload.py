"""A meter payload parses into exactly one Reading, or is refused as malformed."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from decimal import Decimal

import pytest

from chalicelib.domain import readings
from chalicelib.domain.readings import ReadingRejected, Rejection, parse_payload
from chalicelib.services.ingest import Status, record_payload
from tests.support import NOW, memory_market, metered_provider

PAYLOAD = {
    "provider_id": "energy-0x0123456789abcdef",
    "meter_address": "solar_meter_001",
    "kwh_reading": Decimal("1500.123"),
    "timestamp": Decimal("1767226500.25"),
    "signature": "0x" + "AB" * 64,
}


def test_a_reading_carries_the_message_and_hash_of_its_own_fields() -> None:
    reading = parse_payload(dict(PAYLOAD))
    message = readings.reading_message(
        "energy-0x0123456789abcdef", "solar_meter_001", 1_500_123, 1_767_226_500_250
    )
    assert (reading.message, reading.reading_hash) == (
        message,
        hashlib.sha256(message).hexdigest(),
    )
    assert reading.signature == "ab" * 64
    # Derived, never stale: a changed copy has its own message and hash.
    moved = replace(reading, counter_wh=1_500_124)
    assert moved.message.endswith(b"\n1500124\n1767226500250")
    assert moved.reading_hash == hashlib.sha256(moved.message).hexdigest()
    assert moved.reading_hash != reading.reading_hash


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        ({"extra": 1}, "unknown field extra"),
        ({"zeta": 1, "alpha": 2}, "unknown field alpha"),  # the first, sorted
        ({"meter_address": 7}, "provider_id, meter_address and signature are strings"),
        ({"signature": None}, "provider_id, meter_address and signature are strings"),
        ({"provider_id": "energy-0xABC"}, "provider_id is not a provider id"),
        ({"signature": "ab" * 63}, "signature is not 64 bytes of hex"),
        ({"kwh_reading": True}, "kwh_reading must be a number"),
        ({"kwh_reading": -1}, "kwh_reading must not be negative"),
        ({"kwh_reading": 10**10}, "kwh_reading is too large"),
        ({"kwh_reading": Decimal("0.0001")}, "kwh_reading has more precision than one Wh"),
        ({"timestamp": [1]}, "timestamp must be a number of seconds"),
        ({"timestamp": Decimal("NaN")}, "timestamp must be finite"),
        ({"timestamp": 10**12}, "timestamp is too large"),
    ],
)
def test_each_malformed_field_is_refused_with_its_detail(
    change: dict[str, object], detail: str
) -> None:
    with pytest.raises(ReadingRejected) as refused:
        parse_payload(PAYLOAD | change)
    assert (refused.value.reason, refused.value.detail) == (Rejection.MALFORMED, detail)


def test_a_missing_field_is_named() -> None:
    incomplete = {k: v for k, v in PAYLOAD.items() if k != "timestamp"}
    with pytest.raises(ReadingRejected, match="missing field timestamp"):
        parse_payload(incomplete)


def test_a_meter_address_json_spells_as_a_lone_surrogate_is_refused_not_a_crash() -> None:
    # Given a meter publishing on its own topic a payload whose meter_address is
    # the JSON escape of half a UTF-16 pair: valid JSON, but no UTF-8 text
    market = memory_market()
    meter = metered_provider(market)
    payload = json.dumps(meter.reading(1_000, NOW * 1000, meter_address="\ud800"), default=str)
    # When it is ingested
    outcome = record_payload(
        market.deps,
        payload.encode(),
        topic_meter_address=meter.meter_address,
        received_at_ms=NOW * 1000,
    )
    # Then it is a recorded refusal, as for any malformed payload, and mints nothing
    assert (outcome.status, outcome.reason, outcome.detail) == (
        Status.REJECTED,
        Rejection.MALFORMED,
        "meter_address is not valid Unicode text",
    )
    log = market.client.call("energy.getRejections", {"meter_address": meter.meter_address})
    assert [r["reason"] for r in log["rejections"]] == ["malformed"]
    state = market.client.call("energy.getMeter", {"meter_address": meter.meter_address})
    assert state["accepted_readings"] == 0


def test_a_non_ascii_meter_address_still_parses() -> None:
    # Not a registered address (those are ASCII), but text: refused later, as unknown.
    reading = parse_payload(PAYLOAD | {"meter_address": "z\u00e4hler"})
    assert b"\nz\xc3\xa4hler\n" in reading.message
