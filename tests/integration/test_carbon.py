"""Carbon offset through the API, on both storage adapters: by jurisdiction, after
revocation, for providers, refused calls, and the ledger's counters on each adapter.

The figures: US 383, DE 342 g CO2e per kWh generated (Ember 2024); solar 48,
wind 11 g of its own (IPCC AR5); no published figure for AQ, so the original
defaults (solar 400, wind 400, hydro 20); battery avoids nothing.
"""

from __future__ import annotations

import os
from decimal import Decimal
from typing import Any

import pytest

from chalicelib.adapters.dynamodb import DynamoUnitOfWork
from chalicelib.adapters.memory import MemoryState
from chalicelib.adapters.memory.unit_of_work import MemoryUnitOfWork
from chalicelib.domain.carbon import Bought
from chalicelib.services.ports import UnitOfWork
from energy_client.rpc_client import RpcError, Signer
from tests.support import (
    MarketHarness,
    SimulatedMeter,
    buy,
    dynamodb_market,
    flag,
    memory_market,
    selling_provider,
    tables_from_environment,
    validators,
)

US_SOLAR = 383 - 48  # a US_CA credit takes the US figure
DE_SOLAR = 342 - 48
DE_WIND = 342 - 11


def settled(
    market: MarketHarness, buyer: Signer, meter: SimulatedMeter, kwh: Any
) -> dict[str, Any]:
    purchase = buy(market, buyer, meter.provider_id, kwh)
    market.client.call("energy.settle", {"transaction_id": purchase["transaction_id"]}, buyer)
    return purchase


def carbon_of(market: MarketHarness, **subject: str) -> dict[str, Any]:
    result: dict[str, Any] = market.client.call("energy.getCarbonOffset", subject)
    return result


def origins(result: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [
        (o["energy_type"], o["jurisdiction"], o["wh"], o["g_co2_per_kwh"], o["basis"], o["g_co2"])
        for o in result["wh_by_origin"]
    ]


def two_jurisdictions(market: MarketHarness) -> tuple[Signer, SimulatedMeter, SimulatedMeter]:
    """Bob bought and settled 2 kWh of solar in California and 2 kWh in Germany."""
    california = selling_provider(market, [2_000], owner="sun-ca.theblock")
    germany = selling_provider(market, [2_000], owner="sun-de.theblock", jurisdiction="DE")
    bob = market.funded_account("bob.theblock", block=100)
    settled(market, bob, california, 2)
    settled(market, bob, germany, 2)
    return bob, california, germany


# -- accounts ---------------------------------------------------------------------------


def test_the_same_energy_avoids_different_co2_in_two_jurisdictions(
    market: MarketHarness,
) -> None:
    two_jurisdictions(market)
    carbon = carbon_of(market, account="bob.theblock")

    assert carbon["scope"] == "account"
    assert carbon["bought_wh"] == {"solar": 4_000}
    assert origins(carbon) == [
        ("solar", "DE", 2_000, DE_SOLAR, "grid", 2 * DE_SOLAR),
        ("solar", "US_CA", 2_000, US_SOLAR, "grid", 2 * US_SOLAR),
    ]
    assert [o["grid_jurisdiction"] for o in carbon["wh_by_origin"]] == ["DE", "US"]
    assert carbon["total_g_co2"] == 2 * DE_SOLAR + 2 * US_SOLAR == 1_258
    assert carbon["total_kg_co2"] == Decimal("1.258")
    assert carbon["equivalent_trees"] == 0
    assert {name: e["quantity"] for name, e in carbon["equivalents"].items()} == {
        "trees": 0,
        "car_km": 1_258 // 249,
        "grid_kwh": 1_258 // 473,
    }
    assert all(e["source"] for e in carbon["equivalents"].values())
    assert "Ember" in carbon["factors_source"] and "IPCC" in carbon["factors_source"]
    # The portfolio shows the same figure.
    portfolio = market.client.call("energy.getPortfolio", {"account": "bob.theblock"})
    assert portfolio["carbon_offset"] == carbon


def test_where_no_figure_is_published_the_original_default_applies_and_storage_avoids_nothing(
    market: MarketHarness,
) -> None:
    wind = selling_provider(
        market, [3_000], owner="wind-aq.theblock", jurisdiction="AQ", energy_type="wind"
    )
    battery = selling_provider(
        market, [3_000], owner="battery-de.theblock", jurisdiction="DE", energy_type="battery"
    )
    bob = market.funded_account("bob.theblock", block=100)
    settled(market, bob, wind, "1.5")
    settled(market, bob, battery, 3)

    carbon = carbon_of(market, account="bob.theblock")
    assert origins(carbon) == [
        ("battery", "DE", 3_000, 0, "stored", 0),
        ("wind", "AQ", 1_500, 400, "default", 600),
    ]
    assert carbon["bought_wh"] == {"battery": 3_000, "wind": 1_500}
    assert carbon["total_g_co2"] == 600


def test_energy_bought_but_not_settled_avoids_nothing_yet(market: MarketHarness) -> None:
    meter = selling_provider(market, [2_000])
    bob = market.funded_account("bob.theblock", block=100)
    buy(market, bob, meter.provider_id, 2)
    carbon = carbon_of(market, account="bob.theblock")
    assert (carbon["total_g_co2"], carbon["bought_wh"], carbon["wh_by_origin"]) == (0, {}, [])


def found_guilty(market: MarketHarness, meter: SimulatedMeter) -> Any:
    """Carol flags the reading bob's held credit came from; three of five validators
    find it guilty, which revokes the reading's credits and refunds bob."""
    judges = {s.account: s for s in validators(market, *(f"val-{n}.theblock" for n in range(5)))}
    carol = market.funded_account("carol.theblock", block=100)
    credits = market.client.call("energy.getCredits", {"provider_id": meter.provider_id})
    held = next(c for c in credits["credits"] if c["state"] == "held")
    dispute = flag(market, carol, credit_id=held["credit_id"])
    decided = None
    for name in dispute["panel"][:3]:
        decided = market.client.call(
            "energy.voteOnDispute",
            {"dispute_id": dispute["dispute_id"], "verdict": "guilty", "severity": "major"},
            judges[name],
        )
    return decided


def test_a_guilty_verdict_takes_the_revoked_energy_off_the_buyers_carbon(
    market: MarketHarness,
) -> None:
    _, california, _ = two_jurisdictions(market)
    decided = found_guilty(market, california)

    assert decided["status"] == "guilty" and decided["revocation"]["complete"]
    carbon = carbon_of(market, account="bob.theblock")
    assert carbon["bought_wh"] == {"solar": 2_000}
    assert origins(carbon) == [("solar", "DE", 2_000, DE_SOLAR, "grid", 2 * DE_SOLAR)]
    assert carbon["total_g_co2"] == 2 * DE_SOLAR


# -- providers --------------------------------------------------------------------------


def test_a_providers_carbon_is_what_its_settled_sales_avoided(market: MarketHarness) -> None:
    meter = selling_provider(
        market, [2_000, 2_000], owner="wind-de.theblock", jurisdiction="DE", energy_type="wind"
    )
    before = carbon_of(market, provider_id=meter.provider_id)
    assert (before["scope"], before["total_g_co2"], before["wh_by_origin"]) == ("provider", 0, [])

    bob = market.funded_account("bob.theblock", block=100)
    settled(market, bob, meter, 3)
    buy(market, bob, meter.provider_id, 1)  # open: not sold until it settles

    carbon = carbon_of(market, provider_id=meter.provider_id)
    assert carbon["bought_wh"] == {"wind": 3_000}
    assert origins(carbon) == [("wind", "DE", 3_000, DE_WIND, "grid", 3 * DE_WIND)]
    assert carbon["total_g_co2"] == 993
    # What the provider sold is what its buyer bought, by the same rule.
    assert carbon_of(market, account="bob.theblock")["total_g_co2"] == 993


def test_a_guilty_verdict_takes_revoked_sales_off_the_providers_carbon(
    market: MarketHarness,
) -> None:
    _, california, _ = two_jurisdictions(market)
    found_guilty(market, california)

    assert carbon_of(market, provider_id=california.provider_id)["total_g_co2"] == 0
    # ... because what it sold was revoked.
    provider = market.deps.unit_of_work().providers.get(california.provider_id)
    assert provider is not None and provider.sold_wh == 0


# -- refused calls ----------------------------------------------------------------------


def test_a_call_naming_both_is_refused_and_changes_nothing(market: MarketHarness) -> None:
    two_jurisdictions(market)
    before = market.snapshot()
    with pytest.raises(RpcError) as refused:
        market.client.call(
            "energy.getCarbonOffset",
            {"account": "bob.theblock", "provider_id": "energy-0x0123456789abcdef"},
        )
    assert (refused.value.code, refused.value.reason) == (-32602, "invalid_params")
    (error,) = refused.value.data["errors"]
    assert error["message"] == "give account, provider_id or neither (the market), not both"
    assert market.snapshot() == before


def test_neither_is_the_market(market: MarketHarness) -> None:
    # The market's figure comes from the analytics the streams feed
    # (tests/integration/test_analytics.py folds them); unfolded, it is zero.
    answer = market.client.call("energy.getCarbonOffset", {})
    assert (answer["scope"], answer["total_g_co2"], answer["wh_by_origin"]) == ("market", 0, [])


@pytest.mark.parametrize(
    "params",
    [{"account": "nobody.theblock"}, {"provider_id": "energy-0x0123456789abcdef"}],
    ids=["account", "provider"],
)
def test_an_unknown_subject_is_not_found(market: MarketHarness, params: dict[str, str]) -> None:
    with pytest.raises(RpcError) as refused:
        market.client.call("energy.getCarbonOffset", params)
    assert (refused.value.code, refused.value.reason) == (2001, "not_found")


# -- the ledger's counters, on each adapter ---------------------------------------------


def record(uow: UnitOfWork, *changes: tuple[str, str, int]) -> None:
    for energy_type, jurisdiction, wh in changes:
        uow.ledger.record_bought("bob.theblock", energy_type, jurisdiction, wh)
        uow.commit()


def test_both_counters_move_in_one_write_and_revocation_takes_them_back(
    market: MarketHarness,
) -> None:
    record(
        market.uow(),
        ("solar", "US_CA", 2_000),
        ("solar", "DE", 1_000),
        ("wind", "DE", 500),
        ("solar", "US_CA", -500),
    )
    assert market.uow().ledger.bought("bob.theblock") == Bought(
        {"solar": 2_500, "wind": 500},
        {("solar", "US_CA"): 1_500, ("solar", "DE"): 1_000, ("wind", "DE"): 500},
    )
    assert market.uow().ledger.bought("nobody.theblock") == Bought({}, {})


def test_a_ledger_item_from_before_jurisdictions_still_counts_on_both_adapters(
    dynamodb: Any,
) -> None:
    """An account's BOUGHT item as the previous release wrote it (3 kWh of solar,
    no origins), then a settlement and a revocation of the old energy since."""
    tables = tables_from_environment(dict(os.environ))
    dynamodb.put_item(
        TableName=tables.ledger,
        Item={
            "pk": {"S": "ACCOUNT#bob.theblock"},
            "sk": {"S": "BOUGHT"},
            "wh_solar": {"N": "3000"},
        },
    )
    state = MemoryState()
    state.bought["bob.theblock"] = {"solar": 3_000}
    adapters: dict[str, Any] = {
        "memory": lambda: MemoryUnitOfWork(state),
        "dynamodb": lambda: DynamoUnitOfWork(dynamodb, tables),
    }
    legacy = Bought({"solar": 3_000}, {})
    assert {name: uow().ledger.bought("bob.theblock") for name, uow in adapters.items()} == {
        "memory": legacy,
        "dynamodb": legacy,
    }

    for uow in adapters.values():
        record(uow(), ("solar", "DE", 1_000), ("solar", "US_CA", -1_000))
    expected = Bought({"solar": 3_000}, {("solar", "DE"): 1_000, ("solar", "US_CA"): -1_000})
    found = {name: uow().ledger.bought("bob.theblock") for name, uow in adapters.items()}
    assert found == {"memory": expected, "dynamodb": expected}
    # 2,000 Wh of the old energy left at the solar default, 1,000 from Germany.
    assert expected.origins() == {("solar", None): 2_000, ("solar", "DE"): 1_000}


def test_both_adapters_give_the_same_answers(dynamodb: Any) -> None:
    markets = {
        "memory": memory_market(),
        "dynamodb": dynamodb_market(dynamodb, tables_from_environment(dict(os.environ))),
    }
    answers = {}
    for name, market in markets.items():
        _, california, germany = two_jurisdictions(market)
        answers[name] = [
            carbon_of(market, account="bob.theblock"),
            carbon_of(market, provider_id=california.provider_id),
            carbon_of(market, provider_id=germany.provider_id),
        ]
    assert answers["memory"] == answers["dynamodb"]
    assert [a["total_g_co2"] for a in answers["memory"]] == [1_258, 670, 588]
