"""Retirement certificates: a claim on energy, in the shape of a granular certificate.

An EnergyTag granular certificate (GC) says which device produced how much
energy in which interval of at most one hour, where, with what technology,
when it was issued, and who claimed it. A retired credit carries all of that,
and more: its provenance reaches down to the meter's signed reading, which
anyone can check against the meter's registered key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from chalicelib.domain.credits import Credit, CreditState
from chalicelib.domain.providers import Provider

# A GC's production interval is at most one hour.
MAX_PRODUCTION_INTERVAL_MS: Final = 3_600_000
# A retirement names its reporting period: at most a year (366 days).
MAX_REPORTING_PERIOD_MS: Final = 366 * 86_400_000
CERTIFICATE_PREFIX: Final = "gc-"


def certificate_id_for(credit_id: str) -> str:
    """One certificate per credit, ever: its id is the credit's."""
    return CERTIFICATE_PREFIX + credit_id


def credit_id_of(certificate_id: str) -> str | None:
    if not certificate_id.startswith(CERTIFICATE_PREFIX):
        return None
    return certificate_id.removeprefix(CERTIFICATE_PREFIX)


def why_not_retirable(credit: Credit, holder: str) -> str | None:
    """Why ``holder`` cannot retire ``credit`` (None if it can)."""
    if credit.state == CreditState.RETIRED:
        return "the credit is already retired"
    if credit.state != CreditState.HELD or credit.holder != holder:
        return "only a credit you hold (bought and settled) can be retired"
    if credit.interval_end_ms - credit.interval_start_ms > MAX_PRODUCTION_INTERVAL_MS:
        return "its production interval is longer than one hour, the most a certificate covers"
    return None


@dataclass(frozen=True)
class Certificate:
    certificate_id: str
    credit_id: str
    wh: int
    production_start_ms: int
    production_end_ms: int
    device_id: str  # the meter
    device_capacity_wh: int  # the provider's registered capacity
    provider_id: str
    technology: str
    jurisdiction: str
    latitude_micro_deg: int
    longitude_micro_deg: int
    issued_at_ms: int  # when the credit was minted
    beneficiary: str
    reporting_period_start_ms: int
    reporting_period_end_ms: int
    retired_by: str
    retired_at_ms: int
    # Provenance: the signed reading, checkable against the meter's key.
    reading_hash: str
    reading_counter_wh: int
    reading_timestamp_ms: int
    reading_signature: str
    # A dispute later found the reading fraudulent: the claim no longer holds
    # (its holder was refunded what it paid).
    revoked: bool = False


def certificate_for(credit: Credit, provider: Provider) -> Certificate:
    retirement = credit.retirement
    if credit.state not in (CreditState.RETIRED, CreditState.REVOKED) or retirement is None:
        raise ValueError("only a retired credit has a certificate")
    return Certificate(
        certificate_id=certificate_id_for(credit.credit_id),
        credit_id=credit.credit_id,
        wh=credit.wh,
        production_start_ms=credit.interval_start_ms,
        production_end_ms=credit.interval_end_ms,
        device_id=credit.meter_address,
        device_capacity_wh=provider.capacity_wh,
        provider_id=credit.provider_id,
        technology=str(credit.energy_type),
        jurisdiction=credit.jurisdiction,
        latitude_micro_deg=provider.location.latitude_micro_deg,
        longitude_micro_deg=provider.location.longitude_micro_deg,
        issued_at_ms=credit.minted_at_ms,
        beneficiary=retirement.beneficiary,
        reporting_period_start_ms=retirement.period_start_ms,
        reporting_period_end_ms=retirement.period_end_ms,
        retired_by=retirement.retired_by,
        retired_at_ms=retirement.retired_at_ms,
        reading_hash=credit.reading_hash,
        reading_counter_wh=credit.counter_wh,
        reading_timestamp_ms=credit.interval_end_ms,
        reading_signature=credit.signature,
        revoked=credit.state == CreditState.REVOKED,
    )
