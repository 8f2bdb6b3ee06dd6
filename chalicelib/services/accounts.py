"""Use cases of accounts and the BLOCK ledger: open, deposit, withdraw, look up."""

from __future__ import annotations

from dataclasses import dataclass

from chalicelib.domain import signing
from chalicelib.domain.accounts import (
    GRANTED_ROLES,
    OPERATOR,
    Account,
    Role,
    is_valid_account_name,
)
from chalicelib.domain.errors import (
    InsufficientBalance,
    InvalidState,
    NotFound,
)
from chalicelib.domain.ledger import EntryKind, LedgerEntry
from chalicelib.domain.providers import Provider
from chalicelib.services.auth import SignedCall, authenticate, require_operator
from chalicelib.services.dependencies import Dependencies, retry_on_conflict
from chalicelib.services.ports import Page, UnitOfWork


@dataclass(frozen=True)
class AccountView:
    account: Account
    balance_micro_block: int
    providers: list[Provider]
    validator_stake_micro_block: int = 0


def create_account(deps: Dependencies, call: SignedCall, name: str, public_key: str) -> Account:
    """Open an account for ``name``, signed by the key being registered."""
    if name == OPERATOR or not is_valid_account_name(name):
        raise InvalidState("this account name is reserved or malformed", name=name)
    uow = deps.unit_of_work()
    key = signing.normalise_hex(public_key)
    authenticate(deps, uow, call, public_key=key)
    account = Account(
        name=name, public_key=key, roles=frozenset({Role.BUYER}), created_at=deps.clock()
    )
    uow.accounts.add(account)
    uow.ledger.open_account(name)
    uow.commit()
    return account


def deposit(
    deps: Dependencies, call: SignedCall, account: str, micro_block: int, chain_tx: str
) -> int:
    """Credit BLOCK that arrived on chain in transaction ``chain_tx`` (operator only).

    A chain transaction is credited once: depositing it again is refused.
    Returns the new balance.
    """
    return retry_on_conflict(lambda: _deposit(deps, call, account, micro_block, chain_tx))


def _deposit(
    deps: Dependencies, call: SignedCall, account: str, micro_block: int, chain_tx: str
) -> int:
    uow = deps.unit_of_work()
    signer = authenticate(deps, uow, call)
    require_operator(signer, "record deposits")
    if micro_block <= 0:
        raise InvalidState("a deposit must be positive")
    uow.ledger.credit(account, micro_block)
    uow.ledger.record(
        LedgerEntry(chain_tx, EntryKind.DEPOSIT, account, micro_block, chain_tx, deps.clock())
    )
    uow.commit()
    return deps.unit_of_work().ledger.balance(account)


def withdraw(deps: Dependencies, call: SignedCall, micro_block: int, destination: str) -> int:
    """Send BLOCK from the signer's balance to ``destination`` on chain.

    Returns the new balance.
    """
    return retry_on_conflict(lambda: _withdraw(deps, call, micro_block, destination))


def _withdraw(deps: Dependencies, call: SignedCall, micro_block: int, destination: str) -> int:
    uow = deps.unit_of_work()
    signer = authenticate(deps, uow, call)
    if micro_block <= 0:
        raise InvalidState("a withdrawal must be positive")
    uow.ledger.debit(signer, micro_block)
    uow.ledger.record(
        LedgerEntry(
            f"{signer}/{call.nonce}",
            EntryKind.WITHDRAWAL,
            signer,
            micro_block,
            destination,
            deps.clock(),
        )
    )
    commit_spending(deps, uow, signer, micro_block)
    return deps.unit_of_work().ledger.balance(signer)


def set_role(deps: Dependencies, call: SignedCall, name: str, role: Role, held: bool) -> Account:
    """Grant (``held``) or revoke a role the operator controls: validator."""

    def attempt() -> Account:
        uow = deps.unit_of_work()
        signer = authenticate(deps, uow, call)
        require_operator(signer, "grant or revoke roles")
        if role not in GRANTED_ROLES:
            raise InvalidState("this role follows from what the account does", role=str(role))
        account = uow.accounts.get(name)
        if account is None:
            raise NotFound("no such account", account=name)
        if held:
            uow.accounts.add_role(name, role)
        else:
            uow.accounts.remove_role(name, role)
        if role == Role.VALIDATOR:
            # The registry the panel draw reads, in the same commit as the role.
            if held:
                uow.validators.add(name)
            else:
                uow.validators.remove(name)
        uow.commit()
        return account.with_roles(account.roles | {role} if held else account.roles - {role})

    return retry_on_conflict(attempt)


def get_account(deps: Dependencies, name: str, *, after_write: bool = False) -> AccountView:
    """The account as it stands; ``after_write``: the answer of a call that just
    changed it, so every record is read strongly consistent (the balance always is)."""
    uow = deps.unit_of_work()
    account = uow.accounts.get(name, consistent=after_write)
    if account is None:
        raise NotFound("no such account", account=name)
    validator = uow.validators.get(name)
    return AccountView(
        account,
        uow.ledger.balance(name),
        list(uow.providers.owned_by(name, consistent=after_write)),
        validator.stake_micro_block if validator is not None else 0,
    )


def treasury(deps: Dependencies) -> int:
    """The treasury's balance, micro-BLOCK: fees and slash shares, summed over its shards."""
    return deps.unit_of_work().ledger.treasury()


def account_history(
    deps: Dependencies, name: str, limit: int, cursor: str | None
) -> Page[LedgerEntry]:
    uow = deps.unit_of_work()
    if uow.accounts.get(name) is None:
        raise NotFound("no such account", account=name)
    return uow.ledger.entries(name, limit, cursor)


def commit_spending(deps: Dependencies, uow: UnitOfWork, account: str, micro_block: int) -> None:
    """Commit a unit of work that debits ``account``; a refusal says what it had."""
    try:
        uow.commit()
    except InsufficientBalance as refused:
        refused.data.update(
            available_micro_block=deps.unit_of_work().ledger.balance(account),
            required_micro_block=micro_block,
        )
        raise
