"""Looking at meters and credits: state, refusals, and a provider's credits."""

from __future__ import annotations

from chalicelib.domain.credits import Credit
from chalicelib.domain.errors import NotFound
from chalicelib.domain.readings import MeterState, RejectionRecord
from chalicelib.services.market import Market
from chalicelib.services.ports import Page


def get_meter(market: Market, meter_address: str) -> MeterState:
    meter = market.unit_of_work().meters.get(meter_address)
    if meter is None:
        raise NotFound("no such meter", meter_address=meter_address)
    return meter


def meter_rejections(
    market: Market, meter_address: str, limit: int, cursor: str | None
) -> Page[RejectionRecord]:
    return market.unit_of_work().meters.rejections(meter_address, limit, cursor)


def provider_credits(
    market: Market, provider_id: str, limit: int, cursor: str | None
) -> Page[Credit]:
    uow = market.unit_of_work()
    if uow.providers.get(provider_id) is None:
        raise NotFound("no such provider", provider_id=provider_id)
    return uow.credits.by_provider(provider_id, limit, cursor)
