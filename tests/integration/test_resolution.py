"""Disputes decided: freezes, votes, quorum and deadline, slashes, refunds, receipts.

Every test runs through the JSON-RPC API on both storage adapters; the
scheduled jobs are called as the scheduler calls them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from nacl.signing import SigningKey

from chalicelib.domain.disputes import DEFAULT_BOND_MICRO_BLOCK, DEFAULT_VOTING_PERIOD_MS
from chalicelib.domain.receipts import slash_chain, verify_chain, verify_export
from chalicelib.services import resolution
from chalicelib.services.settlement import run_settlement
from energy_client.rpc_client import RpcError, Signer
from tests.support import (
    BLOCK,
    RECEIPT_SEED,
    MarketHarness,
    SimulatedMeter,
    assert_conserved,
    buy,
    flag,
    selling_provider,
    validators,
)

BOND = DEFAULT_BOND_MICRO_BLOCK
VALIDATORS = tuple(f"val-{n}.theblock" for n in range(1, 6))
STAKE = 10_000 * BLOCK
PRICE = 80_000  # micro-BLOCK per kWh: the registration's 0.08 BLOCK


@dataclass
class Scene:
    """A provider whose first reading bob bought (and settled) part of and dave
    reserved part of; carol flagged that reading."""

    meter: SimulatedMeter
    judges: dict[str, Signer]
    bob: Signer
    dave: Signer
    carol: Signer
    bobs_purchase: dict[str, Any]
    daves_purchase: dict[str, Any]
    dispute: dict[str, Any]

    @property
    def dispute_id(self) -> str:
        return str(self.dispute["dispute_id"])


@pytest.fixture
def scene(market: MarketHarness) -> Scene:
    meter = selling_provider(market, [5_000, 5_000])
    judges = {s.account: s for s in validators(market, *VALIDATORS)}
    bob = market.funded_account("bob.theblock", block=1_000)
    dave = market.funded_account("dave.theblock", block=1_000)
    carol = market.funded_account("carol.theblock", block=1_000)
    bobs = buy(market, bob, meter.provider_id, 2)  # 2,000 Wh split off the first credit
    market.client.call("energy.settle", {"transaction_id": bobs["transaction_id"]}, bob)
    daves = buy(market, dave, meter.provider_id, 1)  # 1,000 Wh more of it, reserved
    dispute = flag(market, carol, credit_id=bobs["credit_ids"][0])
    return Scene(meter, judges, bob, dave, carol, bobs, daves, dispute)


def call(
    market: MarketHarness, method: str, params: dict[str, Any], signer: Signer | None = None
) -> Any:
    return market.client.call(method, params, signer)


def vote(
    market: MarketHarness, scene: Scene, judge: str, verdict: str, severity: str | None = None
) -> dict[str, Any]:
    params: dict[str, Any] = {"dispute_id": scene.dispute_id, "verdict": verdict}
    if severity is not None:
        params["severity"] = severity
    result: dict[str, Any] = call(market, "energy.voteOnDispute", params, scene.judges[judge])
    return result


def refused(
    market: MarketHarness, method: str, params: dict[str, Any], signer: Signer | None
) -> str:
    before = market.snapshot()
    with pytest.raises(RpcError) as error:
        call(market, method, params, signer)
    assert market.snapshot() == before, f"a refused {method} changed something"
    return str(error.value.reason)


def balance(market: MarketHarness, name: str) -> int:
    return int(call(market, "energy.getAccount", {"name": name})["balance"])


def reading_credits(market: MarketHarness, scene: Scene) -> list[dict[str, Any]]:
    reading = scene.dispute["subject"]["reading_hash"]
    page = call(market, "energy.getCredits", {"provider_id": scene.meter.provider_id})
    return [c for c in page["credits"] if c["reading_hash"] == reading]


def test_frozen_credits_leave_the_market_and_wait_to_settle_or_retire(
    market: MarketHarness, scene: Scene
) -> None:
    erin = market.funded_account("erin.theblock", block=100)
    frozen = {c["credit_id"] for c in reading_credits(market, scene)}

    # The oldest credit on sale is the flagged reading's rest: it is skipped.
    erins = buy(market, erin, scene.meter.provider_id, 2)
    assert not frozen & set(erins["credit_ids"])

    # Bob keeps his part, marked with the dispute that holds it.
    holdings = call(market, "energy.getPortfolio", {"account": "bob.theblock"})["holdings"]
    assert [h["disputed_by"] for h in holdings] == [scene.dispute_id]
    listed = call(market, "energy.getCredits", {"provider_id": scene.meter.provider_id})
    assert {c["credit_id"] for c in listed["credits"] if c["disputed_by"]} == frozen

    settle = {"transaction_id": scene.daves_purchase["transaction_id"]}
    assert refused(market, "energy.settle", settle, scene.dave) == "credits_disputed"
    retire = {
        "credit_ids": scene.bobs_purchase["credit_ids"],
        "beneficiary": "Bob's bakery",
        "reporting_period_start_ms": 0,
        "reporting_period_end_ms": 86_400_000,
    }
    assert refused(market, "energy.retireCredits", retire, scene.bob) == "credits_disputed"

    # Past the dispute window the job settles erin's purchase, not dave's:
    # dave's stays due (the job's watermark does not pass it).
    market.clock.now += 25 * 3600
    run = run_settlement(market.deps)
    assert run.done == 1
    purchase = call(market, "energy.getPurchase", settle)
    assert purchase["status"] == "open"
    assert run.watermark is not None and run.watermark <= purchase["settles_at_ms"]
    assert_conserved(market)


def test_a_guilty_quorum_slashes_revokes_refunds_rewards_and_signs_a_receipt(
    market: MarketHarness, scene: Scene
) -> None:
    panel = scene.dispute["panel"]
    assert vote(market, scene, panel[0], "guilty", "major")["status"] == "open"
    vote(market, scene, panel[1], "guilty", "critical")
    decided = vote(market, scene, panel[2], "guilty", "major")

    assert decided["status"] == "guilty"
    assert decided["severity"] == "major"  # the lower median of major, critical, major
    assert decided["decided_by"] == "quorum"
    assert decided["non_voters"] == panel[3:]
    slash = STAKE * 2_500 // 10_000
    paid_by_bob = 2 * PRICE
    revocation = decided["revocation"]
    assert revocation["slash_micro_block"] == slash
    assert revocation["stake_after_micro_block"] == STAKE - slash
    assert revocation["refunded_micro_block"] == paid_by_bob
    assert revocation["escrow_refunded_micro_block"] == PRICE
    assert revocation["revoked_wh"] == 5_000 and revocation["complete"]

    provider = call(market, "energy.getProvider", {"provider_id": scene.meter.provider_id})
    assert provider["stake"] == STAKE - slash and provider["status"] == "active"
    assert {c["state"] for c in reading_credits(market, scene)} == {"revoked"}
    # Buyers get back exactly what they paid; the flagger its bond and 10 %
    # of what the slash held after the refunds.
    assert balance(market, "bob.theblock") == 1_000 * BLOCK
    assert balance(market, "dave.theblock") == 1_000 * BLOCK
    reward = (slash - paid_by_bob) // 10
    assert balance(market, "carol.theblock") == 1_000 * BLOCK + reward
    assert revocation["flagger_reward_micro_block"] == reward
    assert revocation["treasury_micro_block"] == slash - paid_by_bob - reward
    daves = call(
        market, "energy.getPurchase", {"transaction_id": scene.daves_purchase["transaction_id"]}
    )
    assert daves["status"] == "revoked"

    # The slash receipt: signed by the marketplace key, first of its chain.
    ref = revocation["slash_receipt"]
    assert ref["chain"] == slash_chain(scene.meter.provider_id) and ref["sequence"] == 1
    receipt = market.uow().receipts.slash_receipt(ref["chain"], ref["sequence"])
    assert receipt is not None and receipt.receipt_hash == ref["receipt_hash"]
    assert receipt.slash_micro_block == slash
    assert receipt.slash_micro_block == (
        receipt.refunded_micro_block
        + receipt.flagger_reward_micro_block
        + receipt.treasury_micro_block
    )
    public_key = SigningKey(bytes.fromhex(RECEIPT_SEED)).verify_key.encode().hex()
    assert verify_chain([receipt], public_key).intact
    # Readable over the API, as an export the offline verifier checks.
    chain = call(market, "energy.getSlashReceipts", {"provider_id": scene.meter.provider_id})
    assert chain["receipts"] == [receipt.to_json()]
    assert {k: chain["head"][k] for k in ref} == ref  # signed, besides
    assert chain["head"]["marketplace_id"] == receipt.marketplace_id
    export = {
        "marketplace_id": receipt.marketplace_id,
        "receipt_public_key": public_key,
        "receipts": chain["receipts"],
        "heads": [chain["head"]],
    }
    (report,) = verify_export(export)
    assert report.intact, report
    tampered = {**export, "receipts": [{**receipt.to_json(), "slash_micro_block": 1}]}
    assert not verify_export(tampered)[0].intact
    totals = assert_conserved(market)
    assert totals.bonds == 0 and totals.pots == 0

    # It resolved once: asking again, voting again or running the job changes nothing.
    before = market.snapshot()
    again = call(market, "energy.resolveDispute", {"dispute_id": scene.dispute_id})
    assert again == call(market, "energy.getDispute", {"dispute_id": scene.dispute_id})
    assert market.snapshot() == before
    late = {"dispute_id": scene.dispute_id, "verdict": "cleared"}
    assert refused(market, "energy.voteOnDispute", late, scene.judges[panel[3]]) == (
        "dispute_closed"
    )
    money = market.audit()
    market.clock.now += DEFAULT_VOTING_PERIOD_MS // 1000 + 3600
    assert resolution.run_disputes(market.deps).done == 0
    assert market.audit() == money
    assert call(market, "energy.getDispute", {"dispute_id": scene.dispute_id}) == again


def test_without_a_guilty_quorum_the_deadline_clears_and_everything_thaws(
    market: MarketHarness, scene: Scene
) -> None:
    panel = scene.dispute["panel"]
    vote(market, scene, panel[0], "guilty", "minor")
    vote(market, scene, panel[1], "cleared")
    seller_before = balance(market, "seller.theblock")
    assert (
        call(market, "energy.resolveDispute", {"dispute_id": scene.dispute_id})["status"] == "open"
    )

    market.clock.now += DEFAULT_VOTING_PERIOD_MS // 1000
    run = resolution.run_disputes(market.deps)

    assert run.done == 1
    cleared = call(market, "energy.getDispute", {"dispute_id": scene.dispute_id})
    assert (cleared["status"], cleared["decided_by"]) == ("cleared", "deadline")
    assert cleared["non_voters"] == panel[2:] and cleared["revocation"] is None
    # The bond goes to the provider's owner; the stake is untouched.
    assert balance(market, "seller.theblock") == seller_before + BOND
    provider = call(market, "energy.getProvider", {"provider_id": scene.meter.provider_id})
    assert provider["stake"] == STAKE
    # Dave's purchase settles now, bob can retire, and the rest is on sale.
    assert run_settlement(market.deps).done == 1
    retire = {
        "credit_ids": scene.bobs_purchase["credit_ids"],
        "beneficiary": "Bob's bakery",
        "reporting_period_start_ms": 0,
        "reporting_period_end_ms": 86_400_000,
    }
    call(market, "energy.retireCredits", retire, scene.bob)
    erin = market.funded_account("erin.theblock", block=100)
    rest = {c["credit_id"] for c in reading_credits(market, scene) if c["state"] == "available"}
    assert rest and rest <= set(buy(market, erin, scene.meter.provider_id, 2)["credit_ids"])
    assert assert_conserved(market).bonds == 0


def test_votes_out_of_turn_are_refused_and_change_nothing(
    market: MarketHarness, scene: Scene
) -> None:
    panel = scene.dispute["panel"]
    vote(market, scene, panel[0], "guilty", "minor")
    outsider = validators(market, "val-6.theblock")[0]
    call(
        market,
        "energy.grantRole",
        {"account": "bob.theblock", "role": "validator"},
        market.operator,
    )
    params = {"dispute_id": scene.dispute_id, "verdict": "cleared"}

    assert refused(market, "energy.voteOnDispute", params, outsider) == "not_on_panel"
    assert refused(market, "energy.voteOnDispute", params, scene.bob) == "party_to_dispute"
    assert (
        refused(market, "energy.voteOnDispute", params, scene.judges[panel[0]]) == "already_voted"
    )
    no_severity = {"dispute_id": scene.dispute_id, "verdict": "guilty"}
    assert refused(market, "energy.voteOnDispute", no_severity, scene.judges[panel[1]]) == (
        "invalid_params"
    )
    unknown = {"dispute_id": "dsp-" + "0" * 32, "verdict": "cleared"}
    assert refused(market, "energy.voteOnDispute", unknown, scene.judges[panel[1]]) == "not_found"
    market.clock.now += DEFAULT_VOTING_PERIOD_MS // 1000
    assert refused(market, "energy.voteOnDispute", params, scene.judges[panel[1]]) == (
        "voting_closed"
    )


def test_a_slash_below_the_minimum_stake_suspends_until_the_owner_tops_up(
    market: MarketHarness,
) -> None:
    meter = selling_provider(market, [5_000, 5_000], stake=1_200 * BLOCK)
    judges = {s.account: s for s in validators(market, *VALIDATORS)}
    carol = market.funded_account("carol.theblock", block=100)
    erin = market.funded_account("erin.theblock", block=100)
    credit = call(market, "energy.getCredits", {"provider_id": meter.provider_id})["credits"][0]
    dispute = flag(market, carol, credit_id=credit["credit_id"])
    for judge in dispute["panel"][:3]:
        params = {"dispute_id": dispute["dispute_id"], "verdict": "guilty", "severity": "critical"}
        call(market, "energy.voteOnDispute", params, judges[judge])

    provider = call(market, "energy.getProvider", {"provider_id": meter.provider_id})
    assert provider["stake"] == 600 * BLOCK and provider["status"] == "suspended"
    with pytest.raises(RpcError) as error:
        buy(market, erin, meter.provider_id, 1)
    assert error.value.reason == "provider_not_selling"

    top_up = {"provider_id": meter.provider_id, "amount_micro_block": 400 * BLOCK}
    call(market, "energy.topUpStake", top_up, meter.owner)
    provider = call(market, "energy.getProvider", {"provider_id": meter.provider_id})
    assert provider["status"] == "active"
    buy(market, erin, meter.provider_id, 1)
    assert_conserved(market)


def test_a_large_window_is_revoked_page_by_page_and_conserved_between_pages(
    market: MarketHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    meter = selling_provider(market, [100] * 20)
    judges = {s.account: s for s in validators(market, *VALIDATORS)}
    bob = market.funded_account("bob.theblock", block=100)
    carol = market.funded_account("carol.theblock", block=100)
    bobs = buy(market, bob, meter.provider_id, "0.25")  # two whole credits and part of a third
    now_ms = market.clock.now * 1000
    dispute = flag(
        market,
        carol,
        meter_address=meter.meter_address,
        window_start_ms=now_ms - 3_600_000,
        window_end_ms=now_ms + 1,
    )
    monkeypatch.setattr(resolution, "REVOCATION_PAGE", 4)
    monkeypatch.setattr(resolution, "DEFAULT_STEPS", 2)
    for judge in dispute["panel"][:3]:
        params = {"dispute_id": dispute["dispute_id"], "verdict": "guilty", "severity": "minor"}
        decided = call(market, "energy.voteOnDispute", params, judges[judge])

    # The verdict and one page: still revoking, the slash held, money conserved.
    assert decided["status"] == "revoking"
    assert decided["revocation"]["revoked_credits"] == 4
    totals = assert_conserved(market)
    assert totals.pots > 0 and totals.revoked_wh > 0
    runs = 0
    while (
        call(market, "energy.getDispute", {"dispute_id": dispute["dispute_id"]})["status"]
        != "guilty"
    ):
        resolution.run_disputes(market.deps)
        assert_conserved(market)
        runs += 1
        assert runs < 20
    done = call(market, "energy.getDispute", {"dispute_id": dispute["dispute_id"]})
    assert done["revocation"]["revoked_credits"] == 21  # 20 readings, one split in two
    assert done["revocation"]["escrow_refunded_micro_block"] == bobs["total_cost_micro_block"]
    assert (
        call(market, "energy.getPurchase", {"transaction_id": bobs["transaction_id"]})["status"]
        == "revoked"
    )
    assert balance(market, "bob.theblock") == 100 * BLOCK
    provider = call(market, "energy.getProvider", {"provider_id": meter.provider_id})
    assert provider["available_wh"] == 0 and provider["open_obligations"] == 0
    totals = assert_conserved(market)
    assert totals.pots == 0 and totals.revoked_wh == 2_000


def test_an_open_dispute_holds_the_stake_it_may_slash(market: MarketHarness, scene: Scene) -> None:
    withdrawal = {"provider_id": scene.meter.provider_id, "amount_micro_block": BLOCK}
    assert refused(market, "energy.withdrawStake", withdrawal, scene.meter.owner) == (
        "open_obligations"
    )
    for judge in scene.dispute["panel"][:3]:
        vote(market, scene, judge, "cleared")
    # Dave's purchase still secures the stake; once it settles, the stake is free.
    market.clock.now += 25 * 3600
    run_settlement(market.deps)
    call(market, "energy.withdrawStake", withdrawal, scene.meter.owner)
    assert_conserved(market)


def test_validators_stake_to_sit_and_withdraw_once_their_panels_decide(
    market: MarketHarness, scene: Scene
) -> None:
    judge = scene.judges[scene.dispute["panel"][0]]
    withdrawal = {"amount_micro_block": BLOCK}
    assert refused(market, "energy.withdrawValidatorStake", withdrawal, judge) == (
        "open_obligations"
    )
    # Without the role, no stake; with it but too little stake, no seat.
    erin = market.funded_account("erin.theblock", block=2_000)
    stake = {"amount_micro_block": 2_000 * BLOCK}
    assert refused(market, "energy.stakeAsValidator", stake, erin) == "not_authorised"
    call(
        market,
        "energy.grantRole",
        {"account": "erin.theblock", "role": "validator"},
        market.operator,
    )
    call(market, "energy.stakeAsValidator", {"amount_micro_block": 999 * BLOCK}, erin)
    assert call(market, "energy.getAccount", {"name": "erin.theblock"})["validator_stake"] == (
        999 * BLOCK
    )
    market.clock.now += 60
    second = flag(
        market,
        scene.carol,
        meter_address=scene.meter.meter_address,
        window_start_ms=0,
        window_end_ms=60_000,
    )
    assert "erin.theblock" not in second["panel"]

    for seat in scene.dispute["panel"][:3]:
        vote(market, scene, seat, "cleared")
    more = {"amount_micro_block": 2 * BLOCK}
    assert refused(market, "energy.withdrawValidatorStake", more, judge) == "open_obligations"
    # The second dispute still holds the judge's stake; once decided, it is free.
    for seat in second["panel"][:3]:
        params = {"dispute_id": second["dispute_id"], "verdict": "cleared"}
        call(market, "energy.voteOnDispute", params, scene.judges[seat])
    account = call(market, "energy.withdrawValidatorStake", withdrawal, judge)
    assert account["validator_stake"] == 999 * BLOCK and account["balance"] == BLOCK
    call(
        market,
        "energy.revokeRole",
        {"account": "erin.theblock", "role": "validator"},
        market.operator,
    )
    left = call(market, "energy.withdrawValidatorStake", {"amount_micro_block": 999 * BLOCK}, erin)
    assert left["validator_stake"] == 0
    assert_conserved(market)


def test_a_retired_credit_found_fraudulent_is_refunded_and_its_certificate_revoked(
    market: MarketHarness,
) -> None:
    meter = selling_provider(market, [5_000])
    judges = {s.account: s for s in validators(market, *VALIDATORS)}
    bob = market.funded_account("bob.theblock", block=100)
    carol = market.funded_account("carol.theblock", block=100)
    bought = buy(market, bob, meter.provider_id, 2)
    call(market, "energy.settle", {"transaction_id": bought["transaction_id"]}, bob)
    claim = {
        "credit_ids": bought["credit_ids"],
        "beneficiary": "Bob's bakery",
        "reporting_period_start_ms": 0,
        "reporting_period_end_ms": 86_400_000,
    }
    (certificate,) = call(market, "energy.retireCredits", claim, bob)["certificates"]
    dispute = flag(market, carol, credit_id=bought["credit_ids"][0])
    for judge in dispute["panel"][:3]:
        params = {"dispute_id": dispute["dispute_id"], "verdict": "guilty", "severity": "minor"}
        call(market, "energy.voteOnDispute", params, judges[judge])

    after = call(market, "energy.getCertificate", {"certificate_id": certificate["certificate_id"]})
    assert after["status"] == "revoked" and certificate["status"] == "retired"
    assert balance(market, "bob.theblock") == 100 * BLOCK  # what it paid, back
    assert_conserved(market)
