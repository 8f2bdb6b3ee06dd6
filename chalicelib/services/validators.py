"""A validator's stake: posted from its balance, withdrawn once no panel holds it.

The panel draw counts only validators whose stake is at least the minimum
validator stake (1,000 BLOCK by default). A validator drawn for a dispute
cannot withdraw until that dispute is decided, so the stake that made it
eligible is there for as long as it judges.
"""

from __future__ import annotations

from chalicelib.domain.disputes import Validator
from chalicelib.domain.errors import (
    InsufficientStake,
    InvalidState,
    NotAuthorised,
    OpenObligations,
)
from chalicelib.domain.ledger import EntryKind, LedgerEntry
from chalicelib.services.accounts import commit_spending
from chalicelib.services.auth import SignedCall, authenticate
from chalicelib.services.dependencies import Dependencies, retry_on_conflict


def stake_as_validator(deps: Dependencies, call: SignedCall, micro_block: int) -> Validator:
    """Move ``micro_block`` from the signer's balance to its validator stake; only
    an account holding the validator role stakes as one."""
    if micro_block <= 0:
        raise InvalidState("a stake must be positive")

    def attempt() -> Validator:
        uow = deps.unit_of_work()
        name = authenticate(deps, uow, call)
        validator = uow.validators.get(name)
        if validator is None or not validator.active:
            raise NotAuthorised("only an account with the validator role stakes as one")
        uow.validators.change_stake(validator, micro_block)
        uow.ledger.debit(name, micro_block)
        uow.ledger.record(
            LedgerEntry(
                f"{name}/{call.nonce}",
                EntryKind.VALIDATOR_STAKE,
                name,
                micro_block,
                "validator",
                deps.clock(),
            )
        )
        commit_spending(deps, uow, name, micro_block)
        return Validator(
            name, validator.stake_micro_block + micro_block, True, validator.open_panels
        )

    return retry_on_conflict(attempt)


def withdraw_validator_stake(deps: Dependencies, call: SignedCall, micro_block: int) -> Validator:
    """Return validator stake to the signer's balance (with the role or after
    it was revoked); refused while the signer sits on an undecided panel."""
    if micro_block <= 0:
        raise InvalidState("a stake withdrawal must be positive")

    def attempt() -> Validator:
        uow = deps.unit_of_work()
        name = authenticate(deps, uow, call)
        validator = uow.validators.get(name) or Validator(name, 0, active=False)
        if validator.open_panels > 0:
            raise OpenObligations(
                "the validator sits on the panel of an undecided dispute",
                open_panels=validator.open_panels,
            )
        if micro_block > validator.stake_micro_block:
            raise InsufficientStake(
                "the validator stake is smaller than the withdrawal",
                stake_micro_block=validator.stake_micro_block,
                requested_micro_block=micro_block,
            )
        # The condition on the open panels read guards the check above.
        uow.validators.change_stake(validator, -micro_block)
        uow.ledger.credit(name, micro_block)
        uow.ledger.record(
            LedgerEntry(
                f"{name}/{call.nonce}",
                EntryKind.VALIDATOR_UNSTAKE,
                name,
                micro_block,
                "validator",
                deps.clock(),
            )
        )
        uow.commit()
        return Validator(name, validator.stake_micro_block - micro_block, validator.active, 0)

    return retry_on_conflict(attempt)
