"""Trading methods: buy energy into escrow, look a purchase up, see what is on sale."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import Field, StrictStr

from chalicelib.domain import units
from chalicelib.domain.errors import (
    InsufficientBalance,
    InsufficientEnergy,
    NotFound,
    PriceAboveLimit,
    ProviderNotSelling,
    PurchaseTooLarge,
)
from chalicelib.domain.providers import EnergyType
from chalicelib.domain.trading import Purchase
from chalicelib.rpc.methods.common import AUTH_ERRORS, registry, signed_call
from chalicelib.rpc.methods.fields import (
    WIRE_NAMES,
    Cursor,
    KwhAsWh,
    PageLimit,
    Params,
    PositiveKwhAsWh,
    PricePerKwh,
    ProviderId,
    Result,
    SignedParams,
    TransactionId,
)
from chalicelib.rpc.methods.providers import ProviderFilter, listing
from chalicelib.rpc.registry import CallContext
from chalicelib.services import offers, trading
from chalicelib.services.offers import Offer


class PurchaseParams(SignedParams):
    provider_id: ProviderId
    wh: PositiveKwhAsWh = Field(validation_alias=WIRE_NAMES["wh"], description="Energy to buy, kWh")
    max_price_per_kwh: PricePerKwh = Field(description="The most to pay, BLOCK per kWh")
    idempotency_key: Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9_-]{8,64}$")] | None = Field(
        default=None,
        description="Retrying with the same key never buys twice; default: the request's nonce",
    )


class PurchaseRef(Params):
    transaction_id: TransactionId


class PurchaseResult(Result):
    transaction_id: str
    status: str
    buyer: str
    provider_id: str
    kwh_amount: Decimal
    amount_wh: int
    price_per_kwh: Decimal = Field(description="BLOCK per kWh, the provider's price")
    price_micro_block_per_kwh: int
    total_cost: Decimal = Field(description="BLOCK, held in escrow until settlement")
    total_cost_micro_block: int
    credit_ids: list[str]
    created_at_ms: int
    settles_at_ms: int = Field(description="When settlement may run without the buyer")
    settled_at_ms: int | None
    receipt: ReceiptRef | None = Field(description="The settlement's receipt, once settled")

    @classmethod
    def of(cls, purchase: Purchase) -> PurchaseResult:
        return cls(
            transaction_id=purchase.purchase_id,
            status=str(purchase.status),
            buyer=purchase.buyer,
            provider_id=purchase.provider_id,
            kwh_amount=units.kwh_from_wh(purchase.wh),
            amount_wh=purchase.wh,
            price_per_kwh=units.block_from_micro(purchase.price_micro_block_per_kwh),
            price_micro_block_per_kwh=purchase.price_micro_block_per_kwh,
            total_cost=units.block_from_micro(purchase.escrow_micro_block),
            total_cost_micro_block=purchase.escrow_micro_block,
            credit_ids=list(purchase.credit_ids),
            created_at_ms=purchase.created_at_ms,
            settles_at_ms=purchase.settles_at_ms,
            settled_at_ms=purchase.settled_at_ms,
            receipt=(
                ReceiptRef(
                    chain=purchase.receipt_chain,
                    sequence=purchase.receipt_sequence,
                    receipt_hash=purchase.receipt_hash,
                )
                if purchase.receipt_chain is not None
                and purchase.receipt_sequence is not None
                and purchase.receipt_hash is not None
                else None
            ),
        )


class ReceiptRef(Result):
    chain: str = Field(description="The provider id: each provider's receipts form one chain")
    sequence: int
    receipt_hash: str


class OffersParams(ProviderFilter):
    min_available_wh: KwhAsWh | None = Field(
        default=None,
        validation_alias=WIRE_NAMES["min_available_wh"],
        description="At least this much on sale",
    )
    limit: PageLimit = 50
    cursor: Cursor | None = None


class OfferResult(Result):
    provider_id: str
    display_name: str
    energy_type: EnergyType
    jurisdiction: str
    latitude: Decimal
    longitude: Decimal
    price_per_kwh: Decimal = Field(description="BLOCK per kWh")
    price_micro_block_per_kwh: int
    available_kwh: Decimal
    available_wh: int
    oldest_credit_minted_at_ms: int = Field(description="A purchase takes the oldest first")
    oldest_credit_age_seconds: int
    rating: float | None

    @classmethod
    def of(cls, offer: Offer, now: int) -> OfferResult:
        return cls(
            **listing(offer.provider),
            available_kwh=units.kwh_from_wh(offer.available_wh),
            available_wh=offer.available_wh,
            oldest_credit_minted_at_ms=offer.oldest_credit_minted_at_ms,
            oldest_credit_age_seconds=max(0, now - offer.oldest_credit_minted_at_ms // 1000),
        )


class OffersResult(Result):
    offers: list[OfferResult]
    next_cursor: str | None


@registry.method(
    "energy.purchaseEnergy",
    summary="Buy energy from a provider: credits reserved, cost held in escrow",
    result=PurchaseResult,
    signed=True,
    original_name="purchaseEnergy",
    errors=(
        *AUTH_ERRORS,
        NotFound,
        PriceAboveLimit,
        InsufficientEnergy,
        ProviderNotSelling,
        PurchaseTooLarge,
        InsufficientBalance,
    ),
)
def purchase_energy(context: CallContext, params: PurchaseParams) -> PurchaseResult:
    """Signed by the buyer. In one atomic write the cost (price x energy, rounded
    up to a micro-BLOCK) moves from the buyer's balance into escrow and the
    energy is reserved from the provider's credits, oldest first (the last one
    split if needed). Refused, changing nothing, when the price is above
    ``max_price_per_kwh``, the balance or the energy on sale is short, the
    provider is paused or suspended, or the buyer owns the provider. A second
    purchase with the same ``idempotency_key`` returns the first."""
    purchase = trading.purchase_energy(
        context.deps,
        signed_call(context, params),
        trading.Order(
            provider_id=params.provider_id,
            wh=params.wh,
            max_price_micro_block_per_kwh=params.max_price_per_kwh,
            idempotency_key=params.idempotency_key,
        ),
    )
    return PurchaseResult.of(purchase)


@registry.method(
    "energy.getPurchase",
    summary="One purchase: its status, escrow and credits",
    result=PurchaseResult,
    errors=(NotFound,),
)
def get_purchase(context: CallContext, params: PurchaseRef) -> PurchaseResult:
    return PurchaseResult.of(trading.get_purchase(context.deps, params.transaction_id))


@registry.method(
    "energy.getOffers",
    summary="What can be bought now: per provider, the energy on sale at its price",
    result=OffersResult,
    original_name="getOffers",
)
def get_offers(context: CallContext, params: OffersParams) -> OffersResult:
    """Active providers with energy on sale, cheapest first, with the age of
    the oldest credit (the one a purchase takes first). Filters: energy_type,
    jurisdiction, max_price (BLOCK per kWh), min_kwh on sale. A selective
    filter may return a short page with a cursor (as listProviders does)."""
    page = offers.get_offers(
        context.deps, params.query(), params.min_available_wh or 0, params.limit, params.cursor
    )
    now = context.deps.clock()
    return OffersResult(
        offers=[OfferResult.of(offer, now) for offer in page.items],
        next_cursor=page.next_cursor,
    )
