"""Disputes: flag a reading (opening a dispute or joining the open one) and list them.

A flag posts the configured bond from the flagger's balance in the same
atomic write that opens or joins the dispute, so the bond is held exactly as
long as the dispute records it (the conservation audit counts the bonds of
disputes not yet resolved). Opening a dispute freezes its credits in that
same write: the freeze goes on the provider's record, which every purchase,
settlement and retirement of its credits reads (see ``Freeze``). Votes and
resolution are in ``chalicelib.services.resolution``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

from chalicelib.domain.credits import Credit, CreditState, Freeze
from chalicelib.domain.disputes import (
    MAX_OPEN_DISPUTES_PER_PROVIDER,
    Dispute,
    DisputeRole,
    DisputeRules,
    DisputeStatus,
    Flag,
    Subject,
    Validator,
    dispute_id_for,
    join_dispute,
    open_dispute,
    subject_freeze,
)
from chalicelib.domain.errors import DomainError, InvalidFlag, NotFound, TooManyDisputes
from chalicelib.domain.ledger import EntryKind, LedgerEntry
from chalicelib.services.accounts import commit_spending
from chalicelib.services.auth import SignedCall, authenticate, refusal
from chalicelib.services.dependencies import Dependencies, retry_on_conflict
from chalicelib.services.ports import Page, UnitOfWork


@dataclass(frozen=True)
class FlagRequest:
    """What is flagged (exactly one of: a credit, a reading hash, a meter window) and why."""

    reason: str
    evidence: tuple[str, ...] = ()
    credit_id: str | None = None
    reading_hash: str | None = None
    meter_address: str | None = None
    window_start_ms: int | None = None
    window_end_ms: int | None = None


@dataclass(frozen=True)
class _Target:
    subject: Subject
    provider_id: str
    reading_end_ms: int | None  # a reading's time; None for a meter window


def rules_for(deps: Dependencies) -> DisputeRules:
    return DisputeRules(bond_micro_block=deps.settings.dispute_bond_micro_block)


def flag_dispute(deps: Dependencies, call: SignedCall, request: FlagRequest) -> Dispute:
    """Flag a reading for the signer: open a dispute on it (drawing its panel) or
    join the open one, and move the bond from the signer's balance to the
    dispute, in one atomic write. Refused, changing nothing, when the subject
    does not exist (NotFound), the balance is short (InsufficientBalance), the
    signer owns the provider or sits on the panel (NotAuthorised), already
    flagged it (AlreadyExists), or too few validators can judge it
    (PanelUnavailable). The request's nonce makes a replay a ReplayedRequest.
    """
    rules = rules_for(deps)

    def attempt() -> Dispute:
        uow = deps.unit_of_work()
        flagger = authenticate(deps, uow, call)
        now_ms = deps.clock() * 1000
        flag = Flag(
            reason=request.reason,
            evidence=request.evidence,
            flagged_at_ms=now_ms,
            flagger=flagger,
            bond_micro_block=rules.bond_micro_block,
        )
        try:
            dispute = _open_or_join(uow, request, flag, now_ms, rules)
        except DomainError as error:
            raise refusal(uow, call, error) from error
        bond = rules.bond_micro_block
        uow.ledger.debit(flagger, bond)
        uow.ledger.record(
            LedgerEntry(
                f"{dispute.dispute_id}/{flagger}",
                EntryKind.BOND,
                flagger,
                bond,
                dispute.dispute_id,
                now_ms // 1000,
            )
        )
        commit_spending(deps, uow, flagger, bond)
        return dispute

    return retry_on_conflict(attempt)


def flag_by_detector(deps: Dependencies, flag: Flag, subject: Subject) -> Dispute:
    """An automatic flag (no bond, no signature): opens a dispute on ``subject`` (a
    meter window) or joins the open one. Raises what a flag by hand would:
    AlreadyExists when this detector already flagged it, PanelUnavailable,
    TooManyDisputes, NotFound; the caller decides what to do with them."""
    if flag.detector is None:
        raise InvalidFlag("an automatic flag names its detector")
    request = FlagRequest(
        reason=flag.reason,
        evidence=flag.evidence,
        meter_address=subject.meter_address,
        window_start_ms=subject.window_start_ms,
        window_end_ms=subject.window_end_ms,
    )

    def attempt() -> Dispute:
        uow = deps.unit_of_work()
        dispute = _open_or_join(uow, request, flag, deps.now_ms(), rules_for(deps))
        uow.commit()
        return dispute

    return retry_on_conflict(attempt)


def _open_or_join(
    uow: UnitOfWork, request: FlagRequest, flag: Flag, now_ms: int, rules: DisputeRules
) -> Dispute:
    target = _target(uow, request)
    round_number = 1
    current = uow.disputes.get(dispute_id_for(target.subject, round_number))
    # A resolved dispute is never reopened: a new flag opens the next round.
    while current is not None and current.status != DisputeStatus.OPEN:
        round_number += 1
        current = uow.disputes.get(dispute_id_for(target.subject, round_number))
    if current is not None:
        joined = join_dispute(current, flag, rules)
        uow.disputes.join(joined, current.version, flag.flagger)
        return joined
    provider = uow.providers.get(target.provider_id)
    if provider is None:
        raise NotFound("no such provider", provider_id=target.provider_id)
    if len(provider.freezes) >= MAX_OPEN_DISPUTES_PER_PROVIDER:
        raise TooManyDisputes(
            "the provider has as many open disputes as it may; flag one of them",
            provider_id=provider.provider_id,
            max_open_disputes=MAX_OPEN_DISPUTES_PER_PROVIDER,
        )
    freeze = subject_freeze(
        dispute_id_for(target.subject, round_number), target.subject, target.reading_end_ms
    )
    affected = Affected.of(uow, provider.provider_id, freeze)
    opened = open_dispute(
        subject=target.subject,
        provider_id=provider.provider_id,
        provider_owner=provider.owner,
        flag=flag,
        buyers=affected.buyers,
        validators=_validators(uow),
        opened_at_ms=now_ms,
        round_number=round_number,
        rules=rules,
        reading_end_ms=target.reading_end_ms,
    )
    uow.disputes.open(opened)
    uow.providers.hold_for_dispute(provider, replace(opened.freeze, wh=affected.on_sale_wh))
    # The stake that made each panel member eligible stays until the panel's
    # work is done: it cannot be withdrawn while the dispute is undecided.
    uow.validators.seat(opened.panel, 1)
    return opened


def affected_credits(uow: UnitOfWork, provider_id: str, freeze: Freeze) -> Iterator[Credit]:
    """Every credit a freeze covers, page by page along one index range."""
    cursor: str | None = None
    while True:
        page = uow.credits.in_window(
            provider_id, freeze.from_ms, freeze.to_ms, AFFECTED_PAGE, cursor
        )
        yield from (c for c in page.items if freeze.covers(c))
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


# Credits read per query when the affected credits are walked.
AFFECTED_PAGE = 200


@dataclass(frozen=True)
class Affected:
    """What a new dispute's freeze covers, as the flag needs it."""

    buyers: frozenset[str]  # of its credits: parties, never judges
    on_sale_wh: int  # what it takes out of the market

    @classmethod
    def of(cls, uow: UnitOfWork, provider_id: str, freeze: Freeze) -> Affected:
        buyers: set[str] = set()
        reserved: set[str] = set()
        on_sale_wh = 0
        for credit in affected_credits(uow, provider_id, freeze):
            if credit.state == CreditState.AVAILABLE:
                on_sale_wh += credit.wh
            elif credit.holder is not None:
                buyers.add(credit.holder)
            elif credit.purchase_id is not None:
                reserved.add(credit.purchase_id)
        for purchase_id in sorted(reserved):
            purchase = uow.purchases.get(purchase_id)
            if purchase is not None:
                buyers.add(purchase.buyer)
        return cls(frozenset(buyers), on_sale_wh)


def _target(uow: UnitOfWork, request: FlagRequest) -> _Target:
    """The subject a flag names, checked to exist, with its provider and known buyers."""
    by_reading = (request.credit_id, request.reading_hash)
    window = (request.meter_address, request.window_start_ms, request.window_end_ms)
    named = sum(1 for part in (*by_reading, request.meter_address) if part is not None)
    if named != 1 or (request.meter_address is None and window != (None, None, None)):
        raise InvalidFlag(
            "name exactly one of credit_id, reading_hash, or meter_address with a window"
        )
    if request.meter_address is not None:
        if request.window_start_ms is None or request.window_end_ms is None:
            raise InvalidFlag("a meter window names a start and an end")
        subject = Subject.meter_window(
            request.meter_address, request.window_start_ms, request.window_end_ms
        )
        meter = uow.meters.get(request.meter_address)
        if meter is None:
            raise NotFound("no such meter", meter_address=request.meter_address)
        return _Target(subject, meter.provider_id, None)
    credit_id = request.credit_id or request.reading_hash or ""
    if request.reading_hash is not None:
        Subject.reading(request.reading_hash)  # well formed before it is looked up
    credit = uow.credits.get(credit_id)
    if credit is None or credit.state == CreditState.BASELINE:
        raise NotFound("no such credit", credit_id=credit_id)
    # A part split off a credit names its reading, and shares its time.
    return _Target(Subject.reading(credit.reading_hash), credit.provider_id, credit.interval_end_ms)


def _validators(uow: UnitOfWork) -> Sequence[Validator]:
    return uow.validators.all()


def get_dispute(deps: Dependencies, dispute_id: str) -> Dispute:
    dispute = deps.unit_of_work().disputes.get(dispute_id)
    if dispute is None:
        raise NotFound("no such dispute", dispute_id=dispute_id)
    return dispute


def get_disputes(
    deps: Dependencies,
    *,
    provider_id: str | None,
    status: DisputeStatus | None,
    limit: int,
    cursor: str | None,
    flagger: str | None = None,
    validator: str | None = None,
) -> Page[Dispute]:
    """Disputes against a provider, flagged by an account or judged by a
    validator (any status), else with ``status`` (default: open), newest first;
    each read is one index partition (and, by member, the disputes by key)."""
    uow = deps.unit_of_work()
    if provider_id is not None:
        return uow.disputes.by_provider(provider_id, limit, cursor)
    if flagger is not None:
        return uow.disputes.by_member(DisputeRole.FLAGGER, flagger, limit, cursor)
    if validator is not None:
        return uow.disputes.by_member(DisputeRole.PANEL, validator, limit, cursor)
    return uow.disputes.by_status(status or DisputeStatus.OPEN, limit, cursor)
