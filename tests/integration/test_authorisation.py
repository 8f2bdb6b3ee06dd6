"""Every signed method refuses forged, misdirected, replayed and stale calls,
and each refusal changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from chalicelib.rpc.methods import registry
from energy_client.rpc_client import RpcError, Signer, unwrap
from tests.support import (
    BLOCK,
    MarketHarness,
    flag,
    registration_params,
    selling_provider,
    validators,
)


@dataclass
class Scenario:
    params: dict[str, Any]
    signer: Signer  # the account the call acts for
    impostor: Signer | None  # a genuine other account that may not do this


def _alice_with_provider(market: MarketHarness) -> tuple[Signer, str]:
    alice = market.funded_account("alice.theblock", block=20_000)
    return alice, market.provider(alice)["provider_id"]


def create_account(market: MarketHarness) -> Scenario:
    new = Signer.generate("newcomer.theblock")
    return Scenario({"name": new.account, "public_key": new.public_key}, new, None)


def deposit(market: MarketHarness) -> Scenario:
    alice = market.funded_account("alice.theblock")
    return Scenario(
        {
            "account": "alice.theblock",
            "amount_micro_block": BLOCK,
            "chain_tx": "0xscenario-deposit",
        },
        market.operator,
        alice,
    )


def grant_role(market: MarketHarness) -> Scenario:
    alice = market.funded_account("alice.theblock")
    return Scenario({"account": "alice.theblock", "role": "validator"}, market.operator, alice)


def revoke_role(market: MarketHarness) -> Scenario:
    alice = market.funded_account("alice.theblock")
    market.client.call(
        "energy.grantRole", {"account": "alice.theblock", "role": "validator"}, market.operator
    )
    return Scenario({"account": "alice.theblock", "role": "validator"}, market.operator, alice)


def purchase_energy(market: MarketHarness) -> Scenario:
    meter = selling_provider(market, [5_000, 5_000])
    bob = market.funded_account("bob.theblock", block=100)
    params = {"provider_id": meter.provider_id, "kwh_amount": 2, "max_price_per_kwh": "0.10"}
    return Scenario(params, bob, None)


def _bob_bought(market: MarketHarness) -> tuple[Signer, dict[str, Any]]:
    meter = selling_provider(market, [5_000, 5_000])
    bob = market.funded_account("bob.theblock", block=100)
    purchase = market.client.call(
        "energy.purchaseEnergy",
        {"provider_id": meter.provider_id, "kwh_amount": 2, "max_price_per_kwh": "0.10"},
        bob,
    )
    return bob, purchase


def settle(market: MarketHarness) -> Scenario:
    bob, purchase = _bob_bought(market)
    carol = market.funded_account("carol.theblock")
    return Scenario({"transaction_id": purchase["transaction_id"]}, bob, carol)


def retire_credits(market: MarketHarness) -> Scenario:
    bob, purchase = _bob_bought(market)
    market.client.call("energy.settle", {"transaction_id": purchase["transaction_id"]}, bob)
    carol = market.funded_account("carol.theblock")
    params = {
        "credit_ids": purchase["credit_ids"],
        "beneficiary": "Bob's Bakery Ltd",
        "reporting_period_start_ms": 1_767_225_600_000,
        "reporting_period_end_ms": 1_798_761_600_000,
    }
    return Scenario(params, bob, carol)


def withdraw(market: MarketHarness) -> Scenario:
    alice = market.funded_account("alice.theblock", block=10)
    return Scenario({"amount_micro_block": BLOCK, "destination": "0xalice-wallet"}, alice, None)


def register_provider(market: MarketHarness) -> Scenario:
    alice = market.funded_account("alice.theblock", block=20_000)
    bob = market.funded_account("bob.theblock", block=20_000)
    return Scenario(registration_params("alice.theblock"), alice, bob)


def update_provider(market: MarketHarness) -> Scenario:
    alice, pid = _alice_with_provider(market)
    bob = market.funded_account("bob.theblock")
    return Scenario({"provider_id": pid, "updates": {"price_per_kwh": 0.09}}, alice, bob)


def top_up_stake(market: MarketHarness) -> Scenario:
    alice, pid = _alice_with_provider(market)
    bob = market.funded_account("bob.theblock", block=5_000)
    return Scenario({"provider_id": pid, "amount_micro_block": BLOCK}, alice, bob)


def withdraw_stake(market: MarketHarness) -> Scenario:
    alice, pid = _alice_with_provider(market)
    bob = market.funded_account("bob.theblock")
    return Scenario({"provider_id": pid, "amount_micro_block": BLOCK}, alice, bob)


def flag_dispute(market: MarketHarness) -> Scenario:
    meter = selling_provider(market, [5_000])
    validators(market, "val-1.theblock", "val-2.theblock", "val-3.theblock")
    carol = market.funded_account("carol.theblock", block=100)
    credit_id = market.client.call("energy.getCredits", {"provider_id": meter.provider_id})[
        "credits"
    ][0]["credit_id"]
    return Scenario({"credit_id": credit_id, "reason": "output at night"}, carol, None)


def vote_on_dispute(market: MarketHarness) -> Scenario:
    meter = selling_provider(market, [5_000])
    judges = validators(market, "val-1.theblock", "val-2.theblock", "val-3.theblock")
    carol = market.funded_account("carol.theblock", block=100)
    credit_id = market.client.call("energy.getCredits", {"provider_id": meter.provider_id})[
        "credits"
    ][0]["credit_id"]
    dispute = flag(market, carol, credit_id=credit_id)
    judge = next(j for j in judges if j.account == dispute["panel"][0])
    params = {"dispute_id": dispute["dispute_id"], "verdict": "guilty", "severity": "major"}
    return Scenario(params, judge, None)


def stake_as_validator(market: MarketHarness) -> Scenario:
    victor = market.funded_account("victor.theblock", block=2_000)
    market.client.call(
        "energy.grantRole", {"account": "victor.theblock", "role": "validator"}, market.operator
    )
    return Scenario({"amount_micro_block": 1_000 * BLOCK}, victor, None)


def withdraw_validator_stake(market: MarketHarness) -> Scenario:
    victor = validators(market, "victor.theblock")[0]
    return Scenario({"amount_micro_block": BLOCK}, victor, None)


SCENARIOS: dict[str, Callable[[MarketHarness], Scenario]] = {
    "energy.createAccount": create_account,
    "energy.deposit": deposit,
    "energy.withdraw": withdraw,
    "energy.purchaseEnergy": purchase_energy,
    "energy.grantRole": grant_role,
    "energy.revokeRole": revoke_role,
    "energy.registerProvider": register_provider,
    "energy.updateProvider": update_provider,
    "energy.topUpStake": top_up_stake,
    "energy.withdrawStake": withdraw_stake,
    "energy.settle": settle,
    "energy.retireCredits": retire_credits,
    "energy.flagDispute": flag_dispute,
    "energy.voteOnDispute": vote_on_dispute,
    "energy.stakeAsValidator": stake_as_validator,
    "energy.withdrawValidatorStake": withdraw_validator_stake,
}


def test_every_signed_method_has_a_scenario() -> None:
    assert {m.name for m in registry if m.signed} == set(SCENARIOS)


def _refused(market: MarketHarness, request: dict[str, Any]) -> RpcError:
    before = market.snapshot()
    with pytest.raises(RpcError) as refused:
        unwrap(market.client.send(request))
    assert market.snapshot() == before, "a refused call changed something"
    return refused.value


@pytest.mark.parametrize("method", sorted(SCENARIOS))
def test_a_bad_signature_is_refused(market: MarketHarness, method: str) -> None:
    scenario = SCENARIOS[method](market)
    request = market.client.request(method, scenario.params, scenario.signer)
    signature = request["params"]["auth"]["signature"]
    request["params"]["auth"]["signature"] = ("0" if signature[0] != "0" else "1") + signature[1:]
    assert _refused(market, request).reason == "not_authenticated"


@pytest.mark.parametrize("method", sorted(SCENARIOS))
def test_a_signature_by_another_key_is_refused(market: MarketHarness, method: str) -> None:
    scenario = SCENARIOS[method](market)
    forger = Signer.generate(scenario.signer.account)  # claims the name, lacks the key
    request = market.client.request(method, scenario.params, forger)
    assert _refused(market, request).reason == "not_authenticated"


# These act for their signer by definition: there is no one else to act for.
ACTING_FOR_THE_SIGNER = (
    "energy.createAccount",
    "energy.withdraw",
    "energy.purchaseEnergy",
    "energy.flagDispute",
    "energy.voteOnDispute",
    "energy.stakeAsValidator",
    "energy.withdrawValidatorStake",
)


@pytest.mark.parametrize("method", sorted(m for m in SCENARIOS if m not in ACTING_FOR_THE_SIGNER))
def test_a_genuine_signer_acting_for_someone_else_is_refused(
    market: MarketHarness, method: str
) -> None:
    scenario = SCENARIOS[method](market)
    assert scenario.impostor is not None
    request = market.client.request(method, scenario.params, scenario.impostor)
    assert _refused(market, request).reason == "not_authorised"


TAMPERINGS: dict[str, Any] = {
    "kwh_amount": 3,
    "amount_micro_block": 2 * BLOCK,
    "price_per_kwh": 0.01,
    "public_key": Signer.generate("other").public_key,
    "updates": {"price_per_kwh": 0.01},
    "account": "mallory.theblock",
    "transaction_id": "pur-" + "0" * 32,
    "beneficiary": "Mallory Holdings",
    "reason": "Mallory says so",
    "severity": "critical",
}


@pytest.mark.parametrize("method", sorted(SCENARIOS))
@pytest.mark.parametrize("part", ["params", "timestamp", "nonce"])
def test_a_signature_covers_params_method_nonce_and_time(
    market: MarketHarness, method: str, part: str
) -> None:
    scenario = SCENARIOS[method](market)
    request = market.client.request(method, scenario.params, scenario.signer)
    params, auth = request["params"], request["params"]["auth"]
    if part == "params":
        key = next(k for k in TAMPERINGS if k in params)
        params[key] = TAMPERINGS[key]
    elif part == "timestamp":
        auth["timestamp"] += 1
    else:
        auth["nonce"] = "another-nonce-00000001"
    assert _refused(market, request).reason == "not_authenticated"


def test_a_signature_is_bound_to_its_method(market: MarketHarness) -> None:
    scenario = top_up_stake(market)
    request = market.client.request("energy.topUpStake", scenario.params, scenario.signer)
    request["method"] = "energy.withdrawStake"  # accepts the very same params
    assert _refused(market, request).reason == "not_authenticated"


@pytest.mark.parametrize("method", sorted(SCENARIOS))
def test_a_retried_request_gets_the_first_answer_and_changes_nothing(
    market: MarketHarness, method: str
) -> None:
    # The answer to the first request was lost: the client sends it again.
    scenario = SCENARIOS[method](market)
    request = market.client.request(method, scenario.params, scenario.signer)
    first = market.client.send(request)
    assert "result" in first, first
    after_first = market.snapshot()
    market.clock.now += 60  # later, inside the signature window
    assert market.client.send(request) == first
    assert market.client.send(request) == first
    assert market.snapshot() == after_first


@pytest.mark.parametrize("method", sorted(SCENARIOS))
def test_a_retry_signed_again_with_the_same_nonce_gets_the_first_answer(
    market: MarketHarness, method: str
) -> None:
    # A client that signs its retry afresh (a new timestamp) keeps nonce and params.
    scenario = SCENARIOS[method](market)
    nonce = "retry-nonce-000000000001"
    signed = market.client.signed_params(method, scenario.params, scenario.signer, nonce=nonce)
    first = unwrap(
        market.client.send({"jsonrpc": "2.0", "id": 1, "method": method, "params": signed})
    )
    market.clock.now += 30
    again = market.client.signed_params(method, scenario.params, scenario.signer, nonce=nonce)
    assert again["auth"]["timestamp"] != signed["auth"]["timestamp"]
    answer = unwrap(
        market.client.send({"jsonrpc": "2.0", "id": 2, "method": method, "params": again})
    )
    assert answer == first


# Other params, still valid and signed by the same signer (createAccount's signer
# is the key it registers, so it changes the name it asks for).
OTHER_PARAMS: dict[str, dict[str, Any]] = {
    "energy.createAccount": {"name": "newcomer-two.theblock"},
}


@pytest.mark.parametrize("method", sorted(SCENARIOS))
def test_the_same_nonce_with_other_params_is_a_replay(market: MarketHarness, method: str) -> None:
    scenario = SCENARIOS[method](market)
    nonce = "reused-nonce-00000000001"
    signed = market.client.signed_params(method, scenario.params, scenario.signer, nonce=nonce)
    unwrap(market.client.send({"jsonrpc": "2.0", "id": 1, "method": method, "params": signed}))
    key = next(k for k in TAMPERINGS if k in scenario.params)
    other = {**scenario.params, **OTHER_PARAMS.get(method, {key: TAMPERINGS[key]})}
    resigned = market.client.signed_params(method, other, scenario.signer, nonce=nonce)
    request = {"jsonrpc": "2.0", "id": 2, "method": method, "params": resigned}
    assert _refused(market, request).reason == "replayed_request"


@pytest.mark.parametrize("method", sorted(SCENARIOS))
@pytest.mark.parametrize("skew", [-301, 301])
def test_a_stale_request_is_refused(market: MarketHarness, method: str, skew: int) -> None:
    scenario = SCENARIOS[method](market)
    signed = market.client.signed_params(
        method, scenario.params, scenario.signer, timestamp=market.clock.now + skew
    )
    request = {"jsonrpc": "2.0", "id": 1, "method": method, "params": signed}
    error = _refused(market, request)
    assert error.reason == "stale_request"
    assert error.data["server_time"] == market.clock.now


def test_a_signature_for_another_marketplace_is_refused(market: MarketHarness) -> None:
    scenario = withdraw(market)
    market.client.marketplace_id = "energy-marketplace-prod"
    request = market.client.request("energy.withdraw", scenario.params, scenario.signer)
    assert _refused(market, request).reason == "not_authenticated"


def test_an_unsigned_mutating_call_is_invalid_params(market: MarketHarness) -> None:
    request = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "energy.withdraw",
        "params": {"amount_micro_block": 1, "destination": "0xwallet"},
    }
    error = _refused(market, request)
    assert error.code == -32602
    assert error.data["errors"][0]["field"] == "auth"


def test_nonces_are_per_account(market: MarketHarness) -> None:
    alice = market.funded_account("alice.theblock", block=10)
    bob = market.funded_account("bob.theblock", block=10)
    params = {"amount_micro_block": BLOCK, "destination": "0xwallet"}
    for signer in (alice, bob):
        signed = market.client.signed_params(
            "energy.withdraw", params, signer, nonce="shared-nonce-000000001"
        )
        result = unwrap(
            market.client.send(
                {"jsonrpc": "2.0", "id": 1, "method": "energy.withdraw", "params": signed}
            )
        )
        assert result["balance"] == 9 * BLOCK
