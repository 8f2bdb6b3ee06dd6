"""After the purchase: offers, expiry, portfolio, carbon and retirement."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from chalicelib.services.expiry import run_expiry
from energy_client.rpc_client import RpcError, Signer
from tests.support import (
    BLOCK,
    MarketHarness,
    SimulatedMeter,
    assert_conserved,
    buy,
    selling_provider,
)

DAY = 86_400
YEAR_2026 = {
    "reporting_period_start_ms": 1_767_225_600_000,
    "reporting_period_end_ms": 1_798_761_600_000,
}


def _settled(
    market: MarketHarness, kwh: Any = "3", credits: list[int] | None = None
) -> tuple[Signer, SimulatedMeter, dict[str, Any]]:
    meter = selling_provider(market, credits or [2_500, 2_500, 2_500])
    bob = market.funded_account("bob.theblock", block=100)
    purchase = buy(market, bob, meter.provider_id, kwh)
    market.client.call("energy.settle", {"transaction_id": purchase["transaction_id"]}, bob)
    return bob, meter, purchase


# -- offers ---------------------------------------------------------------------------


def test_offers_list_energy_on_sale_cheapest_first_with_filters(market: MarketHarness) -> None:
    cheap = selling_provider(market, [3_000], owner="cheap.theblock", price_per_kwh="0.05")
    dear = selling_provider(
        market, [1_000, 1_000], owner="dear.theblock", price_per_kwh="0.12", energy_type="wind"
    )
    selling_provider(market, [], owner="empty.theblock", price_per_kwh="0.01")

    offers = market.client.call("energy.getOffers", {})["offers"]
    assert [o["provider_id"] for o in offers] == [cheap.provider_id, dear.provider_id]
    first = offers[0]
    assert (first["available_wh"], first["available_kwh"]) == (3_000, Decimal(3))
    assert first["price_per_kwh"] == Decimal("0.05")
    assert first["oldest_credit_age_seconds"] >= 0
    assert first["oldest_credit_minted_at_ms"] <= market.clock.now * 1000

    def ids(**filters: Any) -> list[str]:
        return [o["provider_id"] for o in market.client.call("energy.getOffers", filters)["offers"]]

    assert ids(energy_type="wind") == [dear.provider_id]
    assert ids(max_price="0.10") == [cheap.provider_id]
    assert ids(min_kwh="2.5") == [cheap.provider_id]
    assert ids(jurisdiction="DE") == []
    # A purchase takes energy off the offer; the oldest credit's age follows it.
    bob = market.funded_account("bob.theblock", block=100)
    buy(market, bob, cheap.provider_id, "3")
    assert ids() == [dear.provider_id]


def test_offers_page_with_a_cursor(market: MarketHarness) -> None:
    sellers = [
        selling_provider(market, [1_000], owner=f"seller{n}.theblock", price_per_kwh=f"0.0{n}")
        for n in range(1, 6)
    ]
    seen: list[str] = []
    cursor = None
    while True:
        page = market.client.call(
            "energy.getOffers", {"limit": 2} | ({"cursor": cursor} if cursor else {})
        )
        seen.extend(o["provider_id"] for o in page["offers"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [s.provider_id for s in sellers]


# -- expiry ---------------------------------------------------------------------------


def test_unsold_credits_expire_and_leave_the_market(market: MarketHarness) -> None:
    meter = selling_provider(market, [1_000, 2_000, 3_000])
    bob = market.funded_account("bob.theblock", block=100)
    purchase = buy(market, bob, meter.provider_id, "1.5")  # 1,000 whole + 500 split off
    assert run_expiry(market.deps).done == 0  # nothing has expired yet

    lifetime_s = market.deps.settings.credit_lifetime_ms // 1000
    market.clock.now += lifetime_s + 3_600
    run = run_expiry(market.deps)
    assert (run.done, run.wh, run.failed) == (2, 4_500, 0)  # 1,500 left of one, and 3,000
    provider = market.client.call("energy.getProvider", {"provider_id": meter.provider_id})
    assert provider["available_wh"] == 0
    assert market.client.call("energy.getOffers", {})["offers"] == []
    # Reserved energy is not expired: the purchase still settles with it.
    settled = market.client.call(
        "energy.settle", {"transaction_id": purchase["transaction_id"]}, bob
    )
    assert settled["receipt"]["wh"] == 1_500
    totals = assert_conserved(market)
    assert (totals.expired_wh, totals.held_wh) == (4_500, 1_500)
    # Safe to run again: nothing left, nothing changes.
    assert run_expiry(market.deps).done == 0
    assert market.audit() == totals
    with pytest.raises(RpcError) as refused:
        buy(market, bob, meter.provider_id, "1")
    assert refused.value.reason == "insufficient_energy"


# -- portfolio and carbon ---------------------------------------------------------------


def test_a_portfolio_shows_the_whole_position(market: MarketHarness) -> None:
    bob, meter, settled = _settled(market, "2", [1_000] * 6)
    open_purchase = buy(market, bob, meter.provider_id, "1", idempotency_key="bob-open-0001")

    mine = market.client.call("energy.getPortfolio", {"account": "bob.theblock"})
    assert mine["balance"] == 100 * BLOCK - 160_000 - 80_000
    assert mine["escrow"] == 80_000
    assert [p["transaction_id"] for p in mine["open_purchases"]] == [
        open_purchase["transaction_id"]
    ]
    assert [p["transaction_id"] for p in mine["purchase_history"]] == [settled["transaction_id"]]
    assert {c["credit_id"] for c in mine["holdings"]} == set(settled["credit_ids"])
    holding = mine["holdings"][0]
    assert holding["holder"] == "bob.theblock" and holding["signature"]
    assert holding["reading_hash"] == holding["credit_id"]  # whole credits: their own reading
    assert mine["carbon_offset"]["bought_wh"] == {"solar": 2_000}
    # 2 kWh from US_CA: the US grid's 383 g/kWh less solar's life-cycle 48 g (docs/carbon.md)
    assert mine["carbon_offset"]["total_kg_co2"] == Decimal("0.67")
    assert mine["stake"] == 0 and mine["earnings"] == 0

    seller = market.client.call("energy.getPortfolio", {"account": meter.owner.account})  # type: ignore[union-attr]
    assert seller["earnings"] == 160_000 and seller["sold_wh"] == 2_000
    assert seller["stake"] == 10_000 * BLOCK
    assert seller["providers"] == [meter.provider_id]

    carbon = market.client.call("energy.getCarbonOffset", {"account": "bob.theblock"})
    assert (carbon["total_kg_co2"], carbon["equivalent_trees"]) == (Decimal("0.67"), 0)
    with pytest.raises(RpcError) as refused:
        market.client.call("energy.getPortfolio", {"account": "nobody.theblock"})
    assert refused.value.code == 2001


# -- retirement -----------------------------------------------------------------------


def test_retiring_held_credits_gives_certificates_once(market: MarketHarness) -> None:
    bob, meter, purchase = _settled(market)
    params = {"credit_ids": purchase["credit_ids"], "beneficiary": "Bob's Bakery Ltd"} | YEAR_2026
    certificates = market.client.call("energy.retireCredits", params, bob)["certificates"]

    assert len(certificates) == 2
    first = certificates[0]
    assert first["certificate_id"] == "gc-" + first["credit_id"]
    assert first["energy_wh"] == 2_500
    assert first["device_id"] == meter.meter_address
    assert first["device_capacity_wh"] == 10_000_000
    assert first["technology"] == "solar" and first["jurisdiction"] == "US_CA"
    assert first["production_end_ms"] - first["production_start_ms"] <= 3_600_000
    assert first["beneficiary"] == "Bob's Bakery Ltd" and first["retired_by"] == "bob.theblock"
    assert first["reading_hash"] == first["credit_id"]
    assert certificates[1]["energy_wh"] == 500  # split off a credit: its parent's reading
    assert certificates[1]["reading_hash"] != certificates[1]["credit_id"]
    assert (
        market.client.call("energy.getCertificate", {"certificate_id": first["certificate_id"]})
        == first
    )
    totals = assert_conserved(market)
    assert (totals.retired_wh, totals.held_wh) == (3_000, 0)

    # Never again, and never sold: nothing changes.
    before = market.snapshot()
    with pytest.raises(RpcError) as refused:
        market.client.call("energy.retireCredits", params, bob)
    assert refused.value.reason == "invalid_state"
    assert market.snapshot() == before
    holdings = market.client.call("energy.getPortfolio", {"account": "bob.theblock"})["holdings"]
    assert holdings == []


def test_only_held_credits_can_be_retired(market: MarketHarness) -> None:
    meter = selling_provider(market, [1_000, 1_000])
    bob = market.funded_account("bob.theblock", block=100)
    purchase = buy(market, bob, meter.provider_id, "1")  # reserved, not yet settled
    on_sale = [
        c["credit_id"]
        for c in market.client.call("energy.getCredits", {"provider_id": meter.provider_id})[
            "credits"
        ]
        if c["state"] == "available"
    ]
    for credit_ids, reason in [
        (purchase["credit_ids"], "invalid_state"),  # reserved
        (on_sale, "invalid_state"),  # still on sale
        (["ab" * 32], "not_found"),
    ]:
        before = market.snapshot()
        with pytest.raises(RpcError) as refused:
            market.client.call(
                "energy.retireCredits",
                {"credit_ids": credit_ids, "beneficiary": "Bob"} | YEAR_2026,
                bob,
            )
        assert refused.value.reason == reason
        assert market.snapshot() == before


def test_a_reporting_period_must_be_a_real_one(market: MarketHarness) -> None:
    bob, _, purchase = _settled(market)
    for start, end in [(2_000, 1_000), (0, 400 * DAY * 1000)]:
        before = market.snapshot()
        with pytest.raises(RpcError) as refused:
            market.client.call(
                "energy.retireCredits",
                {
                    "credit_ids": purchase["credit_ids"],
                    "beneficiary": "Bob",
                    "reporting_period_start_ms": start,
                    "reporting_period_end_ms": end,
                },
                bob,
            )
        assert refused.value.reason == "invalid_state"
        assert market.snapshot() == before


def test_a_credit_past_its_expiry_cannot_be_bought_before_the_job_runs(
    market: MarketHarness,
) -> None:
    meter = selling_provider(market, [1_000])
    bob = market.funded_account("bob.theblock", block=100)
    market.clock.now += market.deps.settings.credit_lifetime_ms // 1000 + 60
    before = market.snapshot()
    with pytest.raises(RpcError) as refused:
        buy(market, bob, meter.provider_id, "1")
    assert refused.value.reason == "insufficient_energy"
    assert market.snapshot() == before
