"""Racing requests against a moto server: no double spend, no twin, no lost update.

Threads call the real dispatcher with the DynamoDB adapter over HTTP to a moto
server, so the conditions that protect balances and stakes are evaluated by
the storage, not by the test; the same races run on the in-memory adapter,
whose lock must give the same answers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from chalicelib.domain.receipts import slash_chain
from chalicelib.services import resolution
from energy_client.rpc_client import RpcError, Signer
from tests.support import (
    BLOCK,
    MarketHarness,
    assert_conserved,
    flag,
    memory_market,
    racing_dynamodb_market,
    registration_params,
    selling_provider,
    validators,
)

RACERS = 24


@pytest.fixture(params=["memory", "dynamodb"])
def market(request: pytest.FixtureRequest) -> MarketHarness:
    """The in-memory adapter's lock, or DynamoDB's conditions evaluated by a moto server."""
    if request.param == "memory":
        return memory_market()
    moto_server: str = request.getfixturevalue("moto_server")
    request.getfixturevalue("aws_credentials")
    return racing_dynamodb_market(moto_server, "race", RACERS * 2)


def race(calls: Sequence[Callable[[], Any]]) -> tuple[list[Any], list[str]]:
    """Run every call at once; return the results and the refusal reasons."""
    start = threading.Barrier(len(calls))
    results: list[Any] = []
    refusals: list[str] = []

    def run(call: Callable[[], Any]) -> None:
        start.wait()
        try:
            results.append(call())
        except RpcError as refused:
            refusals.append(refused.reason or str(refused.code))

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, refusals


def test_racing_withdrawals_never_overdraw(market: MarketHarness) -> None:
    alice = market.funded_account("alice.theblock", block=10)
    params = {"amount_micro_block": BLOCK, "destination": "0xalice-wallet"}
    results, refusals = race(
        [lambda: market.client.call("energy.withdraw", params, alice)] * RACERS
    )
    assert len(results) == 10
    assert set(refusals) == {"insufficient_balance"}
    totals = market.audit()
    assert totals.balances == 0 and totals.withdrawals == 10 * BLOCK
    assert totals.held == totals.deposits - totals.withdrawals


def test_one_meter_address_is_registered_once(market: MarketHarness) -> None:
    owners = [market.funded_account(f"owner{n}.theblock", block=1_000) for n in range(6)]
    calls = [
        (
            lambda owner=owner: market.client.call(
                "energy.registerProvider",
                registration_params(
                    owner.account, meter_address="contested_meter", stake=1_000 * BLOCK
                ),
                owner,
            )
        )
        for owner in owners
    ]
    results, refusals = race(calls)
    assert len(results) == 1
    assert set(refusals) <= {"already_exists", "concurrent_update"}
    totals = market.audit()
    assert totals.stakes == 1_000 * BLOCK
    assert totals.held == totals.deposits


def test_racing_stake_top_ups_lose_no_update(market: MarketHarness) -> None:
    alice = market.funded_account("alice.theblock", block=2_000)
    pid = market.provider(alice, stake=1_000 * BLOCK)["provider_id"]
    top_up = {"provider_id": pid, "amount_micro_block": BLOCK}
    results, refusals = race([lambda: market.client.call("energy.topUpStake", top_up, alice)] * 8)
    # Conflicting writers retry; any that exhausted its retries changed nothing.
    assert set(refusals) <= {"concurrent_update"}
    provider = market.client.call("energy.getProvider", {"provider_id": pid})
    assert provider["stake"] == (1_000 + len(results)) * BLOCK
    account = market.client.call("energy.getAccount", {"name": alice.account})
    assert account["balance"] == (1_000 - len(results)) * BLOCK


def test_concurrent_role_changes_all_take_effect(market: MarketHarness) -> None:
    alice = market.funded_account("alice.theblock", block=1_000)
    role = {"account": "alice.theblock", "role": "validator"}
    registration = registration_params("alice.theblock", stake=1_000 * BLOCK)
    results, refusals = race(
        [
            lambda: market.client.call("energy.grantRole", role, market.operator),
            lambda: market.client.call("energy.registerProvider", registration, alice),
        ]
    )
    assert (len(results), refusals) == (2, [])
    account = market.client.call("energy.getAccount", {"name": "alice.theblock"})
    assert account["roles"] == ["buyer", "provider", "validator"]


def test_racing_buyers_never_buy_more_than_is_on_sale(market: MarketHarness) -> None:
    """12 buyers race for 3 kWh each; 20 kWh are on sale in 8 credits."""
    from tests.support import selling_provider

    meter = selling_provider(market, [2_500] * 8)
    buyers = [market.funded_account(f"buyer{n}.theblock", block=10) for n in range(12)]
    order = {"provider_id": meter.provider_id, "kwh_amount": 3, "max_price_per_kwh": "0.10"}

    def buyer_buys(buyer: Signer) -> Callable[[], Any]:
        return lambda: market.client.call("energy.purchaseEnergy", order, buyer)

    results, refusals = race([buyer_buys(buyer) for buyer in buyers])
    assert len(results) <= 6  # 6 x 3 kWh fit in 20 kWh; a 7th does not
    assert set(refusals) <= {"insufficient_energy", "concurrent_update"}
    # A buyer told `concurrent_update` (it lost the race four times) may simply
    # try again; sequentially, every such retry is now decided.
    bought = {r["buyer"] for r in results}
    for buyer in buyers:
        if buyer.account not in bought:
            try:
                results.append(market.client.call("energy.purchaseEnergy", order, buyer))
            except RpcError as refused:
                reason = refused.reason
            else:
                continue
            assert reason == "insufficient_energy"
    assert len(results) == 6
    totals = market.audit()
    assert totals.reserved_wh == 18_000
    assert totals.available_wh == 2_000
    assert totals.minted_wh == totals.available_wh + totals.reserved_wh
    assert totals.escrow == sum(r["total_cost_micro_block"] for r in results)
    assert totals.held == totals.deposits - totals.withdrawals
    reserved = [c for r in results for c in r["credit_ids"]]
    assert len(reserved) == len(set(reserved))  # no credit reserved twice


def test_racing_settlements_settle_each_purchase_once(market: MarketHarness) -> None:
    """Buyers settling early race four settlement job runs over the same purchases."""
    from chalicelib.services.settlement import run_settlement
    from energy_client.rpc_client import unwrap
    from tests.support import assert_conserved, buy, selling_provider

    meter = selling_provider(market, [1_000] * 6)
    buyers = [market.funded_account(f"buyer{n}.theblock", block=10) for n in range(6)]
    purchases = [buy(market, buyer, meter.provider_id, 1) for buyer in buyers]
    market.clock.now = max(p["settles_at_ms"] for p in purchases) // 1000 + 1
    # Signed now, sent in the race: each buyer's settle of its own purchase.
    requests = [
        market.client.request("energy.settle", {"transaction_id": p["transaction_id"]}, buyer)
        for p, buyer in zip(purchases, buyers, strict=True)
    ]

    def settles(request: dict[str, Any]) -> Callable[[], Any]:
        return lambda: unwrap(market.client.send(request))

    def job() -> Any:
        return run_settlement(market.deps)

    results, refusals = race([settles(r) for r in requests] + [job] * 4)
    assert set(refusals) <= {"concurrent_update"}
    runs = [r for r in results if not isinstance(r, dict)]
    answers = [r for r in results if isinstance(r, dict)]
    # Every purchase settled exactly once, by a buyer or by one of the runs.
    assert sum(run.done for run in runs) + sum(not a["already_settled"] for a in answers) == 6
    totals = assert_conserved(market)
    assert (totals.settled, totals.receipts, totals.escrow) == (6, 6, 0)
    chain = market.client.call("energy.getReceipts", {"provider_id": meter.provider_id})
    assert [r["sequence"] for r in chain["receipts"]] == [1, 2, 3, 4, 5, 6]
    assert len({r["transaction_id"] for r in chain["receipts"]}) == 6


def test_racing_resolvers_slash_once(
    market: MarketHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A decided dispute that many resolvers (the job, anyone's resolveDispute)
    race to resolve is slashed, refunded and receipted exactly once."""
    meter = selling_provider(market, [5_000, 5_000])
    judges = {s.account: s for s in validators(market, *(f"val-{n}.theblock" for n in range(5)))}
    bob = market.funded_account("bob.theblock", block=100)
    carol = market.funded_account("carol.theblock", block=100)
    bought = market.client.call(
        "energy.purchaseEnergy",
        {"provider_id": meter.provider_id, "kwh_amount": 2, "max_price_per_kwh": "0.10"},
        bob,
    )
    market.client.call("energy.settle", {"transaction_id": bought["transaction_id"]}, bob)
    dispute = flag(market, carol, credit_id=bought["credit_ids"][0])
    # The deciding vote leaves the resolution to the racers.
    monkeypatch.setattr(resolution, "DEFAULT_STEPS", 0)
    for judge in dispute["panel"][:3]:
        params = {"dispute_id": dispute["dispute_id"], "verdict": "guilty", "severity": "minor"}
        market.client.call("energy.voteOnDispute", params, judges[judge])
    monkeypatch.setattr(resolution, "DEFAULT_STEPS", 50)
    ref = {"dispute_id": dispute["dispute_id"]}

    results, refusals = race([lambda: market.client.call("energy.resolveDispute", ref)] * 8)
    market.client.call("energy.resolveDispute", ref)  # finishes what a loser left

    assert refusals == [] and len(results) == 8
    resolved = market.client.call("energy.getDispute", ref)
    assert resolved["status"] == "guilty"
    provider = market.client.call("energy.getProvider", {"provider_id": meter.provider_id})
    assert provider["stake"] == 10_000 * BLOCK - 1_000 * BLOCK
    assert market.client.call("energy.getAccount", {"name": "bob.theblock"})["balance"] == (
        100 * BLOCK
    )
    head = market.uow().receipts.head(slash_chain(meter.provider_id))
    assert head is not None and head.sequence == 1
    assert_conserved(market)


def test_racing_identical_retries_all_get_the_first_answer(market: MarketHarness) -> None:
    # The first answers were lost; the client's retries of one signed request race.
    meter = selling_provider(market, [5_000, 5_000])
    bob = market.funded_account("bob.theblock", block=100)
    purchase = market.client.request(
        "energy.purchaseEnergy",
        {"provider_id": meter.provider_id, "kwh_amount": 2, "max_price_per_kwh": "0.10"},
        bob,
    )
    withdrawal = market.client.request(
        "energy.withdraw", {"amount_micro_block": BLOCK, "destination": "0xbob-wallet"}, bob
    )
    for request in (purchase, withdrawal):

        def send(sent: dict[str, Any] = request) -> Any:
            return market.client.send(sent)

        answers, refusals = race([send] * 8)
        assert refusals == [] and len(answers) == 8
        assert all(answer == answers[0] for answer in answers), answers
        assert "result" in answers[0], answers[0]
    totals = assert_conserved(market)
    assert totals.withdrawals == BLOCK  # withdrawn once
    assert totals.escrow == 160_000  # 2 kWh at 0.08 BLOCK, bought once
    assert totals.balances == (100 - 1) * BLOCK - 160_000 + (20_000 - 10_000) * BLOCK
