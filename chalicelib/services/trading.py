"""Buying energy: a purchase reserves credits and pays into escrow, atomically."""

from __future__ import annotations

from dataclasses import dataclass

from chalicelib.domain import units
from chalicelib.domain.credits import frozen_by
from chalicelib.domain.errors import (
    AlreadyExists,
    InsufficientEnergy,
    NotAuthorised,
    NotFound,
    PriceAboveLimit,
    ProviderNotSelling,
    PurchaseTooLarge,
    ReplayedRequest,
)
from chalicelib.domain.ledger import EntryKind, LedgerEntry
from chalicelib.domain.providers import ProviderStatus
from chalicelib.domain.trading import (
    Purchase,
    allocate,
    max_credits_per_purchase,
    purchase_id_for,
)
from chalicelib.services.accounts import commit_spending
from chalicelib.services.auth import SignedCall, authenticate
from chalicelib.services.dependencies import Dependencies, retry_on_conflict

# Credits on sale read beyond what a purchase may take while a provider has open
# disputes: frozen credits are the oldest of a window, and are skipped.
FROZEN_LOOKAHEAD = 400


@dataclass(frozen=True)
class Order:
    provider_id: str
    wh: int
    max_price_micro_block_per_kwh: int
    idempotency_key: str | None  # None: the request's nonce is the key


def purchase_energy(deps: Dependencies, call: SignedCall, order: Order) -> Purchase:
    """Reserve ``order.wh`` of the provider's oldest credits for the signer and
    move their cost from the signer's balance into escrow, in one transaction.

    A purchase with an idempotency key that was used before by the same buyer
    returns the first purchase and buys nothing more.
    """
    purchase_id = purchase_id_for(call.account, order.idempotency_key or call.nonce)

    def attempt() -> Purchase:
        uow = deps.unit_of_work()
        buyer = authenticate(deps, uow, call)
        earlier = uow.purchases.get(purchase_id)
        if earlier is not None:
            if order.idempotency_key is None:
                # Keyed by the nonce: the very same signed request again.
                raise ReplayedRequest("this request was already received", nonce=call.nonce)
            return earlier
        provider = uow.providers.get(order.provider_id)
        if provider is None:
            raise NotFound("no such provider", provider_id=order.provider_id)
        if provider.owner == buyer:
            raise NotAuthorised(
                "a provider's owner cannot buy its own energy", provider_id=provider.provider_id
            )
        if provider.status != ProviderStatus.ACTIVE:
            raise ProviderNotSelling("the provider is not selling", status=str(provider.status))
        if provider.price_micro_block_per_kwh > order.max_price_micro_block_per_kwh:
            raise PriceAboveLimit(
                "the provider's price is above max_price_per_kwh",
                price_micro_block_per_kwh=provider.price_micro_block_per_kwh,
                max_price_micro_block_per_kwh=order.max_price_micro_block_per_kwh,
            )
        # One more than a purchase may take tells "too large" from "not enough".
        max_credits = max_credits_per_purchase(uow.max_writes)
        now_ms = deps.clock() * 1000
        # A credit past its expiry is out of the market even before the expiry
        # job (every 15 minutes) has taken it off the index; one an open
        # dispute holds is out of it until the dispute resolves (and the read
        # looks further ahead, past the frozen ones).
        lookahead = FROZEN_LOOKAHEAD if provider.freezes else 0
        on_sale = [
            c
            for c in uow.credits.available(provider.provider_id, max_credits + 1 + lookahead)
            if c.expires_at_ms > now_ms and frozen_by(provider.freezes, c) is None
        ][: max_credits + 1]
        allocation = allocate(on_sale[:max_credits], order.wh)
        if allocation is None:
            if len(on_sale) > max_credits:
                raise PurchaseTooLarge(
                    "the purchase needs more credits than one purchase can take",
                    max_credits=max_credits,
                    max_wh=sum(c.wh for c in on_sale[:max_credits]),
                )
            raise InsufficientEnergy(
                "the provider has less energy on sale",
                available_wh=sum(c.wh for c in on_sale),
                requested_wh=order.wh,
            )
        cost = units.cost_micro_block(order.wh, provider.price_micro_block_per_kwh)
        credit_ids = [c.credit_id for c in allocation.whole]
        for credit in allocation.whole:
            uow.credits.reserve(credit, purchase_id)
        if allocation.split is not None:
            part = uow.credits.split(allocation.split, allocation.split_wh, purchase_id)
            credit_ids.append(part.credit_id)
        newest = max(
            [c.minted_at_ms for c in allocation.whole]
            + ([allocation.split.minted_at_ms] if allocation.split else [])
        )
        purchase = Purchase(
            purchase_id=purchase_id,
            buyer=buyer,
            provider_id=provider.provider_id,
            wh=order.wh,
            price_micro_block_per_kwh=provider.price_micro_block_per_kwh,
            escrow_micro_block=cost,
            credit_ids=tuple(credit_ids),
            created_at_ms=now_ms,
            settles_at_ms=max(now_ms, newest + deps.settings.dispute_window_ms),
            energy_type=str(provider.energy_type),
            jurisdiction=provider.jurisdiction,
        )
        uow.purchases.add(purchase)
        uow.providers.reserve_energy(provider, order.wh)
        uow.ledger.debit(buyer, cost, bought_at_ms=now_ms)
        uow.ledger.record(
            LedgerEntry(purchase_id, EntryKind.PURCHASE, buyer, cost, purchase_id, now_ms // 1000)
        )
        try:
            commit_spending(deps, uow, buyer, cost)
        except AlreadyExists:
            # The same purchase committed by a concurrent retry: it is the answer.
            found = deps.unit_of_work().purchases.get(purchase_id)
            if found is None:
                raise
            return found
        return purchase

    return retry_on_conflict(attempt)


def get_purchase(deps: Dependencies, purchase_id: str) -> Purchase:
    purchase = deps.unit_of_work().purchases.get(purchase_id)
    if purchase is None:
        raise NotFound("no such purchase", transaction_id=purchase_id)
    return purchase
