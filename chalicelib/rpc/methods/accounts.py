"""Account and ledger methods: open an account, move BLOCK in and out, roles, history."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import Field

from chalicelib.domain import units
from chalicelib.domain.accounts import Account, Role
from chalicelib.domain.errors import (
    AlreadyExists,
    InsufficientBalance,
    InsufficientStake,
    InvalidState,
    NotAuthorised,
    NotFound,
    OpenObligations,
)
from chalicelib.domain.ledger import LedgerEntry
from chalicelib.domain.providers import Provider
from chalicelib.rpc.methods.common import AUTH_ERRORS, registry, signed_call
from chalicelib.rpc.methods.fields import (
    AccountName,
    ChainReference,
    Cursor,
    PageLimit,
    Params,
    PositiveMicroBlock,
    PublicKeyHex,
    Result,
    SignedParams,
)
from chalicelib.rpc.registry import CallContext
from chalicelib.services import accounts, validators


class CreateAccountParams(SignedParams):
    name: AccountName
    public_key: PublicKeyHex


class AccountRef(Params):
    name: AccountName


class AccountResult(Result):
    name: str
    public_key: str
    roles: list[str]
    balance: int = Field(description="Available balance, micro-BLOCK")
    balance_block: Decimal = Field(description="The same balance in BLOCK")
    stake: int = Field(description="Total stake of the account's providers, micro-BLOCK")
    validator_stake: int = Field(description="Stake posted as a validator, micro-BLOCK")
    providers: list[str]
    created_at: int

    @classmethod
    def of(
        cls,
        account: Account,
        balance: int,
        providers: list[Provider],
        validator_stake: int = 0,
    ) -> AccountResult:
        return cls(
            name=account.name,
            public_key=account.public_key,
            roles=sorted(account.roles),
            balance=balance,
            balance_block=units.block_from_micro(balance),
            stake=sum(p.stake_micro_block for p in providers),
            validator_stake=validator_stake,
            providers=[p.provider_id for p in providers],
            created_at=account.created_at,
        )

    @classmethod
    def of_view(cls, view: accounts.AccountView) -> AccountResult:
        return cls.of(
            view.account,
            view.balance_micro_block,
            view.providers,
            view.validator_stake_micro_block,
        )


class RoleParams(SignedParams):
    account: AccountName
    role: Literal["validator"] = Field(description="The role the operator controls")


class DepositParams(SignedParams):
    account: AccountName
    amount_micro_block: PositiveMicroBlock
    chain_tx: ChainReference = Field(description="The chain transaction that brought it")


class WithdrawParams(SignedParams):
    amount_micro_block: PositiveMicroBlock
    destination: ChainReference = Field(description="Chain address to send to")


class BalanceResult(Result):
    account: str
    balance: int = Field(description="Available balance after the call, micro-BLOCK")


class LedgerEntriesParams(Params):
    account: AccountName
    limit: PageLimit = 50
    cursor: Cursor | None = None


class LedgerEntryResult(Result):
    entry_id: str
    kind: str
    account: str
    amount_micro_block: int
    reference: str
    at: int

    @classmethod
    def of(cls, entry: LedgerEntry) -> LedgerEntryResult:
        return cls(
            entry_id=entry.entry_id,
            kind=entry.kind,
            account=entry.account,
            amount_micro_block=entry.micro_block,
            reference=entry.reference,
            at=entry.at,
        )


class LedgerEntriesResult(Result):
    entries: list[LedgerEntryResult]
    next_cursor: str | None


@registry.method(
    "energy.createAccount",
    summary="Open an account with an Ed25519 key",
    result=AccountResult,
    signed=True,
    errors=(*AUTH_ERRORS, AlreadyExists, InvalidState),
)
def create_account(context: CallContext, params: CreateAccountParams) -> AccountResult:
    """Signed by the key being registered (``auth.account`` is the new name),
    which proves the caller holds it. New accounts are buyers with a zero
    balance."""
    call = signed_call(context, params)
    if call.account != params.name:
        raise NotAuthorised(
            "auth.account must be the account being created",
            signer=call.account,
            required=params.name,
        )
    account = accounts.create_account(context.deps, call, params.name, params.public_key)
    return AccountResult.of(account, 0, [])


@registry.method(
    "energy.getAccount",
    summary="An account's key, roles and balance",
    result=AccountResult,
    errors=(NotFound,),
)
def get_account(context: CallContext, params: AccountRef) -> AccountResult:
    return AccountResult.of_view(accounts.get_account(context.deps, params.name))


@registry.method(
    "energy.getLedgerEntries",
    summary="An account's deposits, withdrawals and stake movements, oldest first",
    result=LedgerEntriesResult,
    errors=(NotFound,),
)
def get_ledger_entries(context: CallContext, params: LedgerEntriesParams) -> LedgerEntriesResult:
    page = accounts.account_history(context.deps, params.account, params.limit, params.cursor)
    return LedgerEntriesResult(
        entries=[LedgerEntryResult.of(e) for e in page.items], next_cursor=page.next_cursor
    )


@registry.method(
    "energy.grantRole",
    summary="Make an account a validator (operator)",
    result=AccountResult,
    signed=True,
    errors=(*AUTH_ERRORS, NotFound),
)
def grant_role(context: CallContext, params: RoleParams) -> AccountResult:
    """Signed by the operator. Validators judge disputes; the role is granted, not
    claimed. (Buyer and provider roles follow from what an account does.)"""
    return _set_role(context, params, held=True)


@registry.method(
    "energy.revokeRole",
    summary="Take the validator role away (operator)",
    result=AccountResult,
    signed=True,
    errors=(*AUTH_ERRORS, NotFound),
)
def revoke_role(context: CallContext, params: RoleParams) -> AccountResult:
    """Signed by the operator."""
    return _set_role(context, params, held=False)


def _set_role(context: CallContext, params: RoleParams, *, held: bool) -> AccountResult:
    accounts.set_role(
        context.deps, signed_call(context, params), params.account, Role(params.role), held
    )
    return AccountResult.of_view(
        accounts.get_account(context.deps, params.account, after_write=True)
    )


class ValidatorStakeParams(SignedParams):
    amount_micro_block: PositiveMicroBlock


@registry.method(
    "energy.stakeAsValidator",
    summary="Post validator stake from the balance (a validator)",
    result=AccountResult,
    signed=True,
    errors=(*AUTH_ERRORS, NotAuthorised, InsufficientBalance),
)
def stake_as_validator(context: CallContext, params: ValidatorStakeParams) -> AccountResult:
    """Signed by an account holding the validator role. The panel draw counts
    validators whose stake is at least 1,000 BLOCK."""
    call = signed_call(context, params)
    validators.stake_as_validator(context.deps, call, params.amount_micro_block)
    return AccountResult.of_view(accounts.get_account(context.deps, call.account, after_write=True))


@registry.method(
    "energy.withdrawValidatorStake",
    summary="Return validator stake to the balance",
    result=AccountResult,
    signed=True,
    errors=(*AUTH_ERRORS, InsufficientStake, OpenObligations),
)
def withdraw_validator_stake(context: CallContext, params: ValidatorStakeParams) -> AccountResult:
    """Signed by the validator (also after its role was revoked). Refused while it
    sits on the panel of an undecided dispute."""
    call = signed_call(context, params)
    validators.withdraw_validator_stake(context.deps, call, params.amount_micro_block)
    return AccountResult.of_view(accounts.get_account(context.deps, call.account, after_write=True))


@registry.method(
    "energy.deposit",
    summary="Credit BLOCK that arrived on chain (operator)",
    result=BalanceResult,
    signed=True,
    errors=(*AUTH_ERRORS, NotFound, AlreadyExists, InvalidState),
)
def deposit(context: CallContext, params: DepositParams) -> BalanceResult:
    """Signed by the operator. A chain transaction is credited at most once."""
    balance = accounts.deposit(
        context.deps,
        signed_call(context, params),
        params.account,
        params.amount_micro_block,
        params.chain_tx,
    )
    return BalanceResult(account=params.account, balance=balance)


@registry.method(
    "energy.withdraw",
    summary="Send BLOCK from your balance to a chain address",
    result=BalanceResult,
    signed=True,
    errors=(*AUTH_ERRORS, InsufficientBalance, InvalidState),
)
def withdraw(context: CallContext, params: WithdrawParams) -> BalanceResult:
    """Signed by the account whose balance pays."""
    call = signed_call(context, params)
    balance = accounts.withdraw(context.deps, call, params.amount_micro_block, params.destination)
    return BalanceResult(account=call.account, balance=balance)
