"""An account's whole position in one call."""

from __future__ import annotations

from dataclasses import dataclass

from chalicelib.domain.carbon import CarbonOffset
from chalicelib.domain.credits import Credit, disputed
from chalicelib.domain.errors import NotFound
from chalicelib.domain.providers import Provider
from chalicelib.domain.trading import Purchase
from chalicelib.services import carbon
from chalicelib.services.dependencies import Dependencies
from chalicelib.services.ports import Page

# Open purchases are read whole (escrow is their sum), at most this many per page.
OPEN_PAGE = 100


@dataclass(frozen=True)
class Portfolio:
    account: str
    balance_micro_block: int
    stake_micro_block: int
    escrow_micro_block: int
    open_purchases: list[Purchase]
    holdings: Page[Credit]
    disputed: dict[str, str]  # holdings an open dispute holds: credit id -> dispute id
    history: Page[Purchase]  # settled purchases, newest first
    providers: list[Provider]
    earned_micro_block: int
    sold_wh: int
    carbon: CarbonOffset


def get_portfolio(
    deps: Dependencies,
    account: str,
    *,
    holdings_limit: int = 50,
    holdings_cursor: str | None = None,
    history_limit: int = 20,
    history_cursor: str | None = None,
) -> Portfolio:
    """Balance, stake, escrow and open purchases, holdings with provenance,
    purchase history, earnings (as a provider) and carbon offset so far.

    Escrow is the sum of the open purchases, read whole: an account's open
    purchases are bounded by what is awaiting settlement, not by its history.
    """
    uow = deps.unit_of_work()
    if uow.accounts.get(account) is None:
        raise NotFound("no such account", account=account)
    open_purchases: list[Purchase] = []
    cursor: str | None = None
    while True:
        page = uow.purchases.by_buyer(account, open_only=True, limit=OPEN_PAGE, cursor=cursor)
        open_purchases.extend(page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    providers = list(uow.providers.owned_by(account))
    holdings = uow.credits.holdings(account, holdings_limit, holdings_cursor)
    sources = [uow.providers.get(p) for p in sorted({c.provider_id for c in holdings.items})]
    return Portfolio(
        account=account,
        balance_micro_block=uow.ledger.balance(account),
        stake_micro_block=sum(p.stake_micro_block for p in providers),
        escrow_micro_block=sum(p.escrow_micro_block for p in open_purchases),
        open_purchases=open_purchases,
        holdings=holdings,
        disputed=disputed(holdings.items, {p.provider_id: p.freezes for p in sources if p}),
        history=uow.purchases.by_buyer(
            account, open_only=False, limit=history_limit, cursor=history_cursor
        ),
        providers=providers,
        earned_micro_block=sum(p.earned_micro_block for p in providers),
        sold_wh=sum(p.sold_wh for p in providers),
        carbon=carbon.account_offset(deps, uow, account),
    )
