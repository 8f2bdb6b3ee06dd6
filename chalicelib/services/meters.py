"""Looking at meters and credits: state, refusals, and a provider's credits."""

from __future__ import annotations

from chalicelib.domain.credits import Credit, disputed
from chalicelib.domain.errors import NotFound
from chalicelib.domain.readings import MeterState, RejectionRecord
from chalicelib.services.dependencies import Dependencies
from chalicelib.services.ports import Page


def get_meter(deps: Dependencies, meter_address: str) -> MeterState:
    meter = deps.unit_of_work().meters.get(meter_address)
    if meter is None:
        raise NotFound("no such meter", meter_address=meter_address)
    return meter


def meter_rejections(
    deps: Dependencies, meter_address: str, limit: int, cursor: str | None
) -> Page[RejectionRecord]:
    return deps.unit_of_work().meters.rejections(meter_address, limit, cursor)


def provider_credits(
    deps: Dependencies, provider_id: str, limit: int, cursor: str | None
) -> tuple[Page[Credit], dict[str, str]]:
    """A provider's credits, newest first, and which of them open disputes hold."""
    uow = deps.unit_of_work()
    provider = uow.providers.get(provider_id)
    if provider is None:
        raise NotFound("no such provider", provider_id=provider_id)
    page = uow.credits.by_provider(provider_id, limit, cursor)
    return page, disputed(page.items, {provider_id: provider.freezes})
