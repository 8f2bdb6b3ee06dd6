"""Offers: what can be bought now, per provider, at its current price."""

from __future__ import annotations

from dataclasses import dataclass

from chalicelib.domain.credits import frozen_by
from chalicelib.domain.providers import Provider, ProviderQuery
from chalicelib.services.dependencies import Dependencies
from chalicelib.services.ports import Page
from chalicelib.services.trading import FROZEN_LOOKAHEAD


@dataclass(frozen=True)
class Offer:
    provider: Provider
    available_wh: int
    oldest_credit_minted_at_ms: int  # the credit a purchase takes first


def get_offers(
    deps: Dependencies, query: ProviderQuery, min_wh: int, limit: int, cursor: str | None
) -> Page[Offer]:
    """Active providers with at least ``min_wh`` (and some energy) on sale,
    cheapest first, from the provider listing indexes; one Query per offer on
    the provider's on-sale index finds its oldest credit.

    Like ``listProviders``, a page may be short when the filters are selective:
    its cursor resumes where the listing stopped.
    """
    uow = deps.unit_of_work()
    listing = uow.providers.query(query, limit, cursor)
    offers = []
    for provider in listing.items:
        if provider.on_sale_wh < max(min_wh, 1):
            continue
        # Credits an open dispute holds are not on offer; they are the oldest.
        lookahead = FROZEN_LOOKAHEAD if provider.freezes else 0
        oldest = [
            c
            for c in uow.credits.available(provider.provider_id, 1 + lookahead)
            if frozen_by(provider.freezes, c) is None
        ]
        if not oldest:
            continue  # sold out between the listing and now
        offers.append(Offer(provider, provider.on_sale_wh, oldest[0].minted_at_ms))
    return Page(offers, listing.next_cursor)
