"""Turning a meter reading into a credit, exactly once.

One use case serves both paths: the MQTT topic rule's Lambda and the
``energy.submitReading`` method. Delivery is at least once, so a reading
already accepted is a success that mints nothing; everything else either
passes every rule and is minted, or is refused with a recorded reason. A
minted reading is one conditional write of the provider's item (the meter's
last reading and, with it, the credit; the provider's available energy),
then the credit's own record (see ``_record`` and ``restore_credits``).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final

from chalicelib.domain.credits import Credit, minted_credit
from chalicelib.domain.errors import AlreadyExists, ConcurrentUpdate
from chalicelib.domain.readings import (
    MAX_PAYLOAD_BYTES,
    MeterOwner,
    MeterState,
    Reading,
    ReadingRejected,
    ReadingRules,
    Rejection,
    RejectionRecord,
    check_reading,
    is_signed_by,
    parse_payload,
)
from chalicelib.observability import emit_metrics
from chalicelib.services.dependencies import Dependencies

# A reading that loses a race with another reading of the same meter is
# judged again against the winner; more rounds than this means a meter is
# being flooded, and the delivery is left to be retried by the sender.
MAX_ROUNDS: Final = 4

logger = logging.getLogger(__name__)


class Status(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


@dataclass(frozen=True)
class Outcome:
    status: Status
    meter_address: str | None
    reading_hash: str | None = None
    # The credit minted; for a duplicate, the earlier credit when it was read.
    credit: Credit | None = None
    reason: Rejection | None = None
    detail: str = ""


def record_payload(
    deps: Dependencies, payload: bytes, *, topic_meter_address: str | None, received_at_ms: int
) -> Outcome:
    """A raw MQTT payload, as the topic rule delivers it."""
    payload_hash = hashlib.sha256(payload).hexdigest()
    if len(payload) > MAX_PAYLOAD_BYTES:
        return _refuse(
            deps,
            topic_meter_address,
            Rejection.OVERSIZED,
            f"{len(payload)} bytes, the limit is {MAX_PAYLOAD_BYTES}",
            at_ms=received_at_ms,
            received_at_ms=received_at_ms,
            payload_hash=payload_hash,
        )
    try:
        document = _JSON.decode(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return _refuse(
            deps,
            topic_meter_address,
            Rejection.MALFORMED,
            "payload is not a UTF-8 JSON object",
            at_ms=received_at_ms,
            received_at_ms=received_at_ms,
            payload_hash=payload_hash,
        )
    return record_document(
        deps,
        document,
        topic_meter_address=topic_meter_address,
        received_at_ms=received_at_ms,
        payload_hash=payload_hash,
    )


def record_document(
    deps: Dependencies,
    document: Any,
    *,
    topic_meter_address: str | None,
    received_at_ms: int,
    payload_hash: str | None = None,
) -> Outcome:
    """A reading's JSON fields (``energy.submitReading`` params, or a parsed payload)."""
    if payload_hash is None:
        payload_hash = hashlib.sha256(
            json.dumps(document, sort_keys=True, default=str).encode()
        ).hexdigest()
    if not isinstance(document, dict):
        return _refuse(
            deps,
            topic_meter_address,
            Rejection.MALFORMED,
            "payload is not a JSON object",
            at_ms=received_at_ms,
            received_at_ms=received_at_ms,
            payload_hash=payload_hash,
        )
    try:
        reading = parse_payload(document)
    except ReadingRejected as refused:
        return _refuse(
            deps,
            topic_meter_address,
            refused.reason,
            refused.detail,
            at_ms=received_at_ms,
            received_at_ms=received_at_ms,
            payload_hash=payload_hash,
        )
    if topic_meter_address is not None and reading.meter_address != topic_meter_address:
        # The broker authenticated the topic's meter; the payload names another.
        return _refuse(
            deps,
            topic_meter_address,
            Rejection.TOPIC_MISMATCH,
            "meter_address differs from the topic's",
            at_ms=reading.timestamp_ms,
            received_at_ms=received_at_ms,
            payload_hash=payload_hash,
            reading_hash=reading.reading_hash,
        )
    # Over MQTT the broker authenticated the topic's meter (mTLS + policy).
    authenticated = topic_meter_address is not None
    for _ in range(MAX_ROUNDS - 1):
        try:
            return _record(deps, reading, received_at_ms, payload_hash, authenticated)
        except ConcurrentUpdate:
            continue
    return _record(deps, reading, received_at_ms, payload_hash, authenticated)


def _record(
    deps: Dependencies,
    reading: Reading,
    received_at_ms: int,
    payload_hash: str,
    authenticated: bool,
) -> Outcome:
    uow = deps.unit_of_work()
    meter, provider = uow.meters.get_with_provider(reading.meter_address, reading.provider_id)

    def refuse(reason: Rejection, detail: str, *, signed: bool) -> Outcome:
        # Kept in the meter's log when it came over the meter's own channel or
        # carries the meter's signature; counted on the meter (what stakes are
        # later slashed on) only for its own channel: anyone can post a forged
        # reading over HTTP, and such a count must not be theirs to raise.
        return _refuse(
            deps,
            reading.meter_address,
            reason,
            detail,
            at_ms=reading.timestamp_ms,
            received_at_ms=received_at_ms,
            payload_hash=payload_hash,
            reading_hash=reading.reading_hash,
            record=authenticated or signed,
            count=authenticated and meter is not None,
        )

    if meter is None:
        return refuse(
            Rejection.UNKNOWN_METER, "no meter is registered at this address", signed=False
        )
    if not is_signed_by(reading, meter):
        return refuse(
            Rejection.BAD_SIGNATURE, "signature does not match the meter's key", signed=False
        )
    if _already_accepted(deps, meter, reading):
        # A redelivery (or a replay) of a reading accepted before: a success
        # that mints nothing, kept in the log once per distinct message. Not
        # counted on the meter: one conditional put, the cheapest record.
        _refuse(
            deps,
            reading.meter_address,
            Rejection.DUPLICATE,
            "this reading was accepted before; nothing minted",
            at_ms=reading.timestamp_ms,
            received_at_ms=received_at_ms,
            payload_hash=payload_hash,
            reading_hash=reading.reading_hash,
            record=True,
            count=False,
            metric="ReadingsDuplicate",
        )
        return Outcome(Status.DUPLICATE, reading.meter_address, reading.reading_hash)
    now_ms = deps.now_ms()
    try:
        if provider is None:
            raise ReadingRejected(
                Rejection.PROVIDER_MISMATCH, "provider_id is not this meter's provider"
            )
        wh = check_reading(
            reading,
            meter,
            capacity_wh=provider.capacity_wh,
            provider_suspended=provider.suspended,
            now_ms=now_ms,
            rules=_rules(deps.settings.max_clock_skew_ms, deps.settings.max_reading_age_ms),
        )
    except ReadingRejected as refused:
        return refuse(refused.reason, refused.detail, signed=True)
    credit = _credit(deps, reading, meter, provider, wh, now_ms)
    # Two conditional writes in this order, not one transaction, which would
    # bill both twice. The first decides: the meter's last reading moves from
    # ``meter``'s to this one, carrying the credit; only one reading can move it
    # from there, so a racing delivery or reading loses here (ConcurrentUpdate:
    # judged again). The second, the credit's own record, is the same for
    # whoever writes it; if this function dies between the two, the registry
    # stream brings the first to restore_credits, which writes it.
    uow.meters.advance(
        meter, credit, reading_window=provider.reading_window.with_reading(reading.timestamp_ms)
    )
    uow.credits.mint(credit)
    # AlreadyExists: restore_credits wrote it first; the reading is ours all the same.
    with contextlib.suppress(AlreadyExists):
        uow.commit_in_order()
    _emit_metric("ReadingsAccepted", reading.meter_address)
    return Outcome(Status.ACCEPTED, reading.meter_address, reading.reading_hash, credit)


def _already_accepted(deps: Dependencies, meter: MeterState, reading: Reading) -> bool:
    """Whether this very reading was accepted before.

    The meter remembers its last reading (the common redelivery, answered
    without another read); an older one can only have been accepted if its
    credit exists, so the credit is looked up only when the counter has not
    moved forward.
    """
    if reading.reading_hash == meter.last_reading_hash:
        return True
    if meter.last_counter_wh is not None and reading.counter_wh <= meter.last_counter_wh:
        return deps.unit_of_work().credits.get(reading.reading_hash) is not None
    return False


def _credit(
    deps: Dependencies,
    reading: Reading,
    meter: MeterState,
    provider: MeterOwner,
    wh: int,
    now_ms: int,
) -> Credit:
    previous_ms = meter.last_timestamp_ms
    return minted_credit(
        reading_hash=reading.reading_hash,
        provider_id=provider.provider_id,
        meter_address=reading.meter_address,
        energy_type=provider.energy_type,
        jurisdiction=provider.jurisdiction,
        # A first reading (no previous) is the meter's baseline: an empty interval.
        interval_start_ms=reading.timestamp_ms if previous_ms is None else previous_ms,
        interval_end_ms=reading.timestamp_ms,
        wh=wh,
        counter_wh=reading.counter_wh,
        signature=reading.signature,
        minted_at_ms=now_ms,
        credit_lifetime_ms=deps.settings.credit_lifetime_ms,
    )


def restore_credits(deps: Dependencies, credits: Sequence[Credit]) -> int:
    """Write the credits of accepted readings that have no record of their own;
    return how many.

    An accepted reading is written in two steps (``_record``), and the first
    one, the provider's item, carries the credit. The registry stream brings
    every such change here, so a credit whose second write was lost (the
    function died, or its write was throttled, in between) is written a moment
    later. Most are there already: one eventually consistent read of their ids
    finds them, and a credit that read misses is put on a condition that keeps
    the one there.
    """
    by_id = {credit.credit_id: credit for credit in credits}
    if not by_id:
        return 0
    missing = by_id.keys() - deps.unit_of_work().credits.written(list(by_id))
    restored = 0
    for credit_id in sorted(missing):
        uow = deps.unit_of_work()
        uow.credits.mint(by_id[credit_id])
        try:
            uow.commit()
        except AlreadyExists:
            continue  # written after the read: by its ingest, or a redelivered batch
        restored += 1
        logger.warning(
            "credit restored from the provider's record",
            extra={"credit_id": credit_id, "meter_address": by_id[credit_id].meter_address},
        )
    if restored:
        # An ingest that stopped between its two writes; the alarm on this says so.
        emit_metrics({"CreditsRestored": restored})
    return restored


def _refuse(
    deps: Dependencies,
    meter_address: str | None,
    reason: Rejection,
    detail: str,
    *,
    at_ms: int,
    received_at_ms: int,
    payload_hash: str,
    reading_hash: str | None = None,
    record: bool = True,
    count: bool = False,
    metric: str = "ReadingsRejected",
) -> Outcome:
    _emit_metric(metric, meter_address, reason=str(reason))
    # A detail may quote the sender (an unknown field's name), and JSON can spell
    # a lone surrogate, which no UTF-8 holds: DynamoDB would refuse the record
    # and the delivery would fail. Such code points are kept as their escapes.
    detail = detail[:200].encode("utf-8", "backslashreplace").decode()
    if record and meter_address is not None:
        entry = RejectionRecord(
            meter_address, reason, detail, at_ms, received_at_ms, payload_hash, reading_hash
        )
        uow = deps.unit_of_work()
        uow.meters.record_rejection(entry, meter_known=count)
        # AlreadyExists: this very message was recorded (and counted) before.
        with contextlib.suppress(AlreadyExists):
            uow.commit()
    return Outcome(Status.REJECTED, meter_address, reading_hash, reason=reason, detail=detail)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# Exact numbers, and no NaN or Infinity. One decoder for every payload:
# json.loads with arguments builds a new one per call.
_JSON: Final = json.JSONDecoder(parse_float=Decimal, parse_constant=_no_constants)


@functools.lru_cache(maxsize=8)
def _rules(max_clock_skew_ms: int, max_age_ms: int) -> ReadingRules:
    # The same two settings for every reading of a function's life.
    return ReadingRules(max_clock_skew_ms=max_clock_skew_ms, max_age_ms=max_age_ms)


def _emit_metric(name: str, meter_address: str | None, **dimensions: str) -> None:
    # One CloudWatch embedded-metric line per outcome, no API call on the hot path.
    # Published twice over: without dimensions (the total an alarm divides) and
    # by each given dimension (the reason: a dozen values). The meter is a
    # plain property, searchable in Logs Insights: as a dimension it would
    # make a metric per meter.
    emit_metrics(
        {name: 1},
        dimensions=dimensions,
        dimension_sets=[[], sorted(dimensions)] if dimensions else [[]],
        properties={"meter_address": meter_address},
    )
