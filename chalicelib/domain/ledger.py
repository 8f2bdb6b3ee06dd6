"""The BLOCK ledger: what moves money, and the record each movement leaves.

Every micro-BLOCK in the marketplace arrived by a deposit and sits in exactly
one place: an account balance, a provider stake, an escrow, a dispute bond or
the treasury. Withdrawals are the only way out. The conservation invariant,

    balances + stakes + escrow + bonds + treasury == deposits - withdrawals,

is checked by tests over random operation sequences.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

# A chain transaction id or a withdrawal destination address: opaque to us,
# but bounded and printable so it is safe in keys and logs.
CHAIN_REFERENCE: Final = re.compile(r"^[A-Za-z0-9:_.\-]{4,128}$")


class EntryKind(StrEnum):
    DEPOSIT = "deposit"
    WITHDRAWAL = "withdrawal"
    STAKE = "stake"
    UNSTAKE = "unstake"
    PURCHASE = "purchase"  # paid into escrow
    SALE = "sale"  # escrow released to the provider's owner, less the fee
    BOND = "bond"  # a flag's bond, held by its dispute until it resolves
    BOND_RETURN = "bond_return"  # a bond released: to its flagger, or to the owner if cleared
    REFUND = "refund"  # revoked credits paid back: from escrow, or from a slash
    REWARD = "reward"  # a bonded flagger's share of a slash
    VALIDATOR_STAKE = "validator_stake"  # balance -> the account's validator stake
    VALIDATOR_UNSTAKE = "validator_unstake"  # validator stake -> balance


@dataclass(frozen=True)
class LedgerEntry:
    """One movement of BLOCK into or out of an account's balance."""

    entry_id: str  # unique per kind: the chain tx of a deposit, a request nonce, ...
    kind: EntryKind
    account: str
    micro_block: int  # always positive; ``kind`` says the direction
    reference: str  # chain tx, destination address or provider id
    at: int


def is_valid_chain_reference(text: str) -> bool:
    return bool(CHAIN_REFERENCE.match(text))
