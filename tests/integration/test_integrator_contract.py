"""What an integrator reads in the docs holds: a reading is exactly its five signed
fields over MQTT and over the API alike; the treasury is readable (energy.getTreasury); the original
client's getCarbonOffset() without an argument works."""

from __future__ import annotations

import json

import pytest

from chalicelib.services.ingest import Status, record_payload
from energy_client.rpc_client import RpcError
from tests.support import NOW, MarketHarness, buy, metered_provider, selling_provider, with_settings

T0 = NOW * 1000 - 3_600_000


def test_an_unknown_field_in_a_meter_payload_is_malformed(market: MarketHarness) -> None:
    meter = metered_provider(market)
    payload = json.dumps(meter.reading(1_000_000, T0, firmware="2.1"), default=str).encode()
    outcome = record_payload(
        market.deps, payload, topic_meter_address=meter.meter_address, received_at_ms=NOW * 1000
    )
    assert (outcome.status, outcome.reason) == (Status.REJECTED, "malformed")
    assert outcome.detail == "unknown field firmware"
    state = market.client.call("energy.getMeter", {"meter_address": meter.meter_address})
    assert state["accepted_readings"] == 0


def test_an_unknown_field_in_submit_reading_params_is_invalid_params(
    market: MarketHarness,
) -> None:
    meter = metered_provider(market)
    before = market.snapshot()
    with pytest.raises(RpcError) as refused:
        market.client.call("energy.submitReading", meter.reading(1_000_000, T0, firmware="2.1"))
    assert refused.value.code == -32602
    assert [e["field"] for e in refused.value.data["errors"]] == ["firmware"]
    assert market.snapshot() == before


def test_the_treasury_is_readable(market: MarketHarness) -> None:
    market = with_settings(market, market_fee_bps=250)
    assert market.client.call("energy.getTreasury") == {
        "treasury_micro_block": 0,
        "treasury_block": 0,
    }
    meter = selling_provider(market, [5_000])
    bob = market.funded_account("bob.theblock", block=100)
    purchase = buy(market, bob, meter.provider_id, "2")
    market.client.call("energy.settle", {"transaction_id": purchase["transaction_id"]}, bob)
    treasury = market.client.call("energy.getTreasury")
    assert treasury["treasury_micro_block"] == market.audit().treasury > 0
    assert treasury["treasury_block"] * 1_000_000 == treasury["treasury_micro_block"]


@pytest.mark.parametrize("params", [None, {}, []])
def test_get_carbon_offset_without_params_is_the_whole_market(
    market: MarketHarness, params: object
) -> None:
    request: dict[str, object] = {"jsonrpc": "2.0", "id": 1, "method": "energy.getCarbonOffset"}
    if params is not None:
        request["params"] = params
    answer = market.client.send(request)
    assert answer["result"]["scope"] == "market", answer
