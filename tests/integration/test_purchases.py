"""Buying energy: escrow and reservation in one step, or nothing at all."""

from __future__ import annotations

import hashlib
from decimal import Decimal

import pytest

from energy_client.rpc_client import RpcError
from tests.support import BLOCK, MarketHarness, buy, selling_provider

PRICE = Decimal("0.08")  # BLOCK per kWh: the registration default


def wh_is_conserved(market: MarketHarness, provider_id: str) -> None:
    totals = market.audit()
    assert totals.minted_wh == totals.available_wh + totals.reserved_wh
    provider = market.client.call("energy.getProvider", {"provider_id": provider_id})
    assert provider["available_wh"] == totals.available_wh


def test_a_purchase_escrows_the_cost_and_reserves_the_oldest_credits(
    market: MarketHarness,
) -> None:
    meter = selling_provider(market, [2_500, 2_500, 2_500])
    bob = market.funded_account("bob.theblock", block=100)
    purchase = buy(market, bob, meter.provider_id, "3", idempotency_key="bob-first-buy")
    assert purchase["status"] == "open"
    assert (purchase["amount_wh"], purchase["kwh_amount"]) == (3_000, Decimal("3"))
    assert purchase["total_cost"] == Decimal("0.24")  # 3 kWh at 0.08
    assert purchase["total_cost_micro_block"] == 240_000
    assert purchase["price_per_kwh"] == PRICE
    assert purchase["transaction_id"].startswith("pur-")
    assert len(purchase["credit_ids"]) == 2  # the oldest whole, and 500 Wh split off the next
    assert market.client.call("energy.getAccount", {"name": "bob.theblock"})["balance"] == (
        100 * BLOCK - 240_000
    )
    provider = market.client.call("energy.getProvider", {"provider_id": meter.provider_id})
    assert (provider["available_wh"], provider["open_obligations"]) == (4_500, 1)
    credits = {
        c["credit_id"]: c
        for c in market.client.call("energy.getCredits", {"provider_id": meter.provider_id})[
            "credits"
        ]
    }
    reserved = [credits[i] for i in purchase["credit_ids"]]
    assert [c["state"] for c in reserved] == ["reserved", "reserved"]
    assert sum(c["amount_wh"] for c in reserved) == 3_000
    on_sale = sorted(c["amount_wh"] for c in credits.values() if c["state"] == "available")
    assert on_sale == [2_000, 2_500]
    assert (
        market.client.call("energy.getPurchase", {"transaction_id": purchase["transaction_id"]})
        == purchase
    )
    totals = market.audit()
    assert totals.escrow == 240_000 and totals.held == totals.deposits - totals.withdrawals
    wh_is_conserved(market, meter.provider_id)


def test_a_retried_purchase_never_buys_twice(market: MarketHarness) -> None:
    meter = selling_provider(market, [5_000])
    bob = market.funded_account("bob.theblock", block=100)
    first = buy(market, bob, meter.provider_id, 1, idempotency_key="retry-me-123")
    again = buy(market, bob, meter.provider_id, 1, idempotency_key="retry-me-123")
    assert again == first
    assert market.audit().escrow == first["total_cost_micro_block"]


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("price above the limit", "price_above_limit"),
        ("balance short", "insufficient_balance"),
        ("energy short", "insufficient_energy"),
        ("provider paused", "provider_not_selling"),
        ("provider suspended", "provider_not_selling"),
        ("buyer owns the provider", "not_authorised"),
        ("unknown provider", "not_found"),
    ],
)
def test_every_refused_purchase_changes_nothing(
    market: MarketHarness, case: str, reason: str
) -> None:
    meter = selling_provider(market, [2_500, 2_500])
    bob = market.funded_account("bob.theblock", block=1)
    provider_id, kwh, max_price, signer = meter.provider_id, "1", "0.10", bob
    uow = market.uow()
    provider = uow.providers.get(meter.provider_id)
    assert provider is not None
    if case == "price above the limit":
        max_price = "0.07"
    elif case == "balance short":
        kwh, max_price = "4", "1"  # 4 kWh at 0.9 BLOCK is 3.6 BLOCK; bob has 1
        uow.providers.save(
            provider.updated(now=0, price_micro_block_per_kwh=900_000),
            expected_version=provider.version,
        )
        uow.commit()
    elif case == "energy short":
        kwh = "5.001"
    elif case == "provider paused":
        uow.providers.save(provider.updated(now=0, paused=True), expected_version=provider.version)
        uow.commit()
    elif case == "provider suspended":
        uow.providers.save(
            provider.restaked(-provider.stake_micro_block, now=0), expected_version=provider.version
        )
        uow.commit()
    elif case == "buyer owns the provider":
        assert meter.owner is not None
        signer = meter.owner
    elif case == "unknown provider":
        provider_id = "energy-0x0000000000000000"
    before = market.snapshot()
    with pytest.raises(RpcError) as refused:
        buy(market, signer, provider_id, kwh, max_price)
    assert refused.value.reason == reason
    assert market.snapshot() == before


def test_an_open_purchase_holds_the_providers_stake(market: MarketHarness) -> None:
    meter = selling_provider(market, [2_500], owner="seller.theblock")
    bob = market.funded_account("bob.theblock", block=10)
    buy(market, bob, meter.provider_id, 1)
    assert meter.owner is not None
    before = market.snapshot()
    with pytest.raises(RpcError) as refused:
        market.client.call(
            "energy.withdrawStake",
            {"provider_id": meter.provider_id, "amount_micro_block": BLOCK},
            meter.owner,
        )
    assert (refused.value.reason, refused.value.data["open_obligations"]) == ("open_obligations", 1)
    assert market.snapshot() == before


def test_a_replayed_purchase_request_gets_the_first_answer_and_buys_once(
    market: MarketHarness,
) -> None:
    meter = selling_provider(market, [2_500])
    bob = market.funded_account("bob.theblock", block=10)
    request = market.client.request(
        "energy.purchaseEnergy",
        {"provider_id": meter.provider_id, "kwh_amount": 1, "max_price_per_kwh": "0.1"},
        bob,
    )
    first = market.client.send(request)
    before = market.snapshot()
    assert market.client.send(request) == first and "result" in first
    assert market.snapshot() == before
    # The same nonce for another purchase is a replay.
    other = market.client.signed_params(
        "energy.purchaseEnergy",
        {"provider_id": meter.provider_id, "kwh_amount": 2, "max_price_per_kwh": "0.1"},
        bob,
        nonce=request["params"]["auth"]["nonce"],
    )
    answer = market.client.send(
        {"jsonrpc": "2.0", "id": 9, "method": "energy.purchaseEnergy", "params": other}
    )
    assert answer["error"]["data"]["reason"] == "replayed_request"
    assert market.snapshot() == before


def test_a_purchase_needing_more_credits_than_one_write_holds_is_refused(
    market: MarketHarness,
) -> None:
    meter = selling_provider(market, [10] * 95)  # 95 credits of 10 Wh
    bob = market.funded_account("bob.theblock", block=10)
    before = market.snapshot()
    with pytest.raises(RpcError) as refused:
        buy(market, bob, meter.provider_id, "0.95")  # all 95 of them
    assert refused.value.reason == "purchase_too_large"
    assert refused.value.data["max_wh"] == 900  # what 90 credits hold
    assert market.snapshot() == before
    assert buy(market, bob, meter.provider_id, "0.9")["amount_wh"] == 900


def test_a_split_off_part_has_the_documented_id(market: MarketHarness) -> None:
    meter = selling_provider(market, [2_500])
    bob = market.funded_account("bob.theblock", block=10)
    [original] = market.client.call("energy.getCredits", {"provider_id": meter.provider_id})[
        "credits"
    ]
    purchase = market.client.call(
        "energy.purchaseEnergy",
        {"provider_id": meter.provider_id, "kwh_amount": 1, "max_price_per_kwh": "0.1"},
        bob,
    )
    expected = hashlib.sha256(
        f"split\n{original['credit_id']}\n{purchase['transaction_id']}".encode()
    ).hexdigest()
    assert purchase["credit_ids"] == [expected]
    credits = market.client.call("energy.getCredits", {"provider_id": meter.provider_id})
    by_id = {c["credit_id"]: c for c in credits["credits"]}
    rest, part = by_id[original["credit_id"]], by_id[expected]
    assert (rest["amount_wh"], rest["state"]) == (1_500, "available")
    assert (part["amount_wh"], part["state"]) == (1_000, "reserved")
    assert rest["reading_hash"] == part["reading_hash"] == original["reading_hash"]
