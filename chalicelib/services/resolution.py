"""Votes and resolution: a dispute decided, and everything its verdict moves.

A dispute resolves in steps, each one atomic write conditioned on the
dispute's version, so however often and however concurrently it is asked to
(the vote that reaches quorum, ``energy.resolveDispute`` from anyone, the
scheduled job at the deadline) each step happens once:

1. **Verdict.** Cleared: the freeze lifts and the bonds go to the provider's
   owner; done. Guilty: the slash leaves the stake into the dispute's pot (the
   provider is suspended at once if that leaves it below the minimum stake)
   and the dispute turns ``revoking``.
2. **Revocation**, a page of affected credits per write (``REVOCATION_PAGE``,
   so that the largest page fits one transaction): each credit is revoked;
   buyers of reserved ones get that share of their escrow back (a purchase
   with nothing left is revoked); buyers of settled ones (held or retired)
   are refunded what they paid, from the pot.
3. **Close.** The pot pays the flaggers' reward and the rest to the
   treasury, bonds return, the freeze lifts, and a slash receipt is signed and
   chained.

The freeze stays on the provider's record until the last step, so nothing
buys, settles or retires an affected credit while its fate is being written.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from chalicelib.domain.credits import Credit, CreditState
from chalicelib.domain.disputes import (
    Dispute,
    DisputeStatus,
    PocketKind,
    Revocation,
    Severity,
    Transfer,
    TransferReason,
    Verdict,
    cast_vote,
    cleared_transfers,
    closed,
    closing_transfers,
    refunded,
    resolved,
    settled_refund,
    tally,
)
from chalicelib.domain.errors import AlreadyExists, ConcurrentUpdate, DomainError, NotFound
from chalicelib.domain.ledger import EntryKind, LedgerEntry
from chalicelib.domain.receipts import ChainHead, SlashReceipt, sealed_slash, slash_chain
from chalicelib.domain.trading import Purchase, PurchaseStatus, paid_for, without_credits
from chalicelib.services.auth import SignedCall, authenticate, refusal
from chalicelib.services.dependencies import Dependencies, retry_on_conflict
from chalicelib.services.disputes import affected_credits, rules_for
from chalicelib.services.ports import JobRun, Page, UnitOfWork
from chalicelib.services.settlement import TREASURY_SHARDS

logger = logging.getLogger(__name__)

DISPUTES_JOB = "disputes"
# Affected credits revoked per atomic write. The largest page writes each
# credit, its purchase, an entry per purchase, each buyer's balance and Wh
# bought, the provider and the dispute: 5 x 16 + 2 = 82 of the 100 a
# transaction takes.
REVOCATION_PAGE = 16
# Steps one call takes on one dispute (the rest wait for the next call or run).
DEFAULT_STEPS = 50
# One run of the job works on at most this many disputes.
DEFAULT_RUN_BUDGET = 100


@dataclass(frozen=True)
class VoteRequest:
    dispute_id: str
    verdict: Verdict
    severity: Severity | None


def vote_on_dispute(deps: Dependencies, call: SignedCall, request: VoteRequest) -> Dispute:
    """Record a panel member's vote; refused, changing nothing, when the dispute is
    closed or decided (DisputeClosed), past its deadline (VotingClosed), the
    signer is a party (PartyToDispute), not on the panel (NotOnPanel) or has
    voted (AlreadyVoted). A vote that reaches quorum resolves the dispute at once.
    """

    def attempt() -> Dispute:
        uow = deps.unit_of_work()
        voter = authenticate(deps, uow, call)
        dispute = uow.disputes.get(request.dispute_id)
        try:
            if dispute is None:
                raise NotFound("no such dispute", dispute_id=request.dispute_id)
            voted = cast_vote(dispute, voter, request.verdict, request.severity, deps.now_ms())
        except DomainError as error:
            raise refusal(uow, call, error) from error
        uow.disputes.save(voted, dispute.version)
        uow.commit()
        return voted

    voted = retry_on_conflict(attempt)
    if tally(voted, deps.now_ms()) is None:
        return voted
    try:
        return resolve_dispute(deps, voted.dispute_id)
    except DomainError as error:
        # The vote stands; the job (or anyone) finishes the resolution.
        logger.warning("resolving %s after its deciding vote failed: %s", voted.dispute_id, error)
        return voted


def resolve_dispute(deps: Dependencies, dispute_id: str, steps: int | None = None) -> Dispute:
    """Take the dispute as far as it can go now, at most ``steps`` writes.

    Undecided (no quorum, deadline ahead): returned unchanged, still open.
    Resolved already: returned unchanged (a dispute resolves once).
    """
    dispute = _dispute(deps.unit_of_work(), dispute_id)
    for _ in range(DEFAULT_STEPS if steps is None else steps):
        step = _next_step(deps, dispute)
        if step is None:
            return dispute
        dispute = retry_on_conflict(step)
    return dispute


def run_disputes(deps: Dependencies, budget: int = DEFAULT_RUN_BUDGET) -> JobRun:
    """The scheduled job: resolve the disputes past their deadline and carry on
    revoking guilty ones, where the job left off; reads only disputes with work
    due. A dispute it could not finish stays due, and holds the watermark."""
    now_ms = deps.now_ms()
    run = JobRun(DISPUTES_JOB)

    def handle(due: Iterable[Dispute]) -> bool:
        handled_all = True
        for listed in due:
            try:
                after = resolve_dispute(deps, listed.dispute_id)
            except DomainError as exc:
                run.failed += 1
                handled_all = False
                logger.warning("resolving %s failed: %s", listed.dispute_id, exc.reason)
                continue
            if after.status in (DisputeStatus.OPEN, DisputeStatus.REVOKING):
                handled_all = False
            elif after.version != listed.version:
                run.done += 1
        return handled_all

    deps.unit_of_work().disputes.each_due(run, now_ms, budget, handle)
    logger.info("scheduled job finished", extra={"job_run": run.as_log()})
    return run


def slash_receipts(
    deps: Dependencies, provider_id: str, limit: int, cursor: str | None
) -> tuple[Page[SlashReceipt], ChainHead | None]:
    """A provider's slash receipts, oldest first, and their chain's head (an export ends there)."""
    uow = deps.unit_of_work()
    chain = slash_chain(provider_id)
    return uow.receipts.slash_receipts(chain, limit, cursor), uow.receipts.head(chain)


def _dispute(uow: UnitOfWork, dispute_id: str) -> Dispute:
    dispute = uow.disputes.get(dispute_id)
    if dispute is None:
        raise NotFound("no such dispute", dispute_id=dispute_id)
    return dispute


def _next_step(deps: Dependencies, seen: Dispute) -> Callable[[], Dispute] | None:
    """The write that takes ``seen`` one step further, or None if there is none now.

    Each attempt reads the dispute afresh: a retried step, or one another
    resolver took first, finds the dispute moved on.
    """
    if seen.status == DisputeStatus.OPEN and tally(seen, deps.now_ms()) is None:
        return None
    if seen.status not in (DisputeStatus.OPEN, DisputeStatus.REVOKING):
        return None

    def attempt() -> Dispute:
        uow = deps.unit_of_work()
        dispute = _dispute(uow, seen.dispute_id)
        try:
            if dispute.status == DisputeStatus.OPEN:
                return _decide(deps, uow, dispute)
            revocation = dispute.revocation
            if dispute.status == DisputeStatus.REVOKING and revocation is not None:
                if revocation.swept and _minted_since_sweep(uow, dispute):
                    # A reading minted into the window after the last page:
                    # sweep again (revoked credits are skipped) before closing.
                    again = replace(
                        dispute,
                        revocation=replace(revocation, swept=False, cursor=None),
                        version=dispute.version + 1,
                    )
                    uow.disputes.save(again, dispute.version)
                    uow.commit()
                    return again
                if revocation.swept:
                    return _close(deps, uow, dispute, revocation)
                return _revoke_page(deps, uow, dispute, revocation)
        except AlreadyExists as exc:
            # A step's ledger entries have ids fixed by the dispute and the
            # step: another resolver wrote this very step first.
            raise ConcurrentUpdate(
                "the dispute moved on; retry", dispute_id=seen.dispute_id
            ) from exc
        return dispute

    return attempt


def _minted_since_sweep(uow: UnitOfWork, dispute: Dispute) -> bool:
    """Whether a credit the dispute covers is not revoked yet (one index range)."""
    return any(
        c.state != CreditState.REVOKED
        for c in affected_credits(uow, dispute.provider_id, dispute.freeze)
    )


def _decide(deps: Dependencies, uow: UnitOfWork, dispute: Dispute) -> Dispute:
    outcome = tally(dispute, deps.now_ms())
    if outcome is None:
        return dispute
    provider = uow.providers.get(dispute.provider_id)
    if provider is None:
        raise NotFound("the dispute's provider is gone", provider_id=dispute.provider_id)
    uow.validators.seat(dispute.panel, -1)  # the panel's work is done
    if outcome.verdict == Verdict.CLEARED:
        decided = resolved(dispute, outcome)
        uow.disputes.save(decided, dispute.version)
        uow.providers.release_dispute(provider, dispute.dispute_id, upheld=False)
        _pay(uow, decided, cleared_transfers(decided), deps.now_ms())
        uow.commit()
        return decided
    owed = _owed_for_settled(uow, dispute)
    decided = resolved(dispute, outcome, provider.stake_micro_block, owed, rules_for(deps))
    uow.disputes.save(decided, dispute.version)
    slash = decided.revocation.slash_micro_block if decided.revocation is not None else 0
    if slash:
        uow.providers.slash(provider, slash)
    uow.commit()
    return decided


def _owed_for_settled(uow: UnitOfWork, dispute: Dispute) -> int:
    """What the buyers of the affected settled credits paid for them, per purchase."""
    settled_wh: dict[str, int] = defaultdict(int)
    for credit in affected_credits(uow, dispute.provider_id, dispute.freeze):
        if credit.state in (CreditState.HELD, CreditState.RETIRED) and credit.purchase_id:
            settled_wh[credit.purchase_id] += credit.wh
    owed = 0
    for purchase_id, wh in settled_wh.items():
        purchase = uow.purchases.get(purchase_id)
        if purchase is not None:
            owed += paid_for(purchase, min(wh, purchase.wh))
    return owed


def _revoke_page(
    deps: Dependencies, uow: UnitOfWork, dispute: Dispute, revocation: Revocation
) -> Dispute:
    freeze = dispute.freeze
    now_ms = deps.now_ms()
    page = uow.credits.in_window(
        dispute.provider_id, freeze.from_ms, freeze.to_ms, REVOCATION_PAGE, revocation.cursor
    )
    affected = [c for c in page.items if freeze.covers(c) and c.state != CreditState.REVOKED]
    purchases = _purchases_of(uow, affected)
    reserved: dict[str, dict[str, int]] = defaultdict(dict)
    settled_wh: dict[str, int] = defaultdict(int)
    on_sale_wh = 0
    for credit in affected:
        uow.credits.revoke(credit)
        if credit.state == CreditState.AVAILABLE:
            on_sale_wh += credit.wh
        elif credit.state == CreditState.RESERVED and credit.purchase_id in purchases:
            reserved[credit.purchase_id][credit.credit_id] = credit.wh
        elif credit.state in (CreditState.HELD, CreditState.RETIRED) and credit.purchase_id:
            settled_wh[credit.purchase_id] += credit.wh

    refunds: dict[str, int] = defaultdict(int)  # buyer -> micro-BLOCK, one write each
    bought_back: dict[str, int] = defaultdict(int)  # buyer -> Wh no longer bought
    at = now_ms // 1000
    offset = revocation.revoked_credits  # entry ids stay unique across pages
    escrowed = closed_obligations = 0
    for purchase_id, credits in reserved.items():
        before = purchases[purchase_id]
        after = without_credits(before, credits, now_ms)
        refund = before.escrow_micro_block - (
            0 if after.status == PurchaseStatus.REVOKED else after.escrow_micro_block
        )
        uow.purchases.revise(before, after)
        closed_obligations += after.status == PurchaseStatus.REVOKED
        escrowed += refund
        if refund:
            refunds[before.buyer] += refund
            uow.ledger.record(_entry(dispute, purchase_id, offset, before.buyer, refund, at))
    from_pot = 0
    running = revocation
    for purchase_id, wh in settled_wh.items():
        purchase = purchases.get(purchase_id)
        if purchase is None:
            continue
        owed = paid_for(purchase, min(wh, purchase.wh))
        paid = settled_refund(owed, running) if owed else 0
        running = refunded(running, paid, 0, 0, 0, running.cursor)
        from_pot += paid
        bought_back[purchase.buyer] += wh
        if paid:
            refunds[purchase.buyer] += paid
            uow.ledger.record(_entry(dispute, purchase_id, offset, purchase.buyer, paid, at))
    for buyer, amount in refunds.items():
        if amount:
            uow.ledger.credit(buyer, amount)
    # One provider's credits: one energy type and one jurisdiction, as minted.
    origin = (str(affected[0].energy_type), affected[0].jurisdiction) if affected else None
    for buyer, wh in bought_back.items():
        if origin is not None:
            uow.ledger.record_bought(buyer, *origin, -wh, at_ms=now_ms)
    sold_back = sum(bought_back.values())
    if on_sale_wh or closed_obligations or sold_back:
        uow.providers.revoke_energy(
            dispute.provider_id,
            on_sale_wh,
            closed_obligations,
            sold_wh=sold_back,
            at_ms=now_ms,
        )
    paged = replace(
        dispute,
        revocation=refunded(
            revocation,
            from_pot,
            escrowed,
            len(affected),
            sum(c.wh for c in affected),
            page.next_cursor,
        ),
        version=dispute.version + 1,
    )
    uow.disputes.save(paged, dispute.version)
    uow.commit()
    return paged


def _purchases_of(uow: UnitOfWork, credits: Iterable[Credit]) -> dict[str, Purchase]:
    found = {}
    for purchase_id in sorted({c.purchase_id for c in credits if c.purchase_id}):
        purchase = uow.purchases.get(purchase_id)
        if purchase is not None:
            found[purchase_id] = purchase
    return found


def _entry(
    dispute: Dispute, purchase_id: str, offset: int, buyer: str, amount: int, at: int
) -> LedgerEntry:
    return LedgerEntry(
        f"{dispute.dispute_id}/{purchase_id}/{offset}",
        EntryKind.REFUND,
        buyer,
        amount,
        dispute.dispute_id,
        at,
    )


def _close(
    deps: Dependencies, uow: UnitOfWork, dispute: Dispute, revocation: Revocation
) -> Dispute:
    provider = uow.providers.get(dispute.provider_id)
    if provider is None:
        raise NotFound("the dispute's provider is gone", provider_id=dispute.provider_id)
    now_ms = deps.now_ms()
    transfers = closing_transfers(dispute, rules_for(deps))
    reward = sum(t.micro_block for t in transfers if t.reason == TransferReason.FLAGGER_REWARD)
    to_treasury = sum(
        t.micro_block for t in transfers if t.reason == TransferReason.SLASH_TO_TREASURY
    )
    chain = slash_chain(dispute.provider_id)
    receipt = sealed_slash(
        SlashReceipt(
            marketplace_id=deps.settings.marketplace_id,
            chain=chain,
            sequence=0,
            previous_hash="",
            kind="slash",
            dispute_id=dispute.dispute_id,
            subject=dispute.subject.key,
            provider_id=dispute.provider_id,
            provider_owner=dispute.provider_owner,
            severity=str(dispute.severity),
            decided_by=str(dispute.decided_by),
            guilty_votes=sum(1 for v in dispute.votes if v.verdict == Verdict.GUILTY),
            cleared_votes=sum(1 for v in dispute.votes if v.verdict == Verdict.CLEARED),
            non_voters=dispute.non_voters,
            stake_before_micro_block=revocation.stake_after_micro_block
            + revocation.slash_micro_block,
            slash_micro_block=revocation.slash_micro_block,
            stake_after_micro_block=revocation.stake_after_micro_block,
            refunded_micro_block=revocation.refunded_micro_block,
            unrefunded_micro_block=revocation.unrefunded_micro_block,
            escrow_refunded_micro_block=revocation.escrow_refunded_micro_block,
            flagger_reward_micro_block=reward,
            treasury_micro_block=to_treasury,
            revoked_credits=revocation.revoked_credits,
            revoked_wh=revocation.revoked_wh,
            decided_at_ms=dispute.resolved_at_ms or now_ms,
            closed_at_ms=now_ms,
        ),
        uow.receipts.head(chain),
        deps.receipt_signing_key(),
    )
    done = closed(dispute, receipt.sequence, receipt.receipt_hash, transfers)
    uow.disputes.save(done, dispute.version)
    uow.providers.release_dispute(provider, dispute.dispute_id, upheld=True)
    _pay(uow, dispute, transfers, now_ms)
    uow.receipts.append_slash(receipt)
    uow.commit()
    return done


_ENTRY_KIND = {
    TransferReason.FLAGGER_REWARD: EntryKind.REWARD,
    TransferReason.BOND_RETURNED: EntryKind.BOND_RETURN,
    TransferReason.BOND_TO_PROVIDER: EntryKind.BOND_RETURN,
}


def _pay(uow: UnitOfWork, dispute: Dispute, transfers: Iterable[Transfer], now_ms: int) -> None:
    """Stage what ``transfers`` put into balances and the treasury.

    Where the money comes from is the dispute's own record (its bonds, its
    pot), which the same write moves on; one balance write per account.
    """
    to_balance: dict[str, int] = defaultdict(int)
    to_treasury = 0
    for t in transfers:
        if t.destination.kind == PocketKind.TREASURY:
            to_treasury += t.micro_block
            continue
        if t.destination.kind != PocketKind.BALANCE or t.reason not in _ENTRY_KIND:
            raise ValueError(f"a resolution does not pay {t.destination} for {t.reason}")
        account = t.destination.name
        to_balance[account] += t.micro_block
        uow.ledger.record(
            LedgerEntry(
                f"{dispute.dispute_id}/{_flagger_of(t)}",
                _ENTRY_KIND[t.reason],
                account,
                t.micro_block,
                dispute.dispute_id,
                now_ms // 1000,
            )
        )
    for account, amount in to_balance.items():
        uow.ledger.credit(account, amount)
    if to_treasury:
        shard = int(dispute.dispute_id.removeprefix("dsp-")[:8], 16) % TREASURY_SHARDS
        uow.ledger.credit_treasury(shard, to_treasury)


def _flagger_of(transfer: Transfer) -> str:
    """The flagger a payment is for: each is paid once per kind (entry ids are unique)."""
    if transfer.source.kind == PocketKind.BOND:
        return transfer.source.name.split("/", 1)[1]  # "<dispute id>/<flagger>"
    return transfer.destination.name  # a reward goes to the flagger itself
