"""Settlement methods: settle a purchase now, and the signed receipts settlement writes."""

from __future__ import annotations

from pydantic import Field, model_validator

from chalicelib.domain.errors import CreditsDisputed, InvalidState, NotFound
from chalicelib.domain.receipts import ChainHead, Receipt
from chalicelib.rpc.methods.common import AUTH_ERRORS, registry, signed_call
from chalicelib.rpc.methods.fields import (
    AccountName,
    Cursor,
    PageLimit,
    Params,
    ProviderId,
    Result,
    SignedParams,
    TransactionId,
)
from chalicelib.rpc.registry import CallContext
from chalicelib.services import settlement


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


class SignedHeadResult(Result):
    """A chain's head, signed by the receipt key when it was read (docs/receipts.md)."""

    marketplace_id: str
    chain: str = Field(description="The provider id, or <provider_id>/slashes")
    sequence: int = Field(description="The newest receipt's sequence: the chain's length")
    receipt_hash: str = Field(description="The newest receipt's hash")
    signed_at_ms: int = Field(description="When the marketplace signed this head")
    signature: str = Field(description="Ed25519 by the receipt key, hex")

    @classmethod
    def signed(cls, context: CallContext, head: ChainHead | None) -> SignedHeadResult | None:
        if head is None:
            return None
        return cls(**settlement.sign_head(context.deps, head).to_json())


class SettlementResult(Result):
    transaction_id: str
    status: str
    already_settled: bool = Field(description="True if it was settled before this request")
    receipt: ReceiptResult

    @classmethod
    def of(cls, outcome: settlement.Settlement) -> SettlementResult:
        return cls(
            transaction_id=outcome.purchase.purchase_id,
            status=str(outcome.purchase.status),
            already_settled=outcome.already_settled,
            receipt=ReceiptResult.of(outcome.receipt),
        )


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
    head: SignedHeadResult | None = Field(
        description="A provider chain's newest receipt, signed now: an export ends here"
    )


@registry.method(
    "energy.settle",
    summary="Settle a purchase now: escrow to the provider, credits to the buyer, a receipt",
    result=SettlementResult,
    signed=True,
    original_name="settle",
    errors=(*AUTH_ERRORS, NotFound, CreditsDisputed, InvalidState),
)
def settle(context: CallContext, params: SettleParams) -> SettlementResult:
    """Signed by the buyer, who may settle before the dispute window has passed
    (the settlement job settles every purchase after it). Settling a purchase
    that is already settled changes nothing and returns its receipt. A
    purchase an open dispute holds credits of waits for its resolution; one
    whose every credit a dispute revoked was refunded and never settles."""
    outcome = settlement.settle_early(
        context.deps, signed_call(context, params), params.transaction_id
    )
    return SettlementResult.of(outcome)


@registry.method(
    "energy.getReceipts",
    summary="Settlement receipts: a provider's chain (oldest first) or a buyer's (newest first)",
    result=ReceiptsResult,
    original_name="getReceipts",
)
def get_receipts(context: CallContext, params: ReceiptsParams) -> ReceiptsResult:
    """Give exactly one of ``provider_id`` and ``buyer``. A provider's receipts
    come in chain order with the chain's head, so that pages concatenated are
    an export the verifier checks (docs/receipts.md)."""
    if params.buyer is not None:
        page, head = settlement.buyer_receipts(
            context.deps, params.buyer, params.limit, params.cursor
        )
    else:
        page, head = settlement.provider_receipts(
            context.deps, params.provider_id or "", params.limit, params.cursor
        )
    return ReceiptsResult(
        receipts=[ReceiptResult.of(r) for r in page.items],
        next_cursor=page.next_cursor,
        head=SignedHeadResult.signed(context, head),
    )
