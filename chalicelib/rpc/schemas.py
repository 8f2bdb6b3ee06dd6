"""Parameter and result models of the JSON-RPC API.

These models validate requests and, through ``model_json_schema``, are the
schemas of the OpenRPC document: the API's one description. Amount fields
take the original client's decimal numbers and convert them exactly (see
chalicelib.domain.units); their JSON schema says what the wire carries.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    WithJsonSchema,
    model_validator,
)

from chalicelib.domain import signing, units
from chalicelib.domain.accounts import ACCOUNT_NAME, Account
from chalicelib.domain.certificates import Certificate
from chalicelib.domain.credits import Credit
from chalicelib.domain.ledger import CHAIN_REFERENCE, LedgerEntry
from chalicelib.domain.providers import (
    JURISDICTION,
    METER_ADDRESS,
    EnergyType,
    Provider,
    ProviderStatus,
)
from chalicelib.domain.readings import MeterState, RejectionRecord, topic_for
from chalicelib.domain.receipts import Receipt
from chalicelib.domain.trading import Purchase
from chalicelib.services.auth import NONCE
from chalicelib.services.offers import Offer


class Params(BaseModel):
    """Base of every params model: unknown members are an error, not ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Result(BaseModel):
    model_config = ConfigDict(frozen=True)


def _number_schema(description: str, minimum: str | None = None) -> WithJsonSchema:
    schema: dict[str, Any] = {
        "description": description,
        "oneOf": [{"type": "number"}, {"type": "string", "pattern": r"^\d+(\.\d+)?$"}],
    }
    if minimum is not None:
        schema["x-minimum"] = minimum
    return WithJsonSchema(schema)


# Decimal kWh -> integer Wh (1 Wh resolution).
KwhAsWh = Annotated[
    int,
    BeforeValidator(lambda v, info: units.wh_from_kwh(v, info.field_name or "kwh")),
    _number_schema("Energy in kWh, exact to 1 Wh (at most 3 decimal places)."),
]
# Decimal BLOCK per kWh -> integer micro-BLOCK per kWh.
PricePerKwh = Annotated[
    int,
    BeforeValidator(lambda v, info: units.price_from_block_per_kwh(v, info.field_name or "price")),
    _number_schema("Price in BLOCK per kWh, exact to 1 micro-BLOCK (at most 6 decimals)."),
]
# Integer micro-BLOCK (1 BLOCK = 1,000,000 micro-BLOCK).
MicroBlock = Annotated[
    int,
    BeforeValidator(lambda v, info: units.micro_block_exact(v, info.field_name or "amount")),
    WithJsonSchema(
        {
            "type": "integer",
            "minimum": 0,
            "maximum": units.MAX_MICRO_BLOCK,
            "description": "Amount in micro-BLOCK (1 BLOCK = 1,000,000 micro-BLOCK).",
        }
    ),
]


def _coordinate_schema(limit: int) -> WithJsonSchema:
    return WithJsonSchema(
        {
            "type": "number",
            "minimum": -limit,
            "maximum": limit,
            "description": "Degrees, WGS 84, at most 6 decimal places.",
        }
    )


# The same, where zero makes no sense (a capacity, a price, a transfer).
PositiveKwhAsWh = Annotated[KwhAsWh, Field(gt=0)]
PositivePricePerKwh = Annotated[PricePerKwh, Field(gt=0)]
PositiveMicroBlock = Annotated[MicroBlock, Field(gt=0)]


Latitude = Annotated[
    int,
    BeforeValidator(lambda v, info: units.micro_degrees(v, 90, info.field_name or "latitude")),
    _coordinate_schema(90),
]
Longitude = Annotated[
    int,
    BeforeValidator(lambda v, info: units.micro_degrees(v, 180, info.field_name or "longitude")),
    _coordinate_schema(180),
]

AccountName = Annotated[
    StrictStr,
    Field(pattern=ACCOUNT_NAME.pattern, description="Account name, e.g. alice.theblock"),
]
PublicKeyHex = Annotated[
    StrictStr,
    Field(pattern=r"^(0x)?[0-9a-fA-F]{64}$", description="Ed25519 public key, 32 bytes hex"),
    AfterValidator(signing.normalise_hex),
]
ProviderId = Annotated[StrictStr, Field(pattern=r"^energy-0x[0-9a-f]{16}$")]
MeterAddress = Annotated[
    StrictStr,
    Field(
        pattern=METER_ADDRESS.pattern,
        description="The meter's IoT thing name, MQTT client id and topic level",
    ),
]
Jurisdiction = Annotated[
    StrictStr,
    Field(
        pattern=JURISDICTION.pattern,
        description="ISO 3166-1 alpha-2 country, optionally _subdivision: US_CA",
    ),
]
ChainReference = Annotated[StrictStr, Field(pattern=CHAIN_REFERENCE.pattern)]
Cursor = Annotated[StrictStr, Field(max_length=400, description="From next_cursor")]
PageLimit = Annotated[StrictInt, Field(ge=1, le=100)]


class Auth(Params):
    """Who signs the call, and the signature that proves it (docs/api.md)."""

    account: Annotated[StrictStr, Field(max_length=64)]
    nonce: Annotated[StrictStr, Field(pattern=NONCE.pattern)]
    timestamp: Annotated[StrictInt, Field(ge=0, description="Unix seconds")]
    signature: Annotated[
        StrictStr, Field(pattern=r"^(0x)?[0-9a-fA-F]{128}$", description="Ed25519, hex")
    ]


class SignedParams(Params):
    auth: Auth


# -- accounts and ledger -----------------------------------------------------


class NoParams(Params):
    pass


class MarketInfo(Result):
    marketplace_id: str
    operator_public_key: str
    min_stake: int = Field(description="Minimum provider stake, micro-BLOCK")
    auth_window_seconds: int
    energy_types: list[EnergyType]
    request_signing_domain: str
    receipt_public_key: str = Field(
        description="Verifies settlement receipts (hex Ed25519); empty if not configured"
    )
    market_fee_bps: int = Field(description="Treasury's share of a settlement, 1/100 %")
    dispute_window_ms: int = Field(description="How long after minting a purchase settles")
    api_version: str


class CreateAccountParams(SignedParams):
    name: AccountName
    public_key: PublicKeyHex


class AccountRef(Params):
    name: AccountName


class AccountResult(Result):
    name: str
    public_key: str
    roles: list[str]
    balance: int = Field(description="Available balance, micro-BLOCK")
    balance_block: Decimal = Field(description="The same balance in BLOCK")
    stake: int = Field(description="Total stake of the account's providers, micro-BLOCK")
    providers: list[str]
    created_at: int

    @classmethod
    def of(cls, account: Account, balance: int, providers: list[Provider]) -> AccountResult:
        return cls(
            name=account.name,
            public_key=account.public_key,
            roles=sorted(account.roles),
            balance=balance,
            balance_block=units.block_from_micro(balance),
            stake=sum(p.stake_micro_block for p in providers),
            providers=[p.provider_id for p in providers],
            created_at=account.created_at,
        )


class RoleParams(SignedParams):
    account: AccountName
    role: Literal["validator"] = Field(description="The role the operator controls")


class DepositParams(SignedParams):
    account: AccountName
    amount_micro_block: PositiveMicroBlock
    chain_tx: ChainReference = Field(description="The chain transaction that brought it")


class WithdrawParams(SignedParams):
    amount_micro_block: PositiveMicroBlock
    destination: ChainReference = Field(description="Chain address to send to")


class BalanceResult(Result):
    account: str
    balance: int = Field(description="Available balance after the call, micro-BLOCK")


class LedgerEntriesParams(Params):
    account: AccountName
    limit: PageLimit = 50
    cursor: Cursor | None = None


class LedgerEntryResult(Result):
    entry_id: str
    kind: str
    account: str
    amount_micro_block: int
    reference: str
    at: int

    @classmethod
    def of(cls, entry: LedgerEntry) -> LedgerEntryResult:
        return cls(
            entry_id=entry.entry_id,
            kind=entry.kind,
            account=entry.account,
            amount_micro_block=entry.micro_block,
            reference=entry.reference,
            at=entry.at,
        )


class LedgerEntriesResult(Result):
    entries: list[LedgerEntryResult]
    next_cursor: str | None


# -- providers -----------------------------------------------------------------


class RegisterProviderParams(SignedParams):
    owner: AccountName
    display_name: Annotated[StrictStr, Field(min_length=1, max_length=80)]
    energy_type: EnergyType
    jurisdiction: Jurisdiction
    latitude: Latitude
    longitude: Longitude
    capacity_kwh: PositiveKwhAsWh = Field(description="Peak output in kW (kWh per hour)")
    price_per_kwh: PositivePricePerKwh
    stake: MicroBlock = Field(description="Stake in micro-BLOCK, at least 1,000 BLOCK")
    meter_address: MeterAddress
    meter_public_key: PublicKeyHex


class ProviderUpdates(Params):
    display_name: Annotated[StrictStr, Field(min_length=1, max_length=80)] | None = None
    capacity_kwh: PositiveKwhAsWh | None = None
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


class ListProvidersParams(Params):
    energy_type: EnergyType | None = None
    jurisdiction: Jurisdiction | None = None
    max_price: PricePerKwh | None = Field(default=None, description="BLOCK per kWh")
    min_capacity: KwhAsWh | None = Field(default=None, description="kWh")
    include_inactive: StrictBool = Field(
        default=False, description="Also list paused and suspended"
    )
    limit: PageLimit = 50
    cursor: Cursor | None = None


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
    available_kwh: Decimal
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
            provider_id=provider.provider_id,
            owner=provider.owner,
            display_name=provider.display_name,
            energy_type=provider.energy_type,
            jurisdiction=provider.jurisdiction,
            latitude=_degrees(provider.location.latitude_micro_deg),
            longitude=_degrees(provider.location.longitude_micro_deg),
            capacity_kwh=units.kwh_from_wh(provider.capacity_wh),
            capacity_wh=provider.capacity_wh,
            price_per_kwh=units.block_from_micro(provider.price_micro_block_per_kwh),
            price_micro_block_per_kwh=provider.price_micro_block_per_kwh,
            stake=provider.stake_micro_block,
            status=provider.status,
            available_kwh=units.kwh_from_wh(provider.available_wh),
            available_wh=provider.available_wh,
            rating=provider.rating,
            uptime_percent=provider.uptime_percent(now),
            meter_address=provider.meter_address,
            meter_public_key=provider.meter_public_key,
            open_obligations=provider.open_obligations,
            created_at=provider.created_at,
            updated_at=provider.updated_at,
        )


def _degrees(micro_deg: int) -> Decimal:
    value = units.block_from_micro(abs(micro_deg))  # the same 10^6 scale as BLOCK
    return -value if micro_deg < 0 else value


class ProviderListResult(Result):
    providers: list[ProviderResult]
    next_cursor: str | None


# -- meters, readings and credits ---------------------------------------------------

ReadingTimestamp = Annotated[
    int,
    BeforeValidator(lambda v, info: units.milliseconds_from_seconds(v, info.field_name or "")),
    _number_schema("Unix seconds, exact to 1 ms (at most 3 decimal places)."),
]


class SubmitReadingParams(Params):
    """The original submitReading payload; the meter's signature authorises it.

    Validated here with the same exact conversions the meter protocol uses,
    so a malformed reading is a -32602 like any bad parameter; the ingest use
    case then parses the very params received.
    """

    provider_id: ProviderId
    meter_address: MeterAddress
    kwh_reading: KwhAsWh = Field(description="Cumulative counter, kWh (≤ 3 decimals)")
    timestamp: ReadingTimestamp = Field(description="Unix seconds (≤ 3 decimals)")
    signature: Annotated[StrictStr, Field(pattern=r"^(0x)?[0-9a-fA-F]{128}$")] = Field(
        description="Ed25519 over the reading message (docs/meter-protocol.md), hex"
    )


class CreditResult(Result):
    credit_id: str = Field(description="The SHA-256 of the signed reading message")
    provider_id: str
    meter_address: str
    energy_type: EnergyType
    jurisdiction: str
    amount_kwh: Decimal
    amount_wh: int
    interval_start_ms: int
    interval_end_ms: int
    state: str
    minted_at_ms: int
    expires_at_ms: int
    counter_wh: int = Field(description="The meter's counter at interval end")
    signature: str = Field(description="The meter's signature: verify it with the meter key")
    reading_hash: str = Field(
        description="The signed reading it was minted from (its own id, unless split off one)"
    )
    holder: str | None = Field(description="The buyer who owns it, once settled")

    @classmethod
    def of(cls, credit: Credit) -> CreditResult:
        return cls(
            credit_id=credit.credit_id,
            provider_id=credit.provider_id,
            meter_address=credit.meter_address,
            energy_type=credit.energy_type,
            jurisdiction=credit.jurisdiction,
            amount_kwh=units.kwh_from_wh(credit.wh),
            amount_wh=credit.wh,
            interval_start_ms=credit.interval_start_ms,
            interval_end_ms=credit.interval_end_ms,
            state=str(credit.state),
            minted_at_ms=credit.minted_at_ms,
            expires_at_ms=credit.expires_at_ms,
            counter_wh=credit.counter_wh,
            signature=credit.signature,
            reading_hash=credit.reading_hash,
            holder=credit.holder,
        )


class SubmitReadingResult(Result):
    status: str = Field(description="accepted, or duplicate for a reading already accepted")
    credit_id: str = Field(description="The reading hash, which is the id of its credit")
    amount_kwh: Decimal = Field(description="Energy minted; 0 for a meter's first reading")
    amount_wh: int
    reading_hash: str
    credit: CreditResult | None = Field(
        description="The credit minted; null for a duplicate of the latest reading"
    )


class CreditsParams(Params):
    provider_id: ProviderId
    limit: PageLimit = 50
    cursor: Cursor | None = None


class CreditsResult(Result):
    credits: list[CreditResult]
    next_cursor: str | None


class MeterRef(Params):
    meter_address: MeterAddress


class MeterResult(Result):
    meter_address: str
    provider_id: str
    public_key: str
    active: bool
    topic: str
    last_counter_wh: int | None
    last_timestamp_ms: int | None
    last_reading_hash: str | None
    accepted_readings: int
    rejections: dict[str, int] = Field(description="Refused readings by reason")

    @classmethod
    def of(cls, meter: MeterState) -> MeterResult:
        return cls(
            meter_address=meter.meter_address,
            provider_id=meter.provider_id,
            public_key=meter.public_key,
            active=meter.active,
            topic=topic_for(meter.meter_address),
            last_counter_wh=meter.last_counter_wh,
            last_timestamp_ms=meter.last_timestamp_ms,
            last_reading_hash=meter.last_reading_hash,
            accepted_readings=meter.accepted_readings,
            rejections=dict(meter.rejections),
        )


class RejectionsParams(Params):
    meter_address: MeterAddress
    limit: PageLimit = 50
    cursor: Cursor | None = None


class RejectionResult(Result):
    reason: str
    detail: str
    at_ms: int
    received_at_ms: int
    reading_hash: str | None

    @classmethod
    def of(cls, record: RejectionRecord) -> RejectionResult:
        return cls(
            reason=str(record.reason),
            detail=record.detail,
            at_ms=record.at_ms,
            received_at_ms=record.received_at_ms,
            reading_hash=record.reading_hash,
        )


class RejectionsResult(Result):
    rejections: list[RejectionResult]
    next_cursor: str | None


# -- trading -------------------------------------------------------------------------

TransactionId = Annotated[StrictStr, Field(pattern=r"^pur-[0-9a-f]{32}$")]


class PurchaseParams(SignedParams):
    provider_id: ProviderId
    kwh_amount: PositiveKwhAsWh = Field(description="Energy to buy, kWh")
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


# -- offers ---------------------------------------------------------------------------


class OffersParams(Params):
    energy_type: EnergyType | None = None
    jurisdiction: Jurisdiction | None = None
    max_price: PricePerKwh | None = Field(default=None, description="BLOCK per kWh")
    min_kwh: KwhAsWh | None = Field(default=None, description="At least this much on sale")
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
        provider = offer.provider
        return cls(
            provider_id=provider.provider_id,
            display_name=provider.display_name,
            energy_type=provider.energy_type,
            jurisdiction=provider.jurisdiction,
            latitude=_degrees(provider.location.latitude_micro_deg),
            longitude=_degrees(provider.location.longitude_micro_deg),
            price_per_kwh=units.block_from_micro(provider.price_micro_block_per_kwh),
            price_micro_block_per_kwh=provider.price_micro_block_per_kwh,
            available_kwh=units.kwh_from_wh(offer.available_wh),
            available_wh=offer.available_wh,
            oldest_credit_minted_at_ms=offer.oldest_credit_minted_at_ms,
            oldest_credit_age_seconds=max(0, now - offer.oldest_credit_minted_at_ms // 1000),
            rating=provider.rating,
        )


class OffersResult(Result):
    offers: list[OfferResult]
    next_cursor: str | None


# -- settlement and receipts ------------------------------------------------------------


class SettleParams(SignedParams):
    transaction_id: TransactionId


class ReceiptResult(Result):
    """A settlement receipt exactly as signed (docs/receipts.md)."""

    marketplace_id: str
    chain: str
    sequence: int
    previous_hash: str
    kind: str
    transaction_id: str
    buyer: str
    provider_id: str
    provider_owner: str
    wh: int
    price_micro_block_per_kwh: int
    total_cost_micro_block: int
    fee_micro_block: int
    provider_amount_micro_block: int
    credit_ids: list[str]
    settled_at_ms: int
    settled_by: str
    receipt_hash: str
    signature: str

    @classmethod
    def of(cls, receipt: Receipt) -> ReceiptResult:
        return cls(**receipt.to_json())


class SettlementResult(Result):
    transaction_id: str
    status: str
    already_settled: bool = Field(description="True if it was settled before this request")
    receipt: ReceiptResult


class ReceiptsParams(Params):
    provider_id: ProviderId | None = Field(
        default=None, description="A provider's chain, oldest first"
    )
    buyer: AccountName | None = Field(default=None, description="A buyer's receipts, newest first")
    limit: PageLimit = 50
    cursor: Cursor | None = None

    @model_validator(mode="after")
    def _one_of(self) -> ReceiptsParams:
        if (self.provider_id is None) == (self.buyer is None):
            raise ValueError("give exactly one of provider_id and buyer")
        return self


class ReceiptsResult(Result):
    receipts: list[ReceiptResult]
    next_cursor: str | None
    head: ReceiptRef | None = Field(
        description="A provider chain's newest receipt: an export ends here"
    )


# -- portfolio, carbon and retirement ------------------------------------------------------


class PortfolioParams(Params):
    account: AccountName
    holdings_limit: PageLimit = 50
    holdings_cursor: Cursor | None = None
    history_limit: PageLimit = 20
    history_cursor: Cursor | None = None


class CarbonOffsetResult(Result):
    total_kg_co2: Decimal = Field(description="CO2 avoided by the energy bought, kg")
    total_g_co2: int
    equivalent_trees: int = Field(description="Trees absorbing as much CO2 in a year")
    bought_wh: dict[str, int] = Field(description="Settled Wh bought, by energy type")


class PortfolioResult(Result):
    account: str
    balance: int = Field(description="Available balance, micro-BLOCK")
    stake: int = Field(description="Stake of the account's providers, micro-BLOCK")
    escrow: int = Field(description="Held for open purchases, micro-BLOCK")
    open_purchases: list[PurchaseResult]
    holdings: list[CreditResult] = Field(description="Credits held, newest first")
    holdings_next_cursor: str | None
    purchase_history: list[PurchaseResult] = Field(description="Settled, newest first")
    purchase_history_next_cursor: str | None
    providers: list[str]
    earnings: int = Field(description="Paid to the account by settled sales, micro-BLOCK")
    sold_wh: int
    carbon_offset: CarbonOffsetResult


class CarbonParams(Params):
    account: AccountName


class RetireParams(SignedParams):
    credit_ids: Annotated[
        list[Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{64}$")]],
        Field(min_length=1, max_length=50),
    ]
    beneficiary: Annotated[
        StrictStr,
        Field(min_length=1, max_length=200, description="Who the energy is claimed for"),
    ]
    reporting_period_start_ms: Annotated[StrictInt, Field(ge=0)]
    reporting_period_end_ms: Annotated[StrictInt, Field(ge=0)]

    @model_validator(mode="after")
    def _distinct(self) -> RetireParams:
        if len(set(self.credit_ids)) != len(self.credit_ids):
            raise ValueError("credit_ids must not repeat")
        return self


class CertificateResult(Result):
    """A retirement certificate in the shape of an EnergyTag granular certificate."""

    certificate_id: str
    status: Literal["retired"] = "retired"
    credit_id: str
    energy_wh: int
    production_start_ms: int
    production_end_ms: int = Field(description="At most one hour after the start")
    device_id: str = Field(description="The meter")
    device_capacity_wh: int
    provider_id: str
    technology: str
    jurisdiction: str
    latitude: Decimal
    longitude: Decimal
    issued_at_ms: int
    beneficiary: str
    reporting_period_start_ms: int
    reporting_period_end_ms: int
    retired_by: str
    retired_at_ms: int
    reading_hash: str = Field(description="Provenance: the meter's signed reading")
    reading_counter_wh: int
    reading_timestamp_ms: int
    reading_signature: str

    @classmethod
    def of(cls, certificate: Certificate) -> CertificateResult:
        c = certificate
        return cls(
            certificate_id=c.certificate_id,
            credit_id=c.credit_id,
            energy_wh=c.wh,
            production_start_ms=c.production_start_ms,
            production_end_ms=c.production_end_ms,
            device_id=c.device_id,
            device_capacity_wh=c.device_capacity_wh,
            provider_id=c.provider_id,
            technology=c.technology,
            jurisdiction=c.jurisdiction,
            latitude=_degrees(c.latitude_micro_deg),
            longitude=_degrees(c.longitude_micro_deg),
            issued_at_ms=c.issued_at_ms,
            beneficiary=c.beneficiary,
            reporting_period_start_ms=c.reporting_period_start_ms,
            reporting_period_end_ms=c.reporting_period_end_ms,
            retired_by=c.retired_by,
            retired_at_ms=c.retired_at_ms,
            reading_hash=c.reading_hash,
            reading_counter_wh=c.reading_counter_wh,
            reading_timestamp_ms=c.reading_timestamp_ms,
            reading_signature=c.reading_signature,
        )


class RetireResult(Result):
    certificates: list[CertificateResult]


class CertificateRef(Params):
    certificate_id: Annotated[StrictStr, Field(pattern=r"^gc-[0-9a-f]{64}$")]
