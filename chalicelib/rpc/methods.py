"""The ``energy.*`` methods: request -> command -> use case -> response.

Each method is named after the original client library's call
(``energyMarketAPI.registerProvider`` -> ``energy.registerProvider``); methods
the original library did not have follow the same camelCase style.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import ConfigDict

from chalicelib.adapters.receipt_key import ReceiptKeyUnavailable
from chalicelib.domain import carbon, signing, units
from chalicelib.domain.accounts import Role
from chalicelib.domain.errors import (
    AlreadyExists,
    ConcurrentUpdate,
    InsufficientBalance,
    InsufficientEnergy,
    InsufficientStake,
    InvalidState,
    NotAuthenticated,
    NotAuthorised,
    NotFound,
    OpenObligations,
    PriceAboveLimit,
    ProviderNotSelling,
    PurchaseTooLarge,
    ReadingRefused,
    ReplayedRequest,
    StaleRequest,
)
from chalicelib.domain.providers import (
    MIN_STAKE_MICRO_BLOCK,
    EnergyType,
    Location,
    ProviderQuery,
)
from chalicelib.rpc import schemas as s
from chalicelib.rpc.openrpc import openrpc_document
from chalicelib.rpc.registry import CallContext, Registry
from chalicelib.services import (
    accounts,
    ingest,
    meters,
    offers,
    portfolio,
    providers,
    retirement,
    settlement,
    trading,
)
from chalicelib.services.auth import SignedCall

API_VERSION = "1.0.0"

registry = Registry()

# Every signed method can fail authentication in these ways.
AUTH_ERRORS = (NotAuthenticated, ReplayedRequest, StaleRequest, NotAuthorised, ConcurrentUpdate)


def signed_call(context: CallContext, params: s.SignedParams) -> SignedCall:
    auth = params.auth
    return SignedCall(
        method=context.method,
        params=context.raw_params,
        account=auth.account,
        nonce=auth.nonce,
        timestamp=auth.timestamp,
        signature=signing.normalise_hex(auth.signature),
    )


@registry.method(
    "energy.getMarketInfo", summary="What a client needs to sign and trade", result=s.MarketInfo
)
def get_market_info(context: CallContext, params: s.NoParams) -> s.MarketInfo:
    """The deployment's identity and rules: the marketplace id bound into every
    signature, the operator's key, the minimum stake and the signing window."""
    settings = context.market.settings
    return s.MarketInfo(
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


def _receipt_public_key(context: CallContext) -> str:
    try:
        key = context.market.receipt_signing_key()
    except ReceiptKeyUnavailable:
        return ""
    return key.verify_key.encode().hex()


# -- accounts and ledger -------------------------------------------------------


@registry.method(
    "energy.createAccount",
    summary="Open an account with an Ed25519 key",
    result=s.AccountResult,
    signed=True,
    errors=(*AUTH_ERRORS, AlreadyExists, InvalidState),
)
def create_account(context: CallContext, params: s.CreateAccountParams) -> s.AccountResult:
    """Signed by the key being registered (``auth.account`` is the new name),
    which proves the caller holds it. New accounts are buyers with a zero
    balance."""
    call = signed_call(context, params)
    if call.account != params.name:
        raise NotAuthorised(
            "auth.account must be the account being created",
            signer=call.account,
            required=params.name,
        )
    account = accounts.create_account(context.market, call, params.name, params.public_key)
    return s.AccountResult.of(account, 0, [])


@registry.method(
    "energy.getAccount",
    summary="An account's key, roles and balance",
    result=s.AccountResult,
    errors=(NotFound,),
)
def get_account(context: CallContext, params: s.AccountRef) -> s.AccountResult:
    view = accounts.get_account(context.market, params.name)
    return s.AccountResult.of(view.account, view.balance_micro_block, view.providers)


@registry.method(
    "energy.getLedgerEntries",
    summary="An account's deposits, withdrawals and stake movements, oldest first",
    result=s.LedgerEntriesResult,
    errors=(NotFound,),
)
def get_ledger_entries(
    context: CallContext, params: s.LedgerEntriesParams
) -> s.LedgerEntriesResult:
    page = accounts.account_history(context.market, params.account, params.limit, params.cursor)
    return s.LedgerEntriesResult(
        entries=[s.LedgerEntryResult.of(e) for e in page.items], next_cursor=page.next_cursor
    )


@registry.method(
    "energy.grantRole",
    summary="Make an account a validator (operator)",
    result=s.AccountResult,
    signed=True,
    errors=(*AUTH_ERRORS, NotFound),
)
def grant_role(context: CallContext, params: s.RoleParams) -> s.AccountResult:
    """Signed by the operator. Validators judge disputes; the role is granted, not
    claimed. (Buyer and provider roles follow from what an account does.)"""
    return _set_role(context, params, held=True)


@registry.method(
    "energy.revokeRole",
    summary="Take the validator role away (operator)",
    result=s.AccountResult,
    signed=True,
    errors=(*AUTH_ERRORS, NotFound),
)
def revoke_role(context: CallContext, params: s.RoleParams) -> s.AccountResult:
    """Signed by the operator."""
    return _set_role(context, params, held=False)


def _set_role(context: CallContext, params: s.RoleParams, *, held: bool) -> s.AccountResult:
    accounts.set_role(
        context.market, signed_call(context, params), params.account, Role(params.role), held
    )
    view = accounts.get_account(context.market, params.account)
    return s.AccountResult.of(view.account, view.balance_micro_block, view.providers)


@registry.method(
    "energy.deposit",
    summary="Credit BLOCK that arrived on chain (operator)",
    result=s.BalanceResult,
    signed=True,
    errors=(*AUTH_ERRORS, NotFound, AlreadyExists, InvalidState),
)
def deposit(context: CallContext, params: s.DepositParams) -> s.BalanceResult:
    """Signed by the operator. A chain transaction is credited at most once."""
    balance = accounts.deposit(
        context.market,
        signed_call(context, params),
        params.account,
        params.amount_micro_block,
        params.chain_tx,
    )
    return s.BalanceResult(account=params.account, balance=balance)


@registry.method(
    "energy.withdraw",
    summary="Send BLOCK from your balance to a chain address",
    result=s.BalanceResult,
    signed=True,
    errors=(*AUTH_ERRORS, InsufficientBalance, InvalidState),
)
def withdraw(context: CallContext, params: s.WithdrawParams) -> s.BalanceResult:
    """Signed by the account whose balance pays."""
    call = signed_call(context, params)
    balance = accounts.withdraw(context.market, call, params.amount_micro_block, params.destination)
    return s.BalanceResult(account=call.account, balance=balance)


# -- providers -------------------------------------------------------------------


@registry.method(
    "energy.registerProvider",
    summary="Register as an energy provider",
    result=s.ProviderResult,
    signed=True,
    original_name="registerProvider",
    errors=(*AUTH_ERRORS, InsufficientStake, InsufficientBalance, AlreadyExists),
)
def register_provider(context: CallContext, params: s.RegisterProviderParams) -> s.ProviderResult:
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
        capacity_wh=params.capacity_kwh,
        price_micro_block_per_kwh=params.price_per_kwh,
        stake_micro_block=params.stake,
        meter_address=params.meter_address,
        meter_public_key=params.meter_public_key,
    )
    provider = providers.register_provider(
        context.market, signed_call(context, params), registration
    )
    return s.ProviderResult.of(provider, context.market.clock())


@registry.method(
    "energy.updateProvider",
    summary="Change price, capacity, name; pause or resume",
    result=s.ProviderResult,
    signed=True,
    original_name="updateProvider",
    errors=(*AUTH_ERRORS, NotFound),
)
def update_provider(context: CallContext, params: s.UpdateProviderParams) -> s.ProviderResult:
    """Signed by the provider's owner. Only the members present in ``updates``
    change."""
    u = params.updates
    provider = providers.update_provider(
        context.market,
        signed_call(context, params),
        params.provider_id,
        providers.ProviderUpdate(
            display_name=u.display_name,
            capacity_wh=u.capacity_kwh,
            price_micro_block_per_kwh=u.price_per_kwh,
            paused=u.paused,
            meter_public_key=u.meter_public_key,
        ),
    )
    return s.ProviderResult.of(provider, context.market.clock())


@registry.method(
    "energy.getProvider",
    summary="One provider",
    result=s.ProviderResult,
    original_name="getProvider",
    errors=(NotFound,),
)
def get_provider(context: CallContext, params: s.ProviderRef) -> s.ProviderResult:
    provider = providers.get_provider(context.market, params.provider_id)
    return s.ProviderResult.of(provider, context.market.clock())


@registry.method(
    "energy.listProviders",
    summary="Providers by price, with filters",
    result=s.ProviderListResult,
    original_name="listProviders",
)
def list_providers(context: CallContext, params: s.ListProvidersParams) -> s.ProviderListResult:
    """Cheapest first (then by id). Only active providers unless
    ``include_inactive``. Pass ``next_cursor`` back as ``cursor`` for the next
    page; it is null on the last page."""
    page = providers.list_providers(
        context.market,
        ProviderQuery(
            energy_type=params.energy_type,
            jurisdiction=params.jurisdiction,
            max_price_micro_block_per_kwh=params.max_price,
            min_capacity_wh=params.min_capacity,
            include_inactive=params.include_inactive,
        ),
        params.limit,
        params.cursor,
    )
    now = context.market.clock()
    return s.ProviderListResult(
        providers=[s.ProviderResult.of(p, now) for p in page.items], next_cursor=page.next_cursor
    )


@registry.method(
    "energy.topUpStake",
    summary="Add to a provider's stake from your balance",
    result=s.ProviderResult,
    signed=True,
    errors=(*AUTH_ERRORS, NotFound, InsufficientBalance, InvalidState),
)
def top_up_stake(context: CallContext, params: s.StakeParams) -> s.ProviderResult:
    """Signed by the provider's owner. A suspended provider whose stake reaches
    the minimum again becomes active (or paused, if its owner paused it)."""
    provider = providers.top_up_stake(
        context.market, signed_call(context, params), params.provider_id, params.amount_micro_block
    )
    return s.ProviderResult.of(provider, context.market.clock())


@registry.method(
    "energy.withdrawStake",
    summary="Return stake to your balance",
    result=s.ProviderResult,
    signed=True,
    errors=(*AUTH_ERRORS, NotFound, OpenObligations, InsufficientStake, InvalidState),
)
def withdraw_stake(context: CallContext, params: s.StakeParams) -> s.ProviderResult:
    """Signed by the provider's owner; refused while the provider has open
    obligations. Leaving less than the minimum stake suspends the provider."""
    provider = providers.withdraw_stake(
        context.market, signed_call(context, params), params.provider_id, params.amount_micro_block
    )
    return s.ProviderResult.of(provider, context.market.clock())


class OpenRpcDocument(s.Result):
    """The OpenRPC 1.3 document of this API."""

    model_config = ConfigDict(extra="allow", frozen=True)


@registry.method("rpc.discover", summary="This API's OpenRPC document", result=OpenRpcDocument)
def discover(context: CallContext, params: s.NoParams) -> OpenRpcDocument:
    """The method list, parameter and result schemas, and error codes, generated
    from the same models that validate requests."""
    return OpenRpcDocument.model_validate(openrpc())


@lru_cache(maxsize=1)
def openrpc() -> dict[str, Any]:
    return openrpc_document(registry, API_VERSION)


# -- meters, readings and credits ------------------------------------------------


@registry.method(
    "energy.submitReading",
    summary="Submit a signed meter reading over HTTP (the MQTT path's twin)",
    result=s.SubmitReadingResult,
    original_name="submitReading",
    errors=(ReadingRefused, ConcurrentUpdate),
)
def submit_reading(context: CallContext, params: s.SubmitReadingParams) -> s.SubmitReadingResult:
    """Authorised by the meter's own signature (docs/meter-protocol.md), not by
    an account. Runs the same checks and the same minting as the MQTT path. A
    reading already accepted is a success with status ``duplicate`` that mints
    nothing; a refused one is error 4003 with ``data.rejection`` and is
    recorded for the meter (``energy.getRejections``)."""
    outcome = ingest.record_document(
        context.market,
        dict(context.raw_params),
        topic_meter_address=None,
        received_at_ms=context.market.clock() * 1000,
    )
    if outcome.status == ingest.Status.REJECTED:
        raise ReadingRefused(
            f"reading rejected: {outcome.detail}",
            rejection=str(outcome.reason),
            detail=outcome.detail,
        )
    credit = outcome.credit
    wh = credit.wh if credit is not None and outcome.status == ingest.Status.ACCEPTED else 0
    return s.SubmitReadingResult(
        status=str(outcome.status),
        credit_id=outcome.reading_hash or "",
        amount_kwh=units.kwh_from_wh(wh),
        amount_wh=wh,
        reading_hash=outcome.reading_hash or "",
        credit=s.CreditResult.of(credit) if credit is not None else None,
    )


@registry.method(
    "energy.getCredits",
    summary="A provider's credits with their state and provenance, newest first",
    result=s.CreditsResult,
    original_name="getCredits",
    errors=(NotFound,),
)
def get_credits(context: CallContext, params: s.CreditsParams) -> s.CreditsResult:
    page = meters.provider_credits(context.market, params.provider_id, params.limit, params.cursor)
    return s.CreditsResult(
        credits=[s.CreditResult.of(c) for c in page.items], next_cursor=page.next_cursor
    )


@registry.method(
    "energy.getMeter",
    summary="A meter's key, last accepted reading and counts of refusals",
    result=s.MeterResult,
    errors=(NotFound,),
)
def get_meter(context: CallContext, params: s.MeterRef) -> s.MeterResult:
    return s.MeterResult.of(meters.get_meter(context.market, params.meter_address))


@registry.method(
    "energy.getRejections",
    summary="A meter's refused readings and why, newest first",
    result=s.RejectionsResult,
)
def get_rejections(context: CallContext, params: s.RejectionsParams) -> s.RejectionsResult:
    page = meters.meter_rejections(
        context.market, params.meter_address, params.limit, params.cursor
    )
    return s.RejectionsResult(
        rejections=[s.RejectionResult.of(r) for r in page.items], next_cursor=page.next_cursor
    )


# -- trading -------------------------------------------------------------------------


@registry.method(
    "energy.purchaseEnergy",
    summary="Buy energy from a provider: credits reserved, cost held in escrow",
    result=s.PurchaseResult,
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
def purchase_energy(context: CallContext, params: s.PurchaseParams) -> s.PurchaseResult:
    """Signed by the buyer. In one atomic write the cost (price x energy, rounded
    up to a micro-BLOCK) moves from the buyer's balance into escrow and the
    energy is reserved from the provider's credits, oldest first (the last one
    split if needed). Refused, changing nothing, when the price is above
    ``max_price_per_kwh``, the balance or the energy on sale is short, the
    provider is paused or suspended, or the buyer owns the provider. A second
    purchase with the same ``idempotency_key`` returns the first."""
    purchase = trading.purchase_energy(
        context.market,
        signed_call(context, params),
        trading.Order(
            provider_id=params.provider_id,
            wh=params.kwh_amount,
            max_price_micro_block_per_kwh=params.max_price_per_kwh,
            idempotency_key=params.idempotency_key,
        ),
    )
    return s.PurchaseResult.of(purchase)


@registry.method(
    "energy.getPurchase",
    summary="One purchase: its status, escrow and credits",
    result=s.PurchaseResult,
    errors=(NotFound,),
)
def get_purchase(context: CallContext, params: s.PurchaseRef) -> s.PurchaseResult:
    return s.PurchaseResult.of(trading.get_purchase(context.market, params.transaction_id))


@registry.method(
    "energy.getOffers",
    summary="What can be bought now: per provider, the energy on sale at its price",
    result=s.OffersResult,
    original_name="getOffers",
)
def get_offers(context: CallContext, params: s.OffersParams) -> s.OffersResult:
    """Active providers with energy on sale, cheapest first, with the age of
    the oldest credit (the one a purchase takes first). Filters: energy_type,
    jurisdiction, max_price (BLOCK per kWh), min_kwh on sale. A selective
    filter may return a short page with a cursor (as listProviders does)."""
    page = offers.get_offers(
        context.market,
        ProviderQuery(
            energy_type=params.energy_type,
            jurisdiction=params.jurisdiction,
            max_price_micro_block_per_kwh=params.max_price,
        ),
        params.min_kwh or 0,
        params.limit,
        params.cursor,
    )
    now = context.market.clock()
    return s.OffersResult(
        offers=[s.OfferResult.of(offer, now) for offer in page.items],
        next_cursor=page.next_cursor,
    )


@registry.method(
    "energy.settle",
    summary="Settle a purchase now: escrow to the provider, credits to the buyer, a receipt",
    result=s.SettlementResult,
    signed=True,
    original_name="settle",
    errors=(*AUTH_ERRORS, NotFound),
)
def settle(context: CallContext, params: s.SettleParams) -> s.SettlementResult:
    """Signed by the buyer, who may settle before the dispute window has passed
    (the settlement job settles every purchase after it). Settling a purchase
    that is already settled changes nothing and returns its receipt."""
    outcome = settlement.settle_early(
        context.market, signed_call(context, params), params.transaction_id
    )
    return _settlement_result(outcome)


def _settlement_result(outcome: settlement.Settlement) -> s.SettlementResult:
    return s.SettlementResult(
        transaction_id=outcome.purchase.purchase_id,
        status=str(outcome.purchase.status),
        already_settled=outcome.already_settled,
        receipt=s.ReceiptResult.of(outcome.receipt),
    )


@registry.method(
    "energy.getReceipts",
    summary="Settlement receipts: a provider's chain (oldest first) or a buyer's (newest first)",
    result=s.ReceiptsResult,
    original_name="getReceipts",
)
def get_receipts(context: CallContext, params: s.ReceiptsParams) -> s.ReceiptsResult:
    """Give exactly one of ``provider_id`` and ``buyer``. A provider's receipts
    come in chain order with the chain's head, so that pages concatenated are
    an export the verifier checks (docs/receipts.md)."""
    if params.buyer is not None:
        page, head = settlement.buyer_receipts(
            context.market, params.buyer, params.limit, params.cursor
        )
    else:
        page, head = settlement.provider_receipts(
            context.market, params.provider_id or "", params.limit, params.cursor
        )
    return s.ReceiptsResult(
        receipts=[s.ReceiptResult.of(r) for r in page.items],
        next_cursor=page.next_cursor,
        head=(
            s.ReceiptRef(chain=head.chain, sequence=head.sequence, receipt_hash=head.receipt_hash)
            if head
            else None
        ),
    )


@registry.method(
    "energy.getPortfolio",
    summary="An account's balance, stake, escrow, purchases, holdings, earnings and carbon",
    result=s.PortfolioResult,
    errors=(NotFound,),
)
def get_portfolio(context: CallContext, params: s.PortfolioParams) -> s.PortfolioResult:
    """Everything an account holds in one call: available balance, stake,
    escrow and the open purchases behind it, held credits with their
    provenance, settled purchases, what its providers earned, and the carbon
    offset of the energy it bought. Holdings and history page separately."""
    found = portfolio.get_portfolio(
        context.market,
        params.account,
        holdings_limit=params.holdings_limit,
        holdings_cursor=params.holdings_cursor,
        history_limit=params.history_limit,
        history_cursor=params.history_cursor,
    )
    return s.PortfolioResult(
        account=found.account,
        balance=found.balance_micro_block,
        stake=found.stake_micro_block,
        escrow=found.escrow_micro_block,
        open_purchases=[s.PurchaseResult.of(p) for p in found.open_purchases],
        holdings=[s.CreditResult.of(c) for c in found.holdings.items],
        holdings_next_cursor=found.holdings.next_cursor,
        purchase_history=[s.PurchaseResult.of(p) for p in found.history.items],
        purchase_history_next_cursor=found.history.next_cursor,
        providers=[p.provider_id for p in found.providers],
        earnings=found.earned_micro_block,
        sold_wh=found.sold_wh,
        carbon_offset=_carbon_result(found.carbon),
    )


def _carbon_result(offset: portfolio.CarbonOffset) -> s.CarbonOffsetResult:
    return s.CarbonOffsetResult(
        total_kg_co2=carbon.kg_from_g(offset.g_co2),
        total_g_co2=offset.g_co2,
        equivalent_trees=offset.equivalent_trees,
        bought_wh=offset.bought_wh,
    )


@registry.method(
    "energy.getCarbonOffset",
    summary="The CO2 the energy an account bought avoided",
    result=s.CarbonOffsetResult,
    original_name="getCarbonOffset",
    errors=(NotFound,),
)
def get_carbon_offset(context: CallContext, params: s.CarbonParams) -> s.CarbonOffsetResult:
    """Settled energy by type times the configured factors (grams of CO2 per
    kWh: solar 400, wind 400, hydro 20, battery 0 by default)."""
    uow = context.market.unit_of_work()
    if uow.accounts.get(params.account) is None:
        raise NotFound("no such account", account=params.account)
    return _carbon_result(portfolio.carbon_offset(context.market, uow, params.account))


@registry.method(
    "energy.retireCredits",
    summary="Claim held credits for a beneficiary: retired for good, with certificates",
    result=s.RetireResult,
    signed=True,
    errors=(*AUTH_ERRORS, NotFound, InvalidState),
)
def retire_credits(context: CallContext, params: s.RetireParams) -> s.RetireResult:
    """Signed by the holder. Every credit named must be held by the signer
    (bought and settled) and cover at most one hour of production; all are
    retired or none. Each becomes a certificate with the fields of an EnergyTag
    granular certificate and the signed reading it came from."""
    certificates = retirement.retire_credits(
        context.market,
        signed_call(context, params),
        retirement.Claim(
            credit_ids=tuple(params.credit_ids),
            beneficiary=params.beneficiary,
            period_start_ms=params.reporting_period_start_ms,
            period_end_ms=params.reporting_period_end_ms,
        ),
    )
    return s.RetireResult(certificates=[s.CertificateResult.of(c) for c in certificates])


@registry.method(
    "energy.getCertificate",
    summary="A retirement certificate",
    result=s.CertificateResult,
    errors=(NotFound,),
)
def get_certificate(context: CallContext, params: s.CertificateRef) -> s.CertificateResult:
    return s.CertificateResult.of(retirement.get_certificate(context.market, params.certificate_id))
