"""Purchases: energy reserved for a buyer, paid into escrow, settled later."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Final

from chalicelib.domain.credits import Credit, CreditState

# A purchase and its settlement are each one atomic write, of at most as many
# records as the storage takes in one (UnitOfWork.max_writes). The largest is
# an early settlement: one write per credit, and nine more (the request's
# nonce, the purchase, the owner's balance and sale entry, a treasury shard,
# the provider, what the buyer bought, the receipt and its chain head). One
# more is kept spare.
WRITES_BESIDES_CREDITS: Final = 10


def max_credits_per_purchase(max_writes: int) -> int:
    """The most credits one purchase may take, when one commit holds ``max_writes``."""
    return max_writes - WRITES_BESIDES_CREDITS


# Settlement waits this long after the newest credit of a purchase was minted,
# so that a dispute can still freeze it (configurable).
DEFAULT_DISPUTE_WINDOW_MS: Final = 24 * 3_600_000


class PurchaseStatus(StrEnum):
    OPEN = "open"  # paid into escrow, credits reserved, awaiting settlement
    SETTLED = "settled"
    # Every credit it reserved was revoked by a guilty dispute; the escrow went
    # back to the buyer. (A purchase that loses only some keeps the rest.)
    REVOKED = "revoked"


@dataclass(frozen=True)
class Purchase:
    purchase_id: str
    buyer: str
    provider_id: str
    wh: int
    price_micro_block_per_kwh: int
    escrow_micro_block: int  # the cost, held until settlement
    credit_ids: tuple[str, ...]
    created_at_ms: int
    settles_at_ms: int
    status: PurchaseStatus = PurchaseStatus.OPEN
    # Once settled: when, by whom, and the receipt that records it.
    settled_at_ms: int | None = None
    receipt_chain: str | None = None
    receipt_sequence: int | None = None
    receipt_hash: str | None = None
    revoked_at_ms: int | None = None
    # The provider's energy type and jurisdiction when the purchase was made
    # (for the market's analytics; absent on purchases made before they were kept).
    energy_type: str | None = None
    jurisdiction: str | None = None

    @property
    def closed_at_ms(self) -> int | None:
        return self.settled_at_ms if self.settled_at_ms is not None else self.revoked_at_ms

    def is_due(self, now_ms: int) -> bool:
        return self.status == PurchaseStatus.OPEN and self.settles_at_ms <= now_ms


class SettledBy(StrEnum):
    BUYER = "buyer"  # early, on the buyer's request
    SCHEDULE = "schedule"  # by the settlement job, after the dispute window


# A market fee is at most 10 % of a purchase, in basis points.
MAX_MARKET_FEE_BPS: Final = 1_000


def market_fee(escrow_micro_block: int, fee_bps: int) -> int:
    """The treasury's share of a settled purchase, rounded down: the provider
    is never paid less than its price minus the advertised fee."""
    if not 0 <= fee_bps <= MAX_MARKET_FEE_BPS:
        raise ValueError("market fee out of range")
    return escrow_micro_block * fee_bps // 10_000


def paid_for(purchase: Purchase, wh: int) -> int:
    """The part of the purchase's escrow that paid for ``wh`` of its energy,
    rounded down (all of it for all its Wh): what a refund of that energy is."""
    if not 0 < wh <= purchase.wh:
        raise ValueError("a part of a purchase is more than none and at most all of it")
    return purchase.escrow_micro_block * wh // purchase.wh


def without_credits(purchase: Purchase, revoked: dict[str, int], at_ms: int) -> Purchase:
    """An open purchase after a dispute revoked some of its credits (id -> Wh):
    it keeps the rest, and what it keeps of the escrow; with none left, it is revoked."""
    if purchase.status != PurchaseStatus.OPEN or not set(revoked) <= set(purchase.credit_ids):
        raise ValueError("only an open purchase's own credits are revoked from it")
    wh = sum(revoked.values())
    refund = paid_for(purchase, wh)
    kept = tuple(c for c in purchase.credit_ids if c not in revoked)
    if not kept:
        return replace(
            purchase,
            status=PurchaseStatus.REVOKED,
            revoked_at_ms=at_ms,
        )
    return replace(
        purchase,
        wh=purchase.wh - wh,
        escrow_micro_block=purchase.escrow_micro_block - refund,
        credit_ids=kept,
    )


def purchase_id_for(buyer: str, idempotency_key: str) -> str:
    """Stable per (buyer, key): a retried purchase finds the first one."""
    digest = hashlib.sha256(f"purchase\n{buyer}\n{idempotency_key}".encode()).hexdigest()
    return f"pur-{digest[:32]}"


@dataclass(frozen=True)
class Allocation:
    """Which available credits a purchase takes: whole ones, and a part of one."""

    whole: tuple[Credit, ...]
    split: Credit | None = None  # the credit a part is taken from
    split_wh: int = 0  # how much of it


def allocate(available_oldest_first: Sequence[Credit], wh: int) -> Allocation | None:
    """Take ``wh`` from the oldest credits first; None if they do not hold enough."""
    whole: list[Credit] = []
    remaining = wh
    for credit in available_oldest_first:
        if remaining == 0:
            break
        if credit.wh <= remaining:
            whole.append(credit)
            remaining -= credit.wh
        else:
            return Allocation(tuple(whole), credit, remaining)
    return Allocation(tuple(whole)) if remaining == 0 else None


def split_credit_id(parent_id: str, purchase_id: str) -> str:
    """The id of the part of ``parent_id`` a purchase takes: still a 64-hex hash."""
    return hashlib.sha256(f"split\n{parent_id}\n{purchase_id}".encode()).hexdigest()


def split_part(credit: Credit, take_wh: int, purchase_id: str) -> Credit:
    """The part of ``credit`` a purchase takes, reserved for it; same provenance."""
    if not 0 < take_wh < credit.wh:
        raise ValueError("a split takes part of a credit, not none or all of it")
    return replace(
        credit,
        credit_id=split_credit_id(credit.credit_id, purchase_id),
        wh=take_wh,
        state=CreditState.RESERVED,
        purchase_id=purchase_id,
        parent_credit_id=credit.parent_credit_id or credit.credit_id,
    )
