"""Accounts, deposits and withdrawals, on both storage adapters."""

from __future__ import annotations

import pytest

from energy_client.rpc_client import RpcError, Signer
from tests.support import BLOCK, MarketHarness


def test_a_new_account_is_a_buyer_with_nothing(market: MarketHarness) -> None:
    alice = Signer.generate("alice.theblock")
    created = market.client.create_account(alice)
    assert created["roles"] == ["buyer"]
    assert created["balance"] == 0
    fetched = market.client.call("energy.getAccount", {"name": "alice.theblock"})
    assert fetched["public_key"] == alice.public_key


def test_an_account_name_is_taken_once(market: MarketHarness) -> None:
    market.funded_account("alice.theblock")
    before = market.snapshot()
    with pytest.raises(RpcError) as refused:
        market.client.create_account(Signer.generate("alice.theblock"))
    assert refused.value.reason == "already_exists"
    assert market.snapshot() == before


def test_create_account_must_be_signed_by_the_key_it_registers(market: MarketHarness) -> None:
    mallory = Signer.generate("alice.theblock")
    params = {"name": "alice.theblock", "public_key": Signer.generate("x").public_key}
    before = market.snapshot()
    with pytest.raises(RpcError) as refused:
        market.client.call("energy.createAccount", params, mallory)
    assert refused.value.code == 1001
    assert market.snapshot() == before


def test_the_operator_name_cannot_be_registered(market: MarketHarness) -> None:
    with pytest.raises(RpcError) as refused:
        market.client.create_account(Signer.generate("operator"))
    assert refused.value.reason == "invalid_state"


def test_deposit_credits_once_per_chain_transaction(market: MarketHarness) -> None:
    market.funded_account("bob.theblock")
    result = market.client.deposit(market.operator, "bob.theblock", 5 * BLOCK, "0xchain-tx-1")
    assert result == {"account": "bob.theblock", "balance": 5 * BLOCK}
    before = market.snapshot()
    with pytest.raises(RpcError) as refused:
        market.client.deposit(market.operator, "bob.theblock", 5 * BLOCK, "0xchain-tx-1")
    assert refused.value.reason == "already_exists"
    assert market.snapshot() == before


def test_only_the_operator_records_deposits(market: MarketHarness) -> None:
    bob = market.funded_account("bob.theblock")
    before = market.snapshot()
    with pytest.raises(RpcError) as refused:
        market.client.deposit(bob, "bob.theblock", 5 * BLOCK, "0xchain-tx-2")
    assert refused.value.reason == "not_authorised"
    assert market.snapshot() == before


def test_deposit_to_an_unknown_account_is_refused(market: MarketHarness) -> None:
    before = market.snapshot()
    with pytest.raises(RpcError) as refused:
        market.client.deposit(market.operator, "nobody.theblock", BLOCK, "0xchain-tx-3")
    assert refused.value.reason == "not_found"
    assert market.snapshot() == before


def test_withdraw_spends_the_balance_and_never_overdraws(market: MarketHarness) -> None:
    carol = market.funded_account("carol.theblock", block=10)
    params = {"amount_micro_block": 4 * BLOCK, "destination": "0xcarol-wallet"}
    assert market.client.call("energy.withdraw", params, carol)["balance"] == 6 * BLOCK
    before = market.snapshot()
    with pytest.raises(RpcError) as refused:
        market.client.call("energy.withdraw", {**params, "amount_micro_block": 7 * BLOCK}, carol)
    assert refused.value.reason == "insufficient_balance"
    assert refused.value.data["available_micro_block"] == 6 * BLOCK
    assert market.snapshot() == before


def test_ledger_entries_list_an_accounts_movements_in_pages(market: MarketHarness) -> None:
    dave = market.funded_account("dave.theblock")
    for n in range(5):
        market.clock.now += 1
        market.client.deposit(market.operator, "dave.theblock", (n + 1) * BLOCK, f"0xtx-{n}")
    market.client.call(
        "energy.withdraw", {"amount_micro_block": BLOCK, "destination": "0xdave"}, dave
    )
    seen, cursor = [], None
    while True:
        page = market.client.call(
            "energy.getLedgerEntries", {"account": "dave.theblock", "limit": 2, "cursor": cursor}
        )
        seen.extend(page["entries"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [e["kind"] for e in seen] == ["deposit"] * 5 + ["withdrawal"]
    assert [e["amount_micro_block"] for e in seen[:5]] == [n * BLOCK for n in range(1, 6)]


def test_the_operator_grants_and_revokes_the_validator_role(market: MarketHarness) -> None:
    market.funded_account("val.theblock")
    role = {"account": "val.theblock", "role": "validator"}
    granted = market.client.call("energy.grantRole", role, market.operator)
    assert granted["roles"] == ["buyer", "validator"]
    revoked = market.client.call("energy.revokeRole", role, market.operator)
    assert revoked["roles"] == ["buyer"]


def test_roles_that_follow_from_activity_cannot_be_granted(market: MarketHarness) -> None:
    market.funded_account("val.theblock")
    before = market.snapshot()
    with pytest.raises(RpcError) as refused:
        market.client.call(
            "energy.grantRole", {"account": "val.theblock", "role": "provider"}, market.operator
        )
    assert refused.value.code == -32602
    assert market.snapshot() == before
