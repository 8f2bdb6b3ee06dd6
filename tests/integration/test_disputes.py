"""Flagging a reading: a dispute opens with a bond and a panel, or a flag joins it."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from chalicelib.domain.disputes import DEFAULT_BOND_MICRO_BLOCK, Validator, draw_panel
from energy_client.rpc_client import RpcError, Signer, unwrap
from tests.support import (
    BLOCK,
    MarketHarness,
    SimulatedMeter,
    assert_conserved,
    buy,
    flag,
    selling_provider,
    validators,
)

BOND = DEFAULT_BOND_MICRO_BLOCK
VALIDATORS = ("val-1.theblock", "val-2.theblock", "val-3.theblock")


def credits_of(market: MarketHarness, provider_id: str) -> list[dict[str, Any]]:
    page = market.client.call("energy.getCredits", {"provider_id": provider_id})
    credits: list[dict[str, Any]] = page["credits"]
    return credits


def balance(market: MarketHarness, name: str) -> int:
    account = market.client.call("energy.getAccount", {"name": name})
    return int(account["balance"])


def refused(market: MarketHarness, method: str, params: dict[str, Any], signer: Signer) -> str:
    before = market.snapshot()
    with pytest.raises(RpcError) as error:
        market.client.call(method, params, signer)
    assert market.snapshot() == before, "a refused flag changed something"
    return str(error.value.reason)


@pytest.fixture
def disputed(market: MarketHarness) -> tuple[SimulatedMeter, str]:
    """A provider whose first reading is partly bought by bob; validators ready.

    Returns the meter and the id of bob's part of the credit (split off the
    reading's credit), whose reading is the one flagged.
    """
    meter = selling_provider(market, [5_000, 5_000])
    validators(market, *VALIDATORS)
    bob = market.funded_account("bob.theblock", block=1_000)
    purchase = buy(market, bob, meter.provider_id, 2)  # 2,000 Wh of the oldest credit
    return meter, purchase["credit_ids"][0]


def test_a_flag_opens_a_dispute_with_a_bond_and_a_panel_without_parties(
    market: MarketHarness, disputed: tuple[SimulatedMeter, str]
) -> None:
    meter, bobs_part = disputed
    carol = market.funded_account("carol.theblock", block=1_000)
    # Parties who are validators too: the owner, the buyer and the flagger.
    for name in ("seller.theblock", "bob.theblock", "carol.theblock"):
        market.client.call(
            "energy.grantRole", {"account": name, "role": "validator"}, market.operator
        )
    reading_hash = next(
        c["reading_hash"]
        for c in credits_of(market, meter.provider_id)
        if c["credit_id"] == bobs_part
    )

    dispute = flag(market, carol, credit_id=bobs_part)

    assert dispute["status"] == "open"
    assert dispute["subject"]["kind"] == "reading"
    assert dispute["subject"]["reading_hash"] == reading_hash
    assert (dispute["provider_id"], dispute["provider_owner"]) == (
        meter.provider_id,
        "seller.theblock",
    )
    assert [f["flagged_by"] for f in dispute["flags"]] == ["carol.theblock"]
    assert dispute["bond_micro_block"] == BOND and dispute["bond"] == Decimal(10)
    # Every validator who is not a party, in the draw anyone can redo.
    eligible = [Validator(name, 1_000 * BLOCK) for name in VALIDATORS]
    parties = {"seller.theblock", "bob.theblock", "carol.theblock"}
    assert tuple(dispute["panel"]) == draw_panel(dispute["dispute_id"], eligible, parties)
    assert set(dispute["panel"]) == set(VALIDATORS)
    assert balance(market, "carol.theblock") == 1_000 * BLOCK - BOND
    assert market.client.call("energy.getDispute", {"dispute_id": dispute["dispute_id"]}) == dispute
    totals = assert_conserved(market)
    assert totals.bonds == BOND


def test_a_second_flag_on_the_same_reading_joins_the_open_dispute(
    market: MarketHarness, disputed: tuple[SimulatedMeter, str]
) -> None:
    _, bobs_part = disputed
    carol = market.funded_account("carol.theblock", block=100)
    dave = market.funded_account("dave.theblock", block=100)
    first = flag(market, carol, credit_id=bobs_part)

    joined = flag(market, dave, "flat line", reading_hash=first["subject"]["reading_hash"])

    assert joined["dispute_id"] == first["dispute_id"]
    assert [f["flagged_by"] for f in joined["flags"]] == ["carol.theblock", "dave.theblock"]
    assert joined["bond_micro_block"] == 2 * BOND
    assert joined["panel"] == first["panel"]  # drawn once, when it opened
    assert balance(market, "dave.theblock") == 100 * BLOCK - BOND
    assert assert_conserved(market).bonds == 2 * BOND
    again = {"credit_id": bobs_part, "reason": "once more"}
    assert refused(market, "energy.flagDispute", again, carol) == "already_exists"


def test_a_flag_without_the_bond_in_balance_is_refused_and_changes_nothing(
    market: MarketHarness, disputed: tuple[SimulatedMeter, str]
) -> None:
    _, bobs_part = disputed
    erin = market.funded_account("erin.theblock", block=5)
    params = {"credit_id": bobs_part, "reason": "output at night"}
    assert refused(market, "energy.flagDispute", params, erin) == "insufficient_balance"


@pytest.mark.parametrize(
    "subject",
    [
        {"credit_id": "ab" * 32},
        {"reading_hash": "cd" * 32},
        {"meter_address": "nowhere_meter_001", "window_start_ms": 0, "window_end_ms": 60_000},
    ],
)
def test_flagging_what_does_not_exist_is_not_found(
    market: MarketHarness, disputed: tuple[SimulatedMeter, str], subject: dict[str, Any]
) -> None:
    carol = market.funded_account("carol.theblock", block=100)
    params = {**subject, "reason": "output at night"}
    assert refused(market, "energy.flagDispute", params, carol) == "not_found"


def test_a_replayed_flag_gets_the_first_answer_and_flags_once(
    market: MarketHarness, disputed: tuple[SimulatedMeter, str]
) -> None:
    _, bobs_part = disputed
    carol = market.funded_account("carol.theblock", block=100)
    request = market.client.request(
        "energy.flagDispute", {"credit_id": bobs_part, "reason": "output at night"}, carol
    )
    first = unwrap(market.client.send(request))
    before = market.snapshot()
    assert unwrap(market.client.send(request)) == first
    assert market.snapshot() == before
    assert balance(market, "carol.theblock") == 100 * BLOCK - BOND


def test_the_owner_cannot_flag_its_own_provider(
    market: MarketHarness, disputed: tuple[SimulatedMeter, str]
) -> None:
    meter, bobs_part = disputed
    assert meter.owner is not None
    params = {"credit_id": bobs_part, "reason": "confession"}
    assert refused(market, "energy.flagDispute", params, meter.owner) == "not_authorised"


def test_without_enough_validators_who_are_not_parties_no_dispute_opens(
    market: MarketHarness, disputed: tuple[SimulatedMeter, str]
) -> None:
    _, bobs_part = disputed
    market.client.call(
        "energy.revokeRole", {"account": VALIDATORS[0], "role": "validator"}, market.operator
    )
    carol = market.funded_account("carol.theblock", block=100)
    params = {"credit_id": bobs_part, "reason": "output at night"}
    assert refused(market, "energy.flagDispute", params, carol) == "panel_unavailable"


def test_a_meter_window_can_be_flagged(
    market: MarketHarness, disputed: tuple[SimulatedMeter, str]
) -> None:
    meter, _ = disputed
    carol = market.funded_account("carol.theblock", block=100)
    end_ms = market.clock.now * 1000
    dispute = flag(
        market,
        carol,
        meter_address=meter.meter_address,
        window_start_ms=end_ms - 3_600_000,
        window_end_ms=end_ms,
    )
    assert dispute["subject"] == {
        "kind": "meter_window",
        "reading_hash": None,
        "meter_address": meter.meter_address,
        "window_start_ms": end_ms - 3_600_000,
        "window_end_ms": end_ms,
    }
    assert dispute["provider_id"] == meter.provider_id
    assert_conserved(market)


def test_disputes_list_by_provider_flagger_validator_and_status_newest_first_in_pages(
    market: MarketHarness, disputed: tuple[SimulatedMeter, str]
) -> None:
    meter, bobs_part = disputed
    carol = market.funded_account("carol.theblock", block=100)
    credits = credits_of(market, meter.provider_id)
    first_reading = next(c["reading_hash"] for c in credits if c["credit_id"] == bobs_part)
    second_reading = next(
        c["credit_id"] for c in credits if c["credit_id"] not in (bobs_part, first_reading)
    )
    opened = []
    for credit_id in (bobs_part, second_reading):
        market.clock.now += 60
        opened.append(flag(market, carol, credit_id=credit_id)["dispute_id"])
    newest_first = list(reversed(opened))

    by: tuple[dict[str, str], ...] = (
        {"provider_id": meter.provider_id},
        {"status": "open"},
        {},
        {"flagger": "carol.theblock"},
        {"validator": VALIDATORS[0]},  # three validators: each sits on both panels
    )
    for filters in by:
        first = market.client.call("energy.getDisputes", {**filters, "limit": 1})
        assert [d["dispute_id"] for d in first["disputes"]] == newest_first[:1]
        rest = market.client.call(
            "energy.getDisputes", {**filters, "limit": 1, "cursor": first["next_cursor"]}
        )
        assert [d["dispute_id"] for d in rest["disputes"]] == newest_first[1:]
        assert rest["next_cursor"] is None
    assert market.client.call("energy.getDisputes", {"status": "cleared"})["disputes"] == []
    for nobody in ({"flagger": "bob.theblock"}, {"validator": "carol.theblock"}):
        assert market.client.call("energy.getDisputes", nobody)["disputes"] == []
    other = market.client.call("energy.getDisputes", {"provider_id": "energy-0x" + "0" * 16})
    assert other == {"disputes": [], "next_cursor": None}
    with pytest.raises(RpcError) as error:
        market.client.call(
            "energy.getDisputes", {"provider_id": meter.provider_id, "status": "open"}
        )
    assert error.value.code == -32602
    assert assert_conserved(market).bonds == 2 * BOND
