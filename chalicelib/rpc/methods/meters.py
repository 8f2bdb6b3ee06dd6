"""Meter methods: readings over HTTP, the credits they mint, meters and their refusals."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import BeforeValidator, Field, StrictStr

from chalicelib.domain import units
from chalicelib.domain.credits import Credit
from chalicelib.domain.errors import ConcurrentUpdate, NotFound, ReadingRefused
from chalicelib.domain.providers import EnergyType
from chalicelib.domain.readings import MeterState, RejectionRecord, topic_for
from chalicelib.rpc.methods.common import registry
from chalicelib.rpc.methods.fields import (
    WIRE_NAMES,
    Cursor,
    KwhAsWh,
    MeterAddress,
    PageLimit,
    Params,
    ProviderId,
    Result,
    number_schema,
)
from chalicelib.rpc.registry import CallContext
from chalicelib.services import ingest, meters

ReadingTimestamp = Annotated[
    int,
    BeforeValidator(lambda v, info: units.milliseconds_from_seconds(v, info.field_name or "")),
    number_schema("Unix seconds, exact to 1 ms (at most 3 decimal places)."),
]


class SubmitReadingParams(Params):
    """The original submitReading payload; the meter's signature authorises it.

    Validated here with the same exact conversions the meter protocol uses,
    so a malformed reading is a -32602 like any bad parameter; the ingest use
    case then parses the very params received.
    """

    provider_id: ProviderId
    meter_address: MeterAddress
    counter_wh: KwhAsWh = Field(
        validation_alias=WIRE_NAMES["counter_wh"],
        description="Cumulative counter, kWh (≤ 3 decimals)",
    )
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
    disputed_by: str | None = Field(
        default=None,
        description="The open dispute holding it: off sale, not settled or retired until resolved",
    )

    @classmethod
    def of(cls, credit: Credit, disputed_by: str | None = None) -> CreditResult:
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
            disputed_by=disputed_by,
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


@registry.method(
    "energy.submitReading",
    summary="Submit a signed meter reading over HTTP (the MQTT path's twin)",
    result=SubmitReadingResult,
    original_name="submitReading",
    errors=(ReadingRefused, ConcurrentUpdate),
)
def submit_reading(context: CallContext, params: SubmitReadingParams) -> SubmitReadingResult:
    """Authorised by the meter's own signature (docs/meter-protocol.md), not by
    an account. Runs the same checks and the same minting as the MQTT path. A
    reading already accepted is a success with status ``duplicate`` that mints
    nothing; a refused one is error 4003 with ``data.rejection`` and is
    recorded for the meter (``energy.getRejections``)."""
    outcome = ingest.record_document(
        context.deps,
        dict(context.raw_params),
        topic_meter_address=None,
        received_at_ms=context.deps.clock() * 1000,
    )
    if outcome.status == ingest.Status.REJECTED:
        raise ReadingRefused(
            f"reading rejected: {outcome.detail}",
            rejection=str(outcome.reason),
            detail=outcome.detail,
        )
    credit = outcome.credit
    wh = credit.wh if credit is not None and outcome.status == ingest.Status.ACCEPTED else 0
    return SubmitReadingResult(
        status=str(outcome.status),
        credit_id=outcome.reading_hash or "",
        amount_kwh=units.kwh_from_wh(wh),
        amount_wh=wh,
        reading_hash=outcome.reading_hash or "",
        credit=CreditResult.of(credit) if credit is not None else None,
    )


@registry.method(
    "energy.getCredits",
    summary="A provider's credits with their state and provenance, newest first",
    result=CreditsResult,
    original_name="getCredits",
    errors=(NotFound,),
)
def get_credits(context: CallContext, params: CreditsParams) -> CreditsResult:
    page, held = meters.provider_credits(
        context.deps, params.provider_id, params.limit, params.cursor
    )
    return CreditsResult(
        credits=[CreditResult.of(c, held.get(c.credit_id)) for c in page.items],
        next_cursor=page.next_cursor,
    )


@registry.method(
    "energy.getMeter",
    summary="A meter's key, last accepted reading and counts of refusals",
    result=MeterResult,
    errors=(NotFound,),
)
def get_meter(context: CallContext, params: MeterRef) -> MeterResult:
    return MeterResult.of(meters.get_meter(context.deps, params.meter_address))


@registry.method(
    "energy.getRejections",
    summary="A meter's refused readings and why, newest first",
    result=RejectionsResult,
)
def get_rejections(context: CallContext, params: RejectionsParams) -> RejectionsResult:
    page = meters.meter_rejections(context.deps, params.meter_address, params.limit, params.cursor)
    return RejectionsResult(
        rejections=[RejectionResult.of(r) for r in page.items], next_cursor=page.next_cursor
    )
