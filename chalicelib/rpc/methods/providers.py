"""Provider methods: register, update, look up and list providers; move stake."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Annotated, Any

from pydantic import Field, StrictBool, StrictStr

from chalicelib.domain import units
from chalicelib.domain.errors import (
    AlreadyExists,
    InsufficientBalance,
    InsufficientStake,
    InvalidState,
    NotFound,
    OpenObligations,
)
from chalicelib.domain.providers import (
    EnergyType,
    Location,
    Provider,
    ProviderQuery,
    ProviderStatus,
)
from chalicelib.rpc.methods.common import AUTH_ERRORS, registry, signed_call
from chalicelib.rpc.methods.fields import (
    WIRE_NAMES,
    AccountName,
    Cursor,
    Jurisdiction,
    KwhAsWh,
    Latitude,
    Longitude,
    MeterAddress,
    MicroBlock,
    PageLimit,
    Params,
    PositiveKwhAsWh,
    PositiveMicroBlock,
    PositivePricePerKwh,
    PricePerKwh,
    ProviderId,
    PublicKeyHex,
    Result,
    SignedParams,
    degrees,
)
from chalicelib.rpc.registry import CallContext
from chalicelib.services import providers
from chalicelib.services.auth import SignedCall
from chalicelib.services.dependencies import Dependencies

DisplayName = Annotated[StrictStr, Field(min_length=1, max_length=80)]


class RegisterProviderParams(SignedParams):
    owner: AccountName
    display_name: DisplayName
    energy_type: EnergyType
    jurisdiction: Jurisdiction
    latitude: Latitude
    longitude: Longitude
    capacity_wh: PositiveKwhAsWh = Field(
        validation_alias=WIRE_NAMES["capacity_wh"], description="Peak output in kW (kWh per hour)"
    )
    price_per_kwh: PositivePricePerKwh
    stake: MicroBlock = Field(description="Stake in micro-BLOCK, at least 1,000 BLOCK")
    meter_address: MeterAddress
    meter_public_key: PublicKeyHex


class ProviderUpdates(Params):
    display_name: DisplayName | None = None
    capacity_wh: PositiveKwhAsWh | None = Field(
        default=None, validation_alias=WIRE_NAMES["capacity_wh"]
    )
    price_per_kwh: PositivePricePerKwh | None = None
    paused: StrictBool | None = None
    meter_public_key: PublicKeyHex | None = Field(
        default=None, description="Rotate the meter's Ed25519 key (after re-provisioning)"
    )


class UpdateProviderParams(SignedParams):
    provider_id: ProviderId
    updates: ProviderUpdates


class ProviderRef(Params):
    provider_id: ProviderId


class StakeParams(SignedParams):
    provider_id: ProviderId
    amount_micro_block: PositiveMicroBlock


class ProviderFilter(Params):
    """The filters listProviders and getOffers share, as their first params."""

    energy_type: EnergyType | None = None
    jurisdiction: Jurisdiction | None = None
    max_price: PricePerKwh | None = Field(default=None, description="BLOCK per kWh")

    def query(
        self, *, min_capacity_wh: int | None = None, include_inactive: bool = False
    ) -> ProviderQuery:
        return ProviderQuery(
            energy_type=self.energy_type,
            jurisdiction=self.jurisdiction,
            max_price_micro_block_per_kwh=self.max_price,
            min_capacity_wh=min_capacity_wh,
            include_inactive=include_inactive,
        )


class ListProvidersParams(ProviderFilter):
    min_capacity: KwhAsWh | None = Field(default=None, description="kWh")
    include_inactive: StrictBool = Field(
        default=False, description="Also list paused and suspended"
    )
    limit: PageLimit = 50
    cursor: Cursor | None = None


def listing(provider: Provider) -> dict[str, Any]:
    """What a provider's result and an offer both show of the provider."""
    return {
        "provider_id": provider.provider_id,
        "display_name": provider.display_name,
        "energy_type": provider.energy_type,
        "jurisdiction": provider.jurisdiction,
        "latitude": degrees(provider.location.latitude_micro_deg),
        "longitude": degrees(provider.location.longitude_micro_deg),
        "price_per_kwh": units.block_from_micro(provider.price_micro_block_per_kwh),
        "price_micro_block_per_kwh": provider.price_micro_block_per_kwh,
        "rating": provider.rating,
    }


class ProviderResult(Result):
    provider_id: str
    owner: str
    display_name: str
    energy_type: EnergyType
    jurisdiction: str
    latitude: Decimal
    longitude: Decimal
    capacity_kwh: Decimal
    capacity_wh: int
    price_per_kwh: Decimal = Field(description="BLOCK per kWh")
    price_micro_block_per_kwh: int
    stake: int = Field(description="micro-BLOCK")
    status: ProviderStatus
    available_kwh: Decimal = Field(description="On sale now; energy open disputes froze is not")
    available_wh: int
    rating: float | None = Field(
        description="0-5; share of settled purchases not overturned by disputes; null before any"
    )
    uptime_percent: float | None = Field(
        description="Share of the last 96 quarter-hours with an accepted reading"
    )
    meter_address: str
    meter_public_key: str
    open_obligations: int
    created_at: int
    updated_at: int

    @classmethod
    def of(cls, provider: Provider, now: int) -> ProviderResult:
        return cls(
            **listing(provider),
            owner=provider.owner,
            capacity_kwh=units.kwh_from_wh(provider.capacity_wh),
            capacity_wh=provider.capacity_wh,
            stake=provider.stake_micro_block,
            status=provider.status,
            available_kwh=units.kwh_from_wh(provider.on_sale_wh),
            available_wh=provider.on_sale_wh,
            uptime_percent=provider.uptime_percent(now),
            meter_address=provider.meter_address,
            meter_public_key=provider.meter_public_key,
            open_obligations=provider.open_obligations,
            created_at=provider.created_at,
            updated_at=provider.updated_at,
        )


class ProviderListResult(Result):
    providers: list[ProviderResult]
    next_cursor: str | None


def _as_of_now(context: CallContext, provider: Provider) -> ProviderResult:
    return ProviderResult.of(provider, context.deps.clock())


@registry.method(
    "energy.registerProvider",
    summary="Register as an energy provider",
    result=ProviderResult,
    signed=True,
    original_name="registerProvider",
    errors=(*AUTH_ERRORS, InsufficientStake, InsufficientBalance, AlreadyExists),
)
def register_provider(context: CallContext, params: RegisterProviderParams) -> ProviderResult:
    """Signed by ``owner``. The stake (at least 1,000 BLOCK) moves from the
    owner's balance into stake in the same atomic write that creates the
    provider and claims the meter address. The provider id is derived from
    owner and meter address, so a retried registration cannot create a twin."""
    registration = providers.Registration(
        owner=params.owner,
        display_name=params.display_name,
        energy_type=params.energy_type,
        jurisdiction=params.jurisdiction,
        location=Location(params.latitude, params.longitude),
        capacity_wh=params.capacity_wh,
        price_micro_block_per_kwh=params.price_per_kwh,
        stake_micro_block=params.stake,
        meter_address=params.meter_address,
        meter_public_key=params.meter_public_key,
    )
    provider = providers.register_provider(context.deps, signed_call(context, params), registration)
    return _as_of_now(context, provider)


@registry.method(
    "energy.updateProvider",
    summary="Change price, capacity, name; pause or resume",
    result=ProviderResult,
    signed=True,
    original_name="updateProvider",
    errors=(*AUTH_ERRORS, NotFound),
)
def update_provider(context: CallContext, params: UpdateProviderParams) -> ProviderResult:
    """Signed by the provider's owner. Only the members present in ``updates``
    change."""
    u = params.updates
    provider = providers.update_provider(
        context.deps,
        signed_call(context, params),
        params.provider_id,
        providers.ProviderUpdate(
            display_name=u.display_name,
            capacity_wh=u.capacity_wh,
            price_micro_block_per_kwh=u.price_per_kwh,
            paused=u.paused,
            meter_public_key=u.meter_public_key,
        ),
    )
    return _as_of_now(context, provider)


@registry.method(
    "energy.getProvider",
    summary="One provider",
    result=ProviderResult,
    original_name="getProvider",
    errors=(NotFound,),
)
def get_provider(context: CallContext, params: ProviderRef) -> ProviderResult:
    return _as_of_now(context, providers.get_provider(context.deps, params.provider_id))


@registry.method(
    "energy.listProviders",
    summary="Providers by price, with filters",
    result=ProviderListResult,
    original_name="listProviders",
)
def list_providers(context: CallContext, params: ListProvidersParams) -> ProviderListResult:
    """Cheapest first (then by id). Only active providers unless
    ``include_inactive``. Pass ``next_cursor`` back as ``cursor`` for the next
    page; it is null on the last page."""
    page = providers.list_providers(
        context.deps,
        params.query(min_capacity_wh=params.min_capacity, include_inactive=params.include_inactive),
        params.limit,
        params.cursor,
    )
    now = context.deps.clock()
    return ProviderListResult(
        providers=[ProviderResult.of(p, now) for p in page.items], next_cursor=page.next_cursor
    )


@registry.method(
    "energy.topUpStake",
    summary="Add to a provider's stake from your balance",
    result=ProviderResult,
    signed=True,
    errors=(*AUTH_ERRORS, NotFound, InsufficientBalance, InvalidState),
)
def top_up_stake(context: CallContext, params: StakeParams) -> ProviderResult:
    """Signed by the provider's owner. A suspended provider whose stake reaches
    the minimum again becomes active (or paused, if its owner paused it)."""
    return _move_stake(context, params, providers.top_up_stake)


@registry.method(
    "energy.withdrawStake",
    summary="Return stake to your balance",
    result=ProviderResult,
    signed=True,
    errors=(*AUTH_ERRORS, NotFound, OpenObligations, InsufficientStake, InvalidState),
)
def withdraw_stake(context: CallContext, params: StakeParams) -> ProviderResult:
    """Signed by the provider's owner; refused while the provider has open
    obligations. Leaving less than the minimum stake suspends the provider."""
    return _move_stake(context, params, providers.withdraw_stake)


StakeMove = Callable[[Dependencies, SignedCall, str, int], Provider]


def _move_stake(context: CallContext, params: StakeParams, move: StakeMove) -> ProviderResult:
    call = signed_call(context, params)
    provider = move(context.deps, call, params.provider_id, params.amount_micro_block)
    return _as_of_now(context, provider)
