"""BLOCK is conserved over any sequence of operations, including refused ones:

    balances + stakes + treasury == deposits - withdrawals

A Hypothesis state machine drives the API with random, often invalid,
operations, and after every step sums the money straight from storage. It
also keeps its own model of every balance and stake and checks them.
"""

from __future__ import annotations

import os
from decimal import Decimal
from typing import Any

import boto3
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from moto import mock_aws

from chalicelib.domain.errors import (
    AlreadyExists,
    InsufficientBalance,
    InsufficientEnergy,
    InsufficientStake,
    NotAuthenticated,
    NotAuthorised,
    NotFound,
    PriceAboveLimit,
)
from chalicelib.domain.providers import MIN_STAKE_MICRO_BLOCK
from energy_client.rpc_client import RpcError, Signer
from infra.emulation import create_tables
from tests.support import (
    BLOCK,
    MarketHarness,
    dynamodb_market,
    memory_market,
    registration_params,
    selling_provider,
    tables_from_environment,
)

INVALID_PARAMS = -32602
# selling_provider's price, 0.08 BLOCK per kWh: a whole Wh costs exactly 80 micro-BLOCK.
SELLER_PRICE_MICRO_BLOCK_PER_KWH = 80_000
# What a refused registration leaves in the bundle: later rules use it as a missing provider.
NO_SUCH_PROVIDER = "energy-0x0000000000000000"

NAMES = ["alice.theblock", "bob.theblock", "carol.theblock"]
amounts = st.one_of(st.integers(0, 3_000), st.sampled_from([999, 1_000, 1_001])).map(
    lambda block: block * BLOCK
) | st.integers(1, 10**6)


class LedgerMachine(RuleBasedStateMachine):
    providers = Bundle("providers")

    def __init__(self) -> None:
        super().__init__()
        self.market = self.build_market()
        self.signers: dict[str, Signer] = {}
        self.balances: dict[str, int] = {}
        self.stakes: dict[str, int] = {}
        self.owners: dict[str, str] = {}
        self.deposited = 0
        self.withdrawn = 0
        self.chain_txs = 0
        self.credited_txs: set[str] = set()
        self.meters = 0
        self.on_sale_wh = 8_000

    def build_market(self) -> MarketHarness:
        return memory_market()

    def attempt(
        self, method: str, params: dict[str, Any], signer: Signer, refusal: int | None
    ) -> Any:
        """Call ``method``; the model predicts its outcome: success, or the exact error code."""
        try:
            result = self.market.client.call(method, params, signer)
        except RpcError as refused:
            code, data = refused.code, refused.data
        else:
            assert refusal is None, (method, params, "succeeded; the model expected", refusal)
            return result
        assert code == refusal, (method, params, code, data)
        return None

    @initialize()
    def open_accounts(self) -> None:
        for name in NAMES:
            signer = Signer.generate(name)
            self.market.client.create_account(signer)
            self.signers[name] = signer
            self.balances[name] = 0
        # A provider outside the model's accounts, with energy on sale.
        self.seller = selling_provider(self.market, [1_500, 2_500, 4_000])
        self.deposited += 20_000 * BLOCK  # the seller's funding

    @rule(
        name=st.sampled_from(NAMES),
        wh=st.integers(1, 9_000),
        max_price=st.sampled_from(["0.05", "0.08", "1"]),
    )
    def purchase(self, name: str, wh: int, max_price: str) -> None:
        params = {
            "provider_id": self.seller.provider_id,
            "kwh_amount": Decimal(wh) / 1000,
            "max_price_per_kwh": max_price,
        }
        cost = wh * SELLER_PRICE_MICRO_BLOCK_PER_KWH // 1000  # exact at this price
        if Decimal(max_price) * BLOCK < SELLER_PRICE_MICRO_BLOCK_PER_KWH:
            refusal: int | None = PriceAboveLimit.code
        elif wh > self.on_sale_wh:
            refusal = InsufficientEnergy.code
        elif cost > self.balances[name]:
            refusal = InsufficientBalance.code
        else:
            refusal = None
        result = self.attempt("energy.purchaseEnergy", params, self.signers[name], refusal)
        if result is not None:
            assert result["total_cost_micro_block"] == cost
            self.balances[name] -= cost
            self.on_sale_wh -= wh

    @rule(name=st.sampled_from([*NAMES, "nobody.theblock"]), amount=amounts, reuse_tx=st.booleans())
    def deposit(self, name: str, amount: int, reuse_tx: bool) -> None:
        if not reuse_tx or self.chain_txs == 0:
            self.chain_txs += 1
        chain_tx = f"0xtx-{self.chain_txs}"
        params = {"account": name, "amount_micro_block": amount, "chain_tx": chain_tx}
        if amount == 0:
            refusal: int | None = INVALID_PARAMS
        elif name not in self.balances:
            refusal = NotFound.code
        elif chain_tx in self.credited_txs:
            refusal = AlreadyExists.code
        else:
            refusal = None
        if self.attempt("energy.deposit", params, self.market.operator, refusal) is not None:
            self.credited_txs.add(chain_tx)
            self.balances[name] += amount
            self.deposited += amount

    @rule(name=st.sampled_from(NAMES), amount=amounts)
    def withdraw(self, name: str, amount: int) -> None:
        params = {"amount_micro_block": amount, "destination": "0xwallet"}
        if amount == 0:
            refusal: int | None = INVALID_PARAMS
        elif amount > self.balances[name]:
            refusal = InsufficientBalance.code
        else:
            refusal = None
        if self.attempt("energy.withdraw", params, self.signers[name], refusal) is not None:
            self.balances[name] -= amount
            self.withdrawn += amount

    @rule(target=providers, name=st.sampled_from(NAMES), stake=amounts)
    def register(self, name: str, stake: int) -> str:
        self.meters += 1
        params = registration_params(name, stake=stake, meter_address=f"meter_{self.meters}")
        if stake < MIN_STAKE_MICRO_BLOCK:
            refusal: int | None = InsufficientStake.code
        elif stake > self.balances[name]:
            refusal = InsufficientBalance.code
        else:
            refusal = None
        result = self.attempt("energy.registerProvider", params, self.signers[name], refusal)
        if result is None:
            return NO_SUCH_PROVIDER
        self.balances[name] -= stake
        self.stakes[result["provider_id"]] = stake
        self.owners[result["provider_id"]] = name
        return str(result["provider_id"])

    @rule(provider=providers, amount=amounts, as_owner=st.booleans())
    def top_up(self, provider: str, amount: int, as_owner: bool) -> None:
        owner = self.owners.get(provider, NAMES[0])
        signer = self.signers[owner if as_owner else NAMES[(NAMES.index(owner) + 1) % 3]]
        params = {"provider_id": provider, "amount_micro_block": amount}
        if amount == 0:
            refusal: int | None = INVALID_PARAMS
        elif provider == NO_SUCH_PROVIDER:
            refusal = NotFound.code
        elif not as_owner:
            refusal = NotAuthorised.code
        elif amount > self.balances[owner]:
            refusal = InsufficientBalance.code
        else:
            refusal = None
        if self.attempt("energy.topUpStake", params, signer, refusal) is not None:
            self.balances[owner] -= amount
            self.stakes[provider] += amount

    @rule(provider=providers, amount=amounts)
    def unstake(self, provider: str, amount: int) -> None:
        owner = self.owners.get(provider, NAMES[0])
        params = {"provider_id": provider, "amount_micro_block": amount}
        if amount == 0:
            refusal: int | None = INVALID_PARAMS
        elif provider == NO_SUCH_PROVIDER:
            refusal = NotFound.code
        elif amount > self.stakes[provider]:
            refusal = InsufficientStake.code
        else:
            refusal = None  # below the minimum stake it suspends the provider
        if self.attempt("energy.withdrawStake", params, self.signers[owner], refusal) is not None:
            self.balances[owner] += amount
            self.stakes[provider] -= amount

    @rule(name=st.sampled_from(NAMES), amount=amounts)
    def forged_withdrawal(self, name: str, amount: int) -> None:
        forger = Signer.generate(name)
        params = {"amount_micro_block": amount, "destination": "0xthief"}
        # Parameters are validated before the signature is checked.
        refusal = INVALID_PARAMS if amount == 0 else NotAuthenticated.code
        assert self.attempt("energy.withdraw", params, forger, refusal) is None

    @invariant()
    def block_is_conserved(self) -> None:
        totals = self.market.audit()
        assert totals.deposits == self.deposited
        assert totals.withdrawals == self.withdrawn
        assert totals.held == totals.deposits - totals.withdrawals

    @invariant()
    def wh_is_conserved(self) -> None:
        totals = self.market.audit()
        assert totals.minted_wh == totals.available_wh + totals.reserved_wh == 8_000

    @invariant()
    def every_balance_and_stake_is_what_the_model_says(self) -> None:
        for name in NAMES:
            account = self.market.client.call("energy.getAccount", {"name": name})
            assert account["balance"] == self.balances[name] >= 0
        for provider, stake in self.stakes.items():
            found = self.market.client.call("energy.getProvider", {"provider_id": provider})
            assert found["stake"] == stake


def test_block_is_conserved_in_memory() -> None:
    run_state_machine_as_test(LedgerMachine)


class DynamoLedgerMachine(LedgerMachine):
    def build_market(self) -> MarketHarness:
        self._mock = mock_aws()
        self._mock.start()
        client = boto3.client("dynamodb", region_name="us-east-1")
        tables = tables_from_environment(create_tables(client, "energy-marketplace-prop"))
        return dynamodb_market(client, tables)

    def teardown(self) -> None:
        self._mock.stop()


def test_block_is_conserved_on_dynamodb(aws_credentials: None) -> None:
    examples = 25 if os.environ.get("CI") else 10
    run_state_machine_as_test(
        DynamoLedgerMachine,
        settings=settings(max_examples=examples, stateful_step_count=15, deadline=None),
    )
