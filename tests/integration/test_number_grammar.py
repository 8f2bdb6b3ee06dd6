"""Numbers sent as strings follow one grammar on the API and in meter payloads.

docs/api.md ("Units") and docs/meter-protocol.md ("Payload") define it: an
optional '-', ASCII digits without leading zeros, optionally '.' and digits.
Each looser form below is something Python's Decimal() reads, and the value
it reads is the right one, so only the grammar can refuse it.
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from chalicelib.services.ingest import Status, record_payload
from energy_client.rpc_client import RpcError
from tests.support import BLOCK, NOW, MarketHarness, metered_provider

T0 = NOW * 1000 - 3_600_000

# Each spells 1000 (or is a string Decimal() takes), none is in the grammar.
LOOSE_FORMS = [
    "1e3",
    "1E3",
    "1000e0",
    " 1000",
    "1000 ",
    "1000\n",
    "+1000",
    "1000.",
    "01000",
    "1_000",
    "\u0661\u0660\u0660\u0660",  # Arabic-Indic digits
    "\uff11\uff10\uff10\uff10",  # full-width digits
    "NaN",
    "Infinity",
    "-Infinity",
    "sNaN",
    ".5",
]


@pytest.mark.parametrize("loose", LOOSE_FORMS)
def test_a_meter_payload_with_a_loose_number_string_is_malformed(
    market: MarketHarness, loose: str
) -> None:
    meter = metered_provider(market)
    # The signature covers 1,000,000 Wh, which every spelling above but the last
    # three means: the payload is refused for its spelling, not its value.
    payload = json.dumps(meter.reading(1_000_000, T0, kwh_reading=loose), default=str).encode()
    outcome = record_payload(
        market.deps, payload, topic_meter_address=meter.meter_address, received_at_ms=NOW * 1000
    )
    assert (outcome.status, outcome.reason) == (Status.REJECTED, "malformed")
    assert "decimal number" in outcome.detail
    state = market.client.call("energy.getMeter", {"meter_address": meter.meter_address})
    assert state["accepted_readings"] == 0


@pytest.mark.parametrize("loose", ["1767222000e0", "+1767222000", " 1767222000", "1767222000."])
def test_a_meter_timestamp_with_a_loose_number_string_is_malformed(
    market: MarketHarness, loose: str
) -> None:
    meter = metered_provider(market)
    payload = json.dumps(meter.reading(1_000_000, T0, timestamp=loose), default=str).encode()
    outcome = record_payload(
        market.deps, payload, topic_meter_address=meter.meter_address, received_at_ms=NOW * 1000
    )
    assert (outcome.status, outcome.reason) == (Status.REJECTED, "malformed")


def test_grammatical_strings_are_read_exactly_in_a_meter_payload(market: MarketHarness) -> None:
    meter = metered_provider(market)
    payload = json.dumps(
        meter.reading(1_000_500, T0, kwh_reading="1000.500", timestamp=str(T0 // 1000))
    ).encode()
    outcome = record_payload(
        market.deps, payload, topic_meter_address=meter.meter_address, received_at_ms=NOW * 1000
    )
    assert outcome.status == Status.ACCEPTED, outcome


@pytest.mark.parametrize("loose", LOOSE_FORMS)
def test_api_params_with_a_loose_number_string_are_invalid_params(
    market: MarketHarness, loose: str
) -> None:
    meter = metered_provider(market)
    before = market.snapshot()
    # An unsigned call (a filter), the reading path, and a signed call that moves money.
    with pytest.raises(RpcError) as listing:
        market.client.call("energy.listProviders", {"max_price": loose})
    with pytest.raises(RpcError) as reading:
        market.client.call("energy.submitReading", meter.reading(1_000_000, T0, kwh_reading=loose))
    assert meter.owner is not None
    with pytest.raises(RpcError) as withdrawal:
        market.client.call(
            "energy.withdraw",
            {"amount_micro_block": loose, "destination": "0xchain-address"},
            meter.owner,
        )
    for refused, field in (
        (listing, "max_price"),
        (reading, "kwh_reading"),
        (withdrawal, "amount_micro_block"),
    ):
        assert refused.value.code == -32602
        [error] = refused.value.data["errors"]
        assert error["field"] == field and "decimal number" in error["message"]
    assert market.snapshot() == before


def test_grammatical_strings_are_read_exactly_in_api_params(market: MarketHarness) -> None:
    meter = metered_provider(market, latitude="-0.5", longitude="0")
    assert meter.owner is not None
    answer = market.client.call(
        "energy.withdraw",
        {"amount_micro_block": str(5 * BLOCK), "destination": "0xchain-address"},
        meter.owner,
    )
    assert answer["balance"] == (20_000 - 10_000 - 5) * BLOCK
    provider = market.client.call("energy.getProvider", {"provider_id": meter.provider_id})
    assert Decimal(str(provider["latitude"])) == Decimal("-0.5")
