"""Retiring credits: a holder claims their energy, for good, as certificates."""

from __future__ import annotations

from dataclasses import dataclass, replace

from chalicelib.domain.certificates import (
    MAX_REPORTING_PERIOD_MS,
    Certificate,
    certificate_for,
    credit_id_of,
    why_not_retirable,
)
from chalicelib.domain.credits import CreditState, Retirement, frozen_by
from chalicelib.domain.errors import (
    CreditsDisputed,
    DomainError,
    InvalidState,
    NotAuthorised,
    NotFound,
)
from chalicelib.domain.providers import Provider
from chalicelib.services.auth import SignedCall, authenticate, refusal
from chalicelib.services.dependencies import Dependencies, retry_on_conflict
from chalicelib.services.ports import UnitOfWork

# Credits one retirement may name: one transaction with the request's nonce.
MAX_CREDITS_PER_RETIREMENT = 50


@dataclass(frozen=True)
class Claim:
    credit_ids: tuple[str, ...]
    beneficiary: str
    period_start_ms: int
    period_end_ms: int


def retire_credits(deps: Dependencies, call: SignedCall, claim: Claim) -> list[Certificate]:
    """Retire credits the signer holds, all or none; one certificate per credit.

    A retired credit can never be sold, transferred or retired again: every
    credit is conditioned on still being held by the signer.
    """
    if not 0 < claim.period_end_ms - claim.period_start_ms <= MAX_REPORTING_PERIOD_MS:
        raise InvalidState(
            "the reporting period must end after it starts and span at most 366 days",
            period_start_ms=claim.period_start_ms,
            period_end_ms=claim.period_end_ms,
        )

    def attempt() -> list[Certificate]:
        uow = deps.unit_of_work()
        holder = authenticate(deps, uow, call)
        credits = {c.credit_id: c for c in uow.credits.get_many(claim.credit_ids)}
        providers = _providers(uow, {c.provider_id for c in credits.values()})
        retirement = Retirement(
            beneficiary=claim.beneficiary,
            period_start_ms=claim.period_start_ms,
            period_end_ms=claim.period_end_ms,
            retired_by=holder,
            retired_at_ms=deps.clock() * 1000,
        )
        for credit_id in claim.credit_ids:
            credit = credits.get(credit_id)
            try:
                if credit is None:
                    raise NotFound("no such credit", credit_id=credit_id)
                if credit.state == CreditState.HELD and credit.holder != holder:
                    raise NotAuthorised(
                        "the credit is held by another account", credit_id=credit_id
                    )
                why = why_not_retirable(credit, holder)
                if why is not None:
                    raise InvalidState(why, credit_id=credit_id, state=str(credit.state))
                dispute_id = frozen_by(providers[credit.provider_id].freezes, credit)
                if dispute_id is not None:
                    raise CreditsDisputed(
                        "an open dispute holds this credit; it cannot be retired until resolved",
                        credit_id=credit_id,
                        dispute_id=dispute_id,
                    )
            except DomainError as error:
                raise refusal(uow, call, error) from None
            uow.credits.retire(credit, retirement)
        uow.commit()
        retired = [
            replace(credits[c], state=CreditState.RETIRED, retirement=retirement)
            for c in claim.credit_ids
        ]
        return [certificate_for(c, providers[c.provider_id]) for c in retired]

    return retry_on_conflict(attempt)


def get_certificate(deps: Dependencies, certificate_id: str) -> Certificate:
    uow = deps.unit_of_work()
    credit_id = credit_id_of(certificate_id)
    found = uow.credits.get_many([credit_id]) if credit_id else []
    if not found or found[0].retirement is None:
        raise NotFound("no such certificate", certificate_id=certificate_id)
    credit = found[0]
    return certificate_for(credit, _providers(uow, {credit.provider_id})[credit.provider_id])


def _providers(uow: UnitOfWork, provider_ids: set[str]) -> dict[str, Provider]:
    found = {}
    for provider_id in provider_ids:
        provider = uow.providers.get(provider_id)
        if provider is None:
            raise NotFound("no such provider", provider_id=provider_id)
        found[provider_id] = provider
    return found
