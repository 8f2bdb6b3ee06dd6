"""Settlement: escrow to the provider, credits to the buyer, a signed receipt.

One settlement is one transaction: the purchase closes, every reserved credit
becomes the buyer's holding, the escrow goes to the provider's owner (less
the market fee, to the treasury), the provider's obligation closes, and a
receipt, signed and linked to the provider's previous receipt, is appended.
The purchase's "still open" condition and the chain head's "still at the
sequence read" condition make a second settlement impossible, however many
job runs and buyer requests race for it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

from chalicelib.domain.credits import frozen_by
from chalicelib.domain.errors import (
    ConcurrentUpdate,
    CreditsDisputed,
    DomainError,
    InvalidState,
    NotAuthorised,
    NotFound,
)
from chalicelib.domain.ledger import EntryKind, LedgerEntry
from chalicelib.domain.receipts import (
    ChainHead,
    Receipt,
    SignedHead,
    settlement_receipt,
    signed_head,
)
from chalicelib.domain.trading import Purchase, PurchaseStatus, SettledBy, market_fee
from chalicelib.services.auth import SignedCall, authenticate
from chalicelib.services.dependencies import Dependencies, retry_on_conflict
from chalicelib.services.ports import JobRun, Page, UnitOfWork

logger = logging.getLogger(__name__)

SETTLEMENT_JOB = "settlement"
# The treasury is spread over this many items: every settlement with a fee
# writes one, and a single item would serialise them all.
TREASURY_SHARDS = 16
# One run settles at most this many purchases; the rest wait for the next run
# (a run is one Lambda invocation, with its time limit).
DEFAULT_RUN_BUDGET = 500


@dataclass(frozen=True)
class Settlement:
    purchase: Purchase
    receipt: Receipt
    already_settled: bool = False


def settle_early(deps: Dependencies, call: SignedCall, purchase_id: str) -> Settlement:
    """The buyer settles before the dispute window has passed.

    Settling a purchase that is already settled changes nothing (but uses the
    request's nonce) and answers with the settlement that happened.
    """

    def attempt() -> Settlement:
        uow = deps.unit_of_work()
        buyer = authenticate(deps, uow, call)
        purchase = _purchase(uow, purchase_id)
        if purchase.buyer != buyer:
            raise NotAuthorised(
                "only the buyer may settle a purchase early", transaction_id=purchase_id
            )
        if purchase.status == PurchaseStatus.SETTLED:
            uow.commit()  # the nonce: a replay of this very request is refused
            return _settled_already(uow, purchase)
        if purchase.status == PurchaseStatus.REVOKED:
            raise InvalidState(
                "a dispute revoked every credit of the purchase; its escrow was refunded",
                transaction_id=purchase_id,
            )
        return _settle(deps, uow, purchase, SettledBy.BUYER)

    return retry_on_conflict(attempt)


def settle_due(
    deps: Dependencies, purchase_id: str, as_listed: Purchase | None = None
) -> Settlement | None:
    """Settle one purchase whose dispute window has passed; None if it is not due.

    ``as_listed`` is the purchase as the due index showed it: the first attempt
    trusts it (the transaction's "still open" condition guards against a
    stale copy), and a retry reads the purchase afresh.
    """
    listed = [as_listed] if as_listed is not None else []

    def attempt() -> Settlement | None:
        uow = deps.unit_of_work()
        purchase = listed.pop() if listed else _purchase(uow, purchase_id)
        if purchase.status == PurchaseStatus.SETTLED:
            return _settled_already(uow, purchase)
        if not purchase.is_due(deps.clock() * 1000):
            return None
        try:
            return _settle(deps, uow, purchase, SettledBy.SCHEDULE)
        except CreditsDisputed:
            return None  # it waits, and stays due, until the dispute resolves

    return retry_on_conflict(attempt)


def run_settlement(deps: Dependencies, budget: int = DEFAULT_RUN_BUDGET) -> JobRun:
    """The scheduled job: settle what is due, where the job left off.

    The storage reads only the work that is due, and what stayed due because
    it could not be done, never the settled history behind it. Safe to run
    twice or concurrently: each settlement is conditional on the purchase
    still being open.
    """
    now_ms = deps.clock() * 1000
    run = JobRun(SETTLEMENT_JOB)

    def settle_page(due: Sequence[Purchase]) -> bool:
        handled_all = True
        for purchase in due:
            try:
                outcome = settle_due(deps, purchase.purchase_id, purchase)
            except DomainError as exc:
                # Left open and due: the next run tries again.
                run.failed += 1
                handled_all = False
                logger.warning("settlement of %s failed: %s", purchase.purchase_id, exc.reason)
                continue
            if outcome is None:
                handled_all = False
            elif not outcome.already_settled:
                run.done += 1
                run.wh += outcome.purchase.wh
        return handled_all

    deps.unit_of_work().purchases.each_due(run, now_ms, budget, settle_page)
    logger.info("scheduled job finished", extra={"job_run": run.as_log()})
    return run


def provider_receipts(
    deps: Dependencies, provider_id: str, limit: int, cursor: str | None
) -> tuple[Page[Receipt], ChainHead | None]:
    """A provider's receipt chain, oldest first, and its head (where an export ends)."""
    uow = deps.unit_of_work()
    return uow.receipts.by_chain(provider_id, limit, cursor), uow.receipts.head(provider_id)


def sign_head(deps: Dependencies, head: ChainHead) -> SignedHead:
    """A chain's head signed by the receipt key now: an export carries it, so
    receipts cut from the end of a chain are seen (docs/receipts.md)."""
    return signed_head(
        head, deps.settings.marketplace_id, deps.clock() * 1000, deps.receipt_signing_key()
    )


def buyer_receipts(
    deps: Dependencies, buyer: str, limit: int, cursor: str | None
) -> tuple[Page[Receipt], None]:
    """The receipts of a buyer's settlements, newest first (across chains: no head)."""
    return deps.unit_of_work().receipts.by_buyer(buyer, limit, cursor), None


def _purchase(uow: UnitOfWork, purchase_id: str) -> Purchase:
    purchase = uow.purchases.get(purchase_id)
    if purchase is None:
        raise NotFound("no such purchase", transaction_id=purchase_id)
    return purchase


def _settled_already(uow: UnitOfWork, purchase: Purchase) -> Settlement:
    receipt = (
        uow.receipts.get(purchase.receipt_chain, purchase.receipt_sequence)
        if purchase.receipt_chain is not None and purchase.receipt_sequence is not None
        else None
    )
    if receipt is None:
        raise ConcurrentUpdate(
            "the purchase's receipt is not readable yet; retry",
            transaction_id=purchase.purchase_id,
        )
    return Settlement(purchase, receipt, already_settled=True)


def _settle(
    deps: Dependencies, uow: UnitOfWork, purchase: Purchase, settled_by: SettledBy
) -> Settlement:
    provider = uow.providers.get(purchase.provider_id)
    if provider is None:  # providers are never deleted; a broken record is a bug
        raise NotFound("the purchase's provider is gone", provider_id=purchase.provider_id)
    if provider.freezes:
        # Only read when the provider has an open dispute; settle_obligation's
        # condition catches a dispute opened after this read.
        for credit in uow.credits.get_many(purchase.credit_ids):
            dispute_id = frozen_by(provider.freezes, credit)
            if dispute_id is not None:
                raise CreditsDisputed(
                    "an open dispute holds credits of this purchase; it settles once resolved",
                    transaction_id=purchase.purchase_id,
                    dispute_id=dispute_id,
                )
    now_ms = deps.clock() * 1000
    fee = market_fee(purchase.escrow_micro_block, deps.settings.market_fee_bps)
    to_provider = purchase.escrow_micro_block - fee
    receipt = settlement_receipt(
        deps.settings.marketplace_id,
        purchase,
        provider.owner,
        fee,
        uow.receipts.head(provider.provider_id),
        now_ms,
        settled_by,
        deps.receipt_signing_key(),
    )
    settled = replace(
        purchase,
        status=PurchaseStatus.SETTLED,
        settled_at_ms=now_ms,
        receipt_chain=receipt.chain,
        receipt_sequence=receipt.sequence,
        receipt_hash=receipt.receipt_hash,
    )
    uow.purchases.settle(settled)
    for credit_id in purchase.credit_ids:
        uow.credits.hold(credit_id, purchase.purchase_id, purchase.buyer)
    if to_provider:
        uow.ledger.credit(provider.owner, to_provider)
        uow.ledger.record(
            LedgerEntry(
                purchase.purchase_id,
                EntryKind.SALE,
                provider.owner,
                to_provider,
                purchase.purchase_id,
                now_ms // 1000,
            )
        )
    if fee:
        uow.ledger.credit_treasury(_treasury_shard(purchase.purchase_id), fee)
    uow.providers.settle_obligation(provider, to_provider, purchase.wh, at_ms=now_ms)
    uow.ledger.record_bought(
        purchase.buyer, str(provider.energy_type), provider.jurisdiction, purchase.wh, at_ms=now_ms
    )
    uow.receipts.append(receipt)
    uow.commit()
    return Settlement(settled, receipt)


def _treasury_shard(purchase_id: str) -> int:
    return int(purchase_id.removeprefix("pur-")[:8], 16) % TREASURY_SHARDS
