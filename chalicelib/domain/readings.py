"""Meter readings: the signed message, the payload, and the rules a reading must pass.

This module is the one implementation of docs/meter-protocol.md. A meter
signs a few lines of ASCII, not JSON, so that firmware can build the bytes
with printf and no canonicalisation library:

    energy-marketplace/meter-reading/v1\\n
    <provider_id>\\n
    <meter_address>\\n
    <counter_wh>\\n
    <timestamp_ms>

``counter_wh`` is the meter's cumulative counter in whole Wh and
``timestamp_ms`` the reading time in Unix milliseconds, both plain decimal
integers without sign or leading zeros. The SHA-256 of those bytes is the
reading's identity: redeliveries of one reading have the same hash.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final

from nacl.signing import SigningKey

from chalicelib.domain import signing, units
from chalicelib.domain.providers import (
    MIN_STAKE_MICRO_BLOCK,
    EnergyType,
    Provider,
    ReadingWindow,
)

READING_DOMAIN: Final = b"energy-marketplace/meter-reading/v1"
_READING_DOMAIN_TEXT: Final = READING_DOMAIN.decode()
TOPIC_PREFIX: Final = "energy/meters"
TOPIC_SUFFIX: Final = "readings"
MAX_PAYLOAD_BYTES: Final = 2048

# Defaults of the validation rules (configurable per deployment).
DEFAULT_MAX_CLOCK_SKEW_MS: Final = 120_000  # a meter's clock may run 2 minutes fast
DEFAULT_MAX_AGE_MS: Final = 6 * 3_600_000  # a reading older than 6 hours is refused
# A meter may report up to 5 % more than capacity x elapsed time (CT and clock
# tolerance), plus 1 Wh for the counter's own rounding.
PLAUSIBILITY_TOLERANCE_PERCENT: Final = 5
PLAUSIBILITY_SLACK_WH: Final = 1

_PROVIDER_ID: Final = re.compile(r"^energy-0x[0-9a-f]{16}$")
PAYLOAD_FIELDS: Final = frozenset(
    {"provider_id", "meter_address", "kwh_reading", "timestamp", "signature"}
)
_SIGNATURE: Final = re.compile(r"(0x)?[0-9a-fA-F]{128}")


def topic_for(meter_address: str) -> str:
    """The one topic a meter publishes its readings to."""
    return f"{TOPIC_PREFIX}/{meter_address}/{TOPIC_SUFFIX}"


class Rejection(StrEnum):
    """Why a reading was refused; recorded with the reading and counted per meter."""

    MALFORMED = "malformed"  # not JSON, a field missing or of the wrong type
    OVERSIZED = "oversized"  # payload larger than MAX_PAYLOAD_BYTES
    TOPIC_MISMATCH = "topic_mismatch"  # meter_address differs from the topic's
    UNKNOWN_METER = "unknown_meter"
    BAD_SIGNATURE = "bad_signature"
    # Not a refusal of the delivery (it is answered as a success) but of a
    # second minting: a reading accepted before, kept in the log once.
    DUPLICATE = "duplicate"
    METER_INACTIVE = "meter_inactive"
    PROVIDER_MISMATCH = "provider_mismatch"  # provider_id is not the meter's provider
    PROVIDER_SUSPENDED = "provider_suspended"
    COUNTER_NOT_INCREASING = "counter_not_increasing"
    TIMESTAMP_IN_FUTURE = "timestamp_in_future"
    TIMESTAMP_TOO_OLD = "timestamp_too_old"
    TIMESTAMP_NOT_INCREASING = "timestamp_not_increasing"
    IMPLAUSIBLE_INCREASE = "implausible_increase"


class ReadingRejected(Exception):
    """A reading that fails a rule: it mints nothing and is recorded with its reason."""

    def __init__(self, reason: Rejection, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Reading:
    """A reading as the meter signed it."""

    provider_id: str
    meter_address: str
    counter_wh: int
    timestamp_ms: int
    signature: str  # 128 hex characters
    # Derived from the fields above when the reading is built: ingest needs
    # both several times, and plain attributes cost less to read than a cache
    # behind a property (functools.cached_property also takes a lock).
    message: bytes = field(init=False, repr=False, compare=False)
    reading_hash: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        message = reading_message(
            self.provider_id, self.meter_address, self.counter_wh, self.timestamp_ms
        )
        object.__setattr__(self, "message", message)
        object.__setattr__(self, "reading_hash", hashlib.sha256(message).hexdigest())


def reading_message(
    provider_id: str, meter_address: str, counter_wh: int, timestamp_ms: int
) -> bytes:
    if counter_wh < 0 or timestamp_ms < 0:
        raise ValueError("counter and timestamp are non-negative")
    # One format and one encode: the same UTF-8 bytes as joining each part's.
    text = f"{_READING_DOMAIN_TEXT}\n{provider_id}\n{meter_address}\n{counter_wh}\n{timestamp_ms}"
    return text.encode()


def signed_payload(
    key: SigningKey, provider_id: str, meter_address: str, counter_wh: int, timestamp_ms: int
) -> dict[str, Any]:
    """What a meter publishes: the original submitReading fields, signed.

    ``kwh_reading`` and ``timestamp`` are exact decimals with 3 places (whole
    Wh, whole milliseconds); encode them without going through float.
    """
    message = reading_message(provider_id, meter_address, counter_wh, timestamp_ms)
    return {
        "provider_id": provider_id,
        "meter_address": meter_address,
        "kwh_reading": Decimal(counter_wh).scaleb(-3),
        "timestamp": Decimal(timestamp_ms).scaleb(-3),
        "signature": signing.sign(key, message),
    }


def parse_payload(payload: dict[str, Any]) -> Reading:
    """The original ``submitReading`` fields -> a Reading, exactly, or MALFORMED.

    ``kwh_reading`` is the cumulative counter in kWh (at most 3 decimals, so a
    whole number of Wh); ``timestamp`` is Unix seconds (at most 3 decimals).
    """
    try:
        # Exactly the signed fields, as energy.submitReading takes them: anything
        # else would ride along unsigned, for someone to trust by mistake.
        # (The subset test first: it builds no set for the usual payload.)
        if not PAYLOAD_FIELDS.issuperset(payload):
            unknown = sorted(set(payload) - PAYLOAD_FIELDS)
            raise ValueError(f"unknown field {unknown[0]}")
        provider_id = payload["provider_id"]
        meter_address = payload["meter_address"]
        signature = payload["signature"]
        if not (
            isinstance(provider_id, str)
            and isinstance(meter_address, str)
            and isinstance(signature, str)
        ):
            raise TypeError("provider_id, meter_address and signature are strings")
        if not _PROVIDER_ID.match(provider_id):
            raise ValueError("provider_id is not a provider id")
        if not _SIGNATURE.fullmatch(signature):
            raise ValueError("signature is not 64 bytes of hex")
        counter_wh = units.wh_from_kwh(payload["kwh_reading"], "kwh_reading")
        timestamp_ms = _milliseconds(payload["timestamp"])
        # JSON can spell a lone surrogate ("\ud800"), which no UTF-8 message
        # holds; checked last so that every other refusal keeps its detail.
        if not meter_address.isascii() and not _is_utf8_text(meter_address):
            raise ValueError("meter_address is not valid Unicode text")
    except KeyError as exc:
        raise ReadingRejected(Rejection.MALFORMED, f"missing field {exc.args[0]}") from exc
    except (TypeError, ValueError) as exc:
        raise ReadingRejected(Rejection.MALFORMED, str(exc)) from exc
    return Reading(
        provider_id, meter_address, counter_wh, timestamp_ms, signing.normalise_hex(signature)
    )


def _is_utf8_text(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _milliseconds(seconds: object) -> int:
    kind = type(seconds)
    # What JSON yields (Decimal, int) passes without the slower isinstance tests.
    if (kind is not Decimal and kind is not int) and (
        isinstance(seconds, bool) or not isinstance(seconds, int | float | Decimal | str)
    ):
        raise TypeError("timestamp must be a number of seconds")
    return units.milliseconds_from_seconds(seconds)


@dataclass(frozen=True)
class MeterState:
    """What the marketplace remembers of a meter between readings."""

    meter_address: str
    provider_id: str
    public_key: str
    active: bool = True
    last_counter_wh: int | None = None  # None until the first accepted reading
    last_timestamp_ms: int | None = None
    last_reading_hash: str | None = None
    accepted_readings: int = 0
    # Refusals by reason; bad_signature on a meter's own authenticated channel
    # is the count later releases slash on.
    rejections: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class MeterOwner:
    """What ingest needs of a meter's provider: read with the meter, and no more
    (the whole provider record would cost more to read and map than the rest)."""

    provider_id: str
    energy_type: EnergyType
    jurisdiction: str
    capacity_wh: int
    suspended: bool  # its stake is below the minimum: it mints nothing
    reading_window: ReadingWindow  # recent 15-minute slots with a reading (uptime)

    @classmethod
    def of(cls, provider: Provider) -> MeterOwner:
        return cls(
            provider.provider_id,
            provider.energy_type,
            provider.jurisdiction,
            provider.capacity_wh,
            provider.stake_micro_block < MIN_STAKE_MICRO_BLOCK,
            provider.reading_window,
        )


@dataclass(frozen=True)
class ReadingRules:
    max_clock_skew_ms: int = DEFAULT_MAX_CLOCK_SKEW_MS
    max_age_ms: int = DEFAULT_MAX_AGE_MS


def is_signed_by(reading: Reading, meter: MeterState) -> bool:
    """Whether the meter's registered key signed this reading (protocol check 5)."""
    return signing.verify(meter.public_key, reading.message, reading.signature)


def check_reading(
    reading: Reading,
    meter: MeterState,
    *,
    capacity_wh: int,
    provider_suspended: bool,
    now_ms: int,
    rules: ReadingRules = ReadingRules(),
) -> int:
    """Apply the rules that follow the signature check, in the documented order;
    return the Wh to mint.

    The signature is verified, and duplicates recognised (by reading hash),
    before this is called, so a redelivered reading is never mistaken for a
    counter that went backwards. Returns 0 for a meter's first reading, which
    sets its baseline.
    """
    if not meter.active:
        raise ReadingRejected(Rejection.METER_INACTIVE, "the meter is deactivated")
    if reading.provider_id != meter.provider_id:
        raise ReadingRejected(
            Rejection.PROVIDER_MISMATCH, "provider_id is not this meter's provider"
        )
    if provider_suspended:
        raise ReadingRejected(
            Rejection.PROVIDER_SUSPENDED, "the provider's stake is below the minimum"
        )
    if meter.last_counter_wh is not None and reading.counter_wh <= meter.last_counter_wh:
        raise ReadingRejected(
            Rejection.COUNTER_NOT_INCREASING,
            f"counter {reading.counter_wh} Wh is not above {meter.last_counter_wh} Wh",
        )
    if reading.timestamp_ms > now_ms + rules.max_clock_skew_ms:
        raise ReadingRejected(
            Rejection.TIMESTAMP_IN_FUTURE, "timestamp is ahead of the marketplace clock"
        )
    if reading.timestamp_ms < now_ms - rules.max_age_ms:
        raise ReadingRejected(Rejection.TIMESTAMP_TOO_OLD, "timestamp is too old")
    if meter.last_timestamp_ms is None or meter.last_counter_wh is None:
        return 0
    elapsed_ms = reading.timestamp_ms - meter.last_timestamp_ms
    if elapsed_ms <= 0:
        raise ReadingRejected(
            Rejection.TIMESTAMP_NOT_INCREASING, "timestamp is not after the previous reading's"
        )
    increase_wh = reading.counter_wh - meter.last_counter_wh
    if increase_wh > plausible_increase_wh(capacity_wh, elapsed_ms):
        raise ReadingRejected(
            Rejection.IMPLAUSIBLE_INCREASE,
            f"{increase_wh} Wh in {elapsed_ms} ms exceeds capacity {capacity_wh} W",
        )
    return increase_wh


def plausible_increase_wh(capacity_wh: int, elapsed_ms: int) -> int:
    """The most a meter of this capacity (W, i.e. Wh per hour) can add in ``elapsed_ms``."""
    exact = capacity_wh * elapsed_ms * (100 + PLAUSIBILITY_TOLERANCE_PERCENT)
    return exact // (3_600_000 * 100) + PLAUSIBILITY_SLACK_WH


@dataclass(frozen=True)
class RejectionRecord:
    """A refused reading, as kept for the meter's owner and the operator."""

    meter_address: str
    reason: Rejection
    detail: str
    at_ms: int  # the reading's own time when it could be read, else when received
    received_at_ms: int
    payload_hash: str  # SHA-256 of the payload bytes: the same delivery, the same record
    reading_hash: str | None = None
