"""Market methods: what a client needs to sign and trade, and the API's own description."""

from __future__ import annotations

from decimal import Decimal

from pydantic import ConfigDict, Field

from chalicelib.adapters.receipt_key import ReceiptKeyUnavailable, receipt_public_key
from chalicelib.domain import signing, units
from chalicelib.domain.providers import MIN_STAKE_MICRO_BLOCK, EnergyType
from chalicelib.rpc.methods.common import API_VERSION, openrpc, registry
from chalicelib.rpc.methods.fields import NoParams, Result
from chalicelib.rpc.registry import CallContext
from chalicelib.services import accounts


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


class TreasuryResult(Result):
    treasury_micro_block: int = Field(
        description="Market fees and the treasury's share of slashes collected, micro-BLOCK"
    )
    treasury_block: Decimal = Field(description="The same in BLOCK")


class OpenRpcDocument(Result):
    """The OpenRPC 1.3 document of this API."""

    model_config = ConfigDict(extra="allow", frozen=True)


@registry.method(
    "energy.getMarketInfo", summary="What a client needs to sign and trade", result=MarketInfo
)
def get_market_info(context: CallContext, params: NoParams) -> MarketInfo:
    """The deployment's identity and rules: the marketplace id bound into every
    signature, the operator's key, the minimum stake and the signing window."""
    settings = context.deps.settings
    return MarketInfo(
        marketplace_id=settings.marketplace_id,
        operator_public_key=settings.operator_public_key,
        min_stake=MIN_STAKE_MICRO_BLOCK,
        auth_window_seconds=settings.auth_window_seconds,
        energy_types=list(EnergyType),
        request_signing_domain=signing.REQUEST_DOMAIN.decode().strip(),
        receipt_public_key=_receipt_public_key(context),
        market_fee_bps=settings.market_fee_bps,
        dispute_window_ms=settings.dispute_window_ms,
        api_version=API_VERSION,
    )


@registry.method(
    "energy.getTreasury",
    summary="The treasury's balance: market fees and slash shares (for the operator)",
    result=TreasuryResult,
)
def get_treasury(context: CallContext, params: NoParams) -> TreasuryResult:
    """What the treasury holds: every settlement's market fee and the treasury's
    share of every slash. The operator reads it here; it is no secret (every
    fee is in a signed receipt), so anyone may. A separate method, not a field
    of ``energy.getMarketInfo``: that one answers from configuration alone."""
    micro_block = accounts.treasury(context.deps)
    return TreasuryResult(
        treasury_micro_block=micro_block, treasury_block=units.block_from_micro(micro_block)
    )


def _receipt_public_key(context: CallContext) -> str:
    # Never from the private key's parameter: the API handler publishes the key
    # on every call, and reading the secret for that would make every reader of
    # the API a reader of the key (docs/deploy.md, roles).
    try:
        return receipt_public_key(context.deps.settings)
    except ReceiptKeyUnavailable:
        return ""


@registry.method("rpc.discover", summary="This API's OpenRPC document", result=OpenRpcDocument)
def discover(context: CallContext, params: NoParams) -> OpenRpcDocument:
    """The method list, parameter and result schemas, and error codes, generated
    from the same models that validate requests."""
    return OpenRpcDocument.model_validate(openrpc())
