"""Carbon offset: what an account's purchases, a provider's sales or the market's settled energy avoided.

All three answer with the same :class:`~chalicelib.domain.carbon.CarbonOffset`,
computed by one rule (chalicelib.domain.carbon) with the published factors and
whatever the operator set over them. None grows with history: an account's
figure reads its record and its one ledger counter item, a provider's its
record; the market's figure comes from totals its caller already keeps.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

from chalicelib.config import Settings
from chalicelib.domain import carbon
from chalicelib.domain.carbon import CarbonOffset, Factors, Origin
from chalicelib.domain.errors import NotFound
from chalicelib.services.dependencies import Dependencies
from chalicelib.services.ports import UnitOfWork


def factors(settings: Settings) -> Factors:
    """The published factors with the deployment's settings over them."""
    return carbon.published_factors().overridden(
        grid=settings.carbon_grid_g_co2_per_kwh,
        life_cycle=settings.carbon_life_cycle_g_co2_per_kwh,
        defaults=settings.carbon_g_co2_per_kwh,
    )


def account_offset(deps: Dependencies, uow: UnitOfWork, account: str) -> CarbonOffset:
    """What the energy ``account`` bought and settled avoided (its existence is
    the caller's to check: the portfolio has already read the account)."""
    bought = uow.ledger.bought(account)
    return carbon.offset(bought.wh_by_type, bought.origins(), factors(deps.settings))


def account_carbon(deps: Dependencies, account: str) -> CarbonOffset:
    uow = deps.unit_of_work()
    if uow.accounts.get(account) is None:
        raise NotFound("no such account", account=account)
    return account_offset(deps, uow, account)


def provider_carbon(deps: Dependencies, provider_id: str) -> CarbonOffset:
    """What a provider's settled sales avoided: all it sold, from its one
    meter, of its type and in its jurisdiction (both fixed at registration)."""
    provider = deps.unit_of_work().providers.get(provider_id)
    if provider is None:
        raise NotFound("no such provider", provider_id=provider_id)
    energy_type = str(provider.energy_type)
    return carbon.offset(
        {energy_type: provider.sold_wh},
        {(energy_type, provider.jurisdiction): provider.sold_wh},
        factors(deps.settings),
    )


def market_carbon(deps: Dependencies, settled_wh: Mapping[Origin, int]) -> CarbonOffset:
    """What all energy settled in the market avoided, from its settled Wh by
    (energy type, jurisdiction): totals the caller keeps (the analytics
    aggregates), so that this reads nothing and costs the same at any history.

    ``settled_wh`` holds Wh settled and not since revoked; a jurisdiction of
    None counts at the energy type's default factor.
    """
    by_type: dict[str, int] = defaultdict(int)
    for (energy_type, _), wh in settled_wh.items():
        by_type[energy_type] += wh
    return carbon.offset(dict(by_type), settled_wh, factors(deps.settings))
