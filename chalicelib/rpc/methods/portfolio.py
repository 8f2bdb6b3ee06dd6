"""Portfolio methods: what an account holds, the carbon it offset, and retiring credits."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import Field, StrictInt, StrictStr, model_validator

from chalicelib.domain.carbon import CarbonOffset, OriginLine
from chalicelib.domain.certificates import Certificate
from chalicelib.domain.errors import CreditsDisputed, InvalidState, NotFound
from chalicelib.rpc.methods.common import AUTH_ERRORS, registry, signed_call
from chalicelib.rpc.methods.fields import (
    AccountName,
    Cursor,
    PageLimit,
    Params,
    ProviderId,
    Result,
    SignedParams,
    degrees,
)
from chalicelib.rpc.methods.meters import CreditResult
from chalicelib.rpc.methods.trading import PurchaseResult
from chalicelib.rpc.registry import CallContext
from chalicelib.services import analytics, carbon, portfolio, retirement


class PortfolioParams(Params):
    account: AccountName
    holdings_limit: PageLimit = 50
    holdings_cursor: Cursor | None = None
    history_limit: PageLimit = 20
    history_cursor: Cursor | None = None


class OriginResult(Result):
    energy_type: str
    jurisdiction: str | None = Field(
        description="Where the energy was generated; null for energy bought before the "
        "ledger recorded it"
    )
    wh: int = Field(description="Settled Wh of this type from this jurisdiction")
    g_co2_per_kwh: int = Field(description="The factor it took: grams of CO2 avoided per kWh")
    basis: Literal["grid", "default", "stored"] = Field(
        description="grid: the grid intensity of grid_jurisdiction less the technology's "
        "life-cycle emissions; default: no published grid figure, the energy type's default "
        "factor; stored: battery energy, which avoids none of its own"
    )
    grid_jurisdiction: str | None = Field(
        description="Whose published grid figure was used (US for a US_CA credit), if any"
    )
    g_co2: int = Field(description="This line's grams, rounded down on its own")

    @classmethod
    def of(cls, line: OriginLine) -> OriginResult:
        return cls(
            energy_type=line.energy_type,
            jurisdiction=line.jurisdiction,
            wh=line.wh,
            g_co2_per_kwh=line.factor.g_co2_per_kwh,
            basis=line.factor.basis.value,
            grid_jurisdiction=line.factor.grid_jurisdiction,
            g_co2=line.g_co2,
        )


class EquivalentResult(Result):
    quantity: int = Field(description="Whole units, rounded down")
    unit: str
    g_co2_per_unit: int
    source: str = Field(description="Where the factor comes from")


class CarbonOffsetResult(Result):
    scope: Literal["account", "provider", "market"] = Field(
        description="account: the energy it bought; provider: the energy it sold; "
        "market: all energy settled"
    )
    total_kg_co2: Decimal = Field(description="CO2 avoided by the settled energy, kg")
    total_g_co2: int = Field(
        description="CO2 avoided, grams: the exact sum over wh_by_origin, rounded down once"
    )
    equivalent_trees: int = Field(
        description="Trees absorbing as much CO2 in a year (equivalents.trees.quantity)"
    )
    bought_wh: dict[str, int] = Field(
        description="Settled Wh by energy type: bought by the account, bought from the "
        "provider, or bought in the market"
    )
    wh_by_origin: list[OriginResult] = Field(
        description="The same Wh by energy type and jurisdiction, with the factor each took"
    )
    equivalents: dict[str, EquivalentResult] = Field(
        description="What the total compares to: trees, car_km, grid_kwh"
    )
    factors_source: str = Field(description="Where the factors come from (docs/carbon.md)")

    @classmethod
    def of(
        cls, offset: CarbonOffset, scope: Literal["account", "provider", "market"]
    ) -> CarbonOffsetResult:
        return cls(
            scope=scope,
            total_kg_co2=offset.kg_co2,
            total_g_co2=offset.g_co2,
            equivalent_trees=offset.equivalent_trees,
            bought_wh=dict(offset.bought_wh),
            wh_by_origin=[OriginResult.of(line) for line in offset.lines],
            equivalents={
                e.name: EquivalentResult(
                    quantity=quantity,
                    unit=e.unit,
                    g_co2_per_unit=e.g_co2_per_unit,
                    source=e.source,
                )
                for e, quantity in offset.equivalents()
            },
            factors_source=offset.factors.source,
        )


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
    account: AccountName | None = Field(default=None, description="The energy this account bought")
    provider_id: ProviderId | None = Field(
        default=None, description="The energy this provider sold"
    )

    @model_validator(mode="after")
    def _one_subject(self) -> CarbonParams:
        # Neither: the whole market's figure.
        if self.account is not None and self.provider_id is not None:
            raise ValueError("give account, provider_id or neither (the market), not both")
        return self


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
    status: Literal["retired", "revoked"] = Field(
        default="retired",
        description="revoked: a dispute later found the reading fraudulent; the claim no longer holds",
    )
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
            status="revoked" if c.revoked else "retired",
            credit_id=c.credit_id,
            energy_wh=c.wh,
            production_start_ms=c.production_start_ms,
            production_end_ms=c.production_end_ms,
            device_id=c.device_id,
            device_capacity_wh=c.device_capacity_wh,
            provider_id=c.provider_id,
            technology=c.technology,
            jurisdiction=c.jurisdiction,
            latitude=degrees(c.latitude_micro_deg),
            longitude=degrees(c.longitude_micro_deg),
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


@registry.method(
    "energy.getPortfolio",
    summary="An account's balance, stake, escrow, purchases, holdings, earnings and carbon",
    result=PortfolioResult,
    errors=(NotFound,),
)
def get_portfolio(context: CallContext, params: PortfolioParams) -> PortfolioResult:
    """Everything an account holds in one call: available balance, stake,
    escrow and the open purchases behind it, held credits with their
    provenance, settled purchases, what its providers earned, and the carbon
    offset of the energy it bought. Holdings and history page separately."""
    found = portfolio.get_portfolio(
        context.deps,
        params.account,
        holdings_limit=params.holdings_limit,
        holdings_cursor=params.holdings_cursor,
        history_limit=params.history_limit,
        history_cursor=params.history_cursor,
    )
    return PortfolioResult(
        account=found.account,
        balance=found.balance_micro_block,
        stake=found.stake_micro_block,
        escrow=found.escrow_micro_block,
        open_purchases=[PurchaseResult.of(p) for p in found.open_purchases],
        holdings=[
            CreditResult.of(c, found.disputed.get(c.credit_id)) for c in found.holdings.items
        ],
        holdings_next_cursor=found.holdings.next_cursor,
        purchase_history=[PurchaseResult.of(p) for p in found.history.items],
        purchase_history_next_cursor=found.history.next_cursor,
        providers=[p.provider_id for p in found.providers],
        earnings=found.earned_micro_block,
        sold_wh=found.sold_wh,
        carbon_offset=CarbonOffsetResult.of(found.carbon, "account"),
    )


@registry.method(
    "energy.getCarbonOffset",
    summary="The CO2 avoided by the energy an account bought, a provider sold, or the market",
    result=CarbonOffsetResult,
    original_name="getCarbonOffset",
    errors=(NotFound,),
)
def get_carbon_offset(context: CallContext, params: CarbonParams) -> CarbonOffsetResult:
    """Give ``account`` (the energy it bought and settled), ``provider_id``
    (the energy it sold in settled purchases), or neither: the whole market
    (all energy bought and settled, less what guilty disputes revoked, from
    the analytics' totals: a few seconds behind). Each kWh avoids its
    jurisdiction's published grid intensity less its technology's life-cycle
    emissions; where the jurisdiction has no published figure, the energy
    type's default (solar 400, wind 400, hydro 20 g CO2 per kWh); battery
    energy none. The total is rounded down to a gram, once. docs/carbon.md
    gives the sources, the formula and the equivalents."""
    if params.account is not None:
        offset = carbon.account_carbon(context.deps, params.account)
        return CarbonOffsetResult.of(offset, "account")
    if params.provider_id is not None:
        offset = carbon.provider_carbon(context.deps, params.provider_id)
        return CarbonOffsetResult.of(offset, "provider")
    # Neither: the market, from the analytics' totals (one read).
    return CarbonOffsetResult.of(analytics.market_carbon_now(context.deps), "market")


@registry.method(
    "energy.retireCredits",
    summary="Claim held credits for a beneficiary: retired for good, with certificates",
    result=RetireResult,
    signed=True,
    errors=(*AUTH_ERRORS, NotFound, InvalidState, CreditsDisputed),
)
def retire_credits(context: CallContext, params: RetireParams) -> RetireResult:
    """Signed by the holder. Every credit named must be held by the signer
    (bought and settled) and cover at most one hour of production; all are
    retired or none. Each becomes a certificate with the fields of an EnergyTag
    granular certificate and the signed reading it came from. A credit an
    open dispute holds cannot be retired until the dispute resolves."""
    certificates = retirement.retire_credits(
        context.deps,
        signed_call(context, params),
        retirement.Claim(
            credit_ids=tuple(params.credit_ids),
            beneficiary=params.beneficiary,
            period_start_ms=params.reporting_period_start_ms,
            period_end_ms=params.reporting_period_end_ms,
        ),
    )
    return RetireResult(certificates=[CertificateResult.of(c) for c in certificates])


@registry.method(
    "energy.getCertificate",
    summary="A retirement certificate",
    result=CertificateResult,
    errors=(NotFound,),
)
def get_certificate(context: CallContext, params: CertificateRef) -> CertificateResult:
    return CertificateResult.of(retirement.get_certificate(context.deps, params.certificate_id))
