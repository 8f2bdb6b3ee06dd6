"""Energy credits: verified generation, in Wh, with where it came from."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from chalicelib.domain.providers import EnergyType

# Unsold credits leave the market this long after minting (configurable).
DEFAULT_CREDIT_LIFETIME_MS: Final = 30 * 24 * 3_600_000


class CreditState(StrEnum):
    # A meter's first accepted reading sets its counter and carries no energy;
    # it is stored like a credit so that its redelivery is known as one.
    BASELINE = "baseline"
    AVAILABLE = "available"  # offered at the provider's price
    RESERVED = "reserved"  # held for a purchase awaiting settlement
    HELD = "held"  # owned by a buyer after settlement
    RETIRED = "retired"  # claimed for carbon reporting
    EXPIRED = "expired"  # unsold at expiry, out of the market
    REVOKED = "revoked"  # its reading was found fraudulent


@dataclass(frozen=True)
class Credit:
    """The Wh one accepted reading added, minted once.

    ``credit_id`` is the reading's hash: a redelivered reading maps to the
    same credit, which is what makes minting idempotent.
    """

    credit_id: str
    provider_id: str
    meter_address: str
    energy_type: EnergyType
    jurisdiction: str
    interval_start_ms: int  # the previous accepted reading's time
    interval_end_ms: int  # this reading's time
    wh: int
    counter_wh: int  # the meter's cumulative counter at interval end
    signature: str  # the meter's signature over the reading, for provenance
    minted_at_ms: int
    expires_at_ms: int
    state: CreditState = CreditState.AVAILABLE
    purchase_id: str | None = None  # the purchase it is reserved for, or was sold in
    # A credit split off another by a purchase carries the reading's provenance
    # through its parent (the parent's id is the reading hash).
    parent_credit_id: str | None = None
    holder: str | None = None  # the buyer who owns it once settled (held or retired)
    retirement: Retirement | None = None  # set once, when retired

    @property
    def reading_hash(self) -> str:
        """The signed reading this energy was minted from."""
        return self.parent_credit_id or self.credit_id


def minted_credit(
    *,
    reading_hash: str,
    provider_id: str,
    meter_address: str,
    energy_type: EnergyType,
    jurisdiction: str,
    interval_start_ms: int,
    interval_end_ms: int,
    wh: int,
    counter_wh: int,
    signature: str,
    minted_at_ms: int,
    credit_lifetime_ms: int,
) -> Credit:
    """The credit an accepted reading mints: on sale until it expires; for a
    meter's first reading, its baseline (an interval of no length: every later
    reading's interval ends after the one before, so only a first is empty)."""
    return Credit(
        reading_hash,
        provider_id,
        meter_address,
        energy_type,
        jurisdiction,
        interval_start_ms,
        interval_end_ms,
        wh,
        counter_wh,
        signature,
        minted_at_ms,
        minted_at_ms + credit_lifetime_ms,
        CreditState.BASELINE if interval_start_ms == interval_end_ms else CreditState.AVAILABLE,
    )


@dataclass(frozen=True)
class Retirement:
    """A claim on a credit's energy for carbon reporting; made once, for good."""

    beneficiary: str
    period_start_ms: int  # the reporting period the claim is for
    period_end_ms: int
    retired_by: str
    retired_at_ms: int


@dataclass(frozen=True)
class Freeze:
    """The credits an open dispute holds out of the market, kept on the provider's record.

    A provider has one meter, so its credits are picked by the end of their
    interval (the reading's time) in ``[from_ms, to_ms)``, and for a reading
    by its hash too: the reading's own credit and every part split off it.
    Credits minted into a frozen window while the dispute is open are frozen
    as well.
    """

    dispute_id: str
    from_ms: int
    to_ms: int
    reading_hash: str | None = None
    # The Wh on sale it took out of the market when it opened (what offers
    # leave out of the provider's available energy until it resolves).
    wh: int = 0

    def covers(self, credit: Credit) -> bool:
        return self.from_ms <= credit.interval_end_ms < self.to_ms and (
            self.reading_hash is None or credit.reading_hash == self.reading_hash
        )


def frozen_by(freezes: Iterable[Freeze], credit: Credit) -> str | None:
    """The dispute holding ``credit`` out of the market, or None."""
    return next((f.dispute_id for f in freezes if f.covers(credit)), None)


def disputed(
    credits: Iterable[Credit], freezes_of: Mapping[str, Sequence[Freeze]]
) -> dict[str, str]:
    """Credit id -> the open dispute holding it, given each provider's freezes."""
    held = {}
    for credit in credits:
        dispute_id = frozen_by(freezes_of.get(credit.provider_id, ()), credit)
        if dispute_id is not None and credit.state != CreditState.REVOKED:
            held[credit.credit_id] = dispute_id
    return held
