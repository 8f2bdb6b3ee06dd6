"""Whatever a payload holds, ingest answers it and mints only the reading a meter signed.

Anyone who holds a meter's certificate can publish any bytes on its topic, and
anyone can call ``energy.submitReading`` with any JSON. Hypothesis generates
such input: arbitrary bytes, arbitrary JSON in the reading's fields, and a
signed reading with one field replaced by arbitrary JSON. Each is answered
with an outcome (never an exception, which would send the message to the
dead-letter queue or the caller a stack trace), and nothing is minted but the
signed reading itself: on both storage adapters, since DynamoDB refuses what
the in-memory one keeps (text that no UTF-8 holds).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import simplejson
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from chalicelib.domain.readings import PAYLOAD_FIELDS
from chalicelib.services.ingest import Status, record_document, record_payload
from tests.hostile import JSON_VALUES, any_text
from tests.support import NOW, MarketHarness, SimulatedMeter, metered_provider

RECEIVED_MS = NOW * 1000
# The meter's readings, a second apart from five hours ago: well inside the
# six hours a reading may be late, for as many examples as a run makes.
FIRST_MS = RECEIVED_MS - 5 * 3_600_000
_steps = itertools.count(1)

FIELD_NAMES = st.sampled_from(sorted(PAYLOAD_FIELDS)) | any_text(max_size=12)


@pytest.fixture
def metered(market: MarketHarness) -> Iterator[tuple[MarketHarness, SimulatedMeter]]:
    """A meter with its baseline reading, on each storage adapter. Every example
    of a test shares it (a market per example would spend the time on
    registration, not on ingest): the properties hold whatever came before.

    Each example checks the meter's count of accepted readings (one read); at
    the end, every credit stored must be one of those readings (one scan)."""
    meter = metered_provider(market, capacity_kwh=10_000)
    baseline = meter.payload(1_000, FIRST_MS)
    outcome = record_payload(
        market.deps, baseline, topic_meter_address=meter.meter_address, received_at_ms=RECEIVED_MS
    )
    assert outcome.status == Status.ACCEPTED, outcome
    yield market, meter
    assert market.audit().credits == _accepted(market, meter) - 1  # the baseline is no credit


# The fixture above is meant to outlive each example.
SHARED_MARKET = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _accepted(harness: MarketHarness, meter: SimulatedMeter) -> int:
    state = harness.uow().meters.get(meter.meter_address)
    assert state is not None
    return state.accepted_readings


@SHARED_MARKET
@given(payload=st.binary(max_size=2_100))
def test_any_bytes_on_a_meters_topic_are_refused_and_mint_nothing(
    metered: tuple[MarketHarness, SimulatedMeter], payload: bytes
) -> None:
    harness, meter = metered
    before = _accepted(harness, meter)
    outcome = record_payload(
        harness.deps, payload, topic_meter_address=meter.meter_address, received_at_ms=RECEIVED_MS
    )
    assert outcome.status == Status.REJECTED, outcome
    assert _accepted(harness, meter) == before


@SHARED_MARKET
@given(fields=st.dictionaries(FIELD_NAMES, JSON_VALUES, max_size=7), over_mqtt=st.booleans())
# A field name no UTF-8 holds: its refusal's detail names it (this crashed the
# ingest function on DynamoDB, which stores only valid text).
@example(fields={"\ud800": 1}, over_mqtt=True)
def test_any_json_in_a_readings_fields_is_refused_and_mints_nothing(
    metered: tuple[MarketHarness, SimulatedMeter], fields: dict[str, Any], over_mqtt: bool
) -> None:
    harness, meter = metered
    before = _accepted(harness, meter)
    topic = meter.meter_address if over_mqtt else None
    as_published = record_payload(
        harness.deps,
        json.dumps(fields).encode(),  # NaN and Infinity spelled as Python writes them
        topic_meter_address=topic,
        received_at_ms=RECEIVED_MS,
    )
    as_submitted = record_document(
        harness.deps, fields, topic_meter_address=topic, received_at_ms=RECEIVED_MS
    )
    assert as_published.status == Status.REJECTED, as_published
    assert as_submitted.status == Status.REJECTED, as_submitted
    assert _accepted(harness, meter) == before


def _near(value: Any) -> list[Any]:
    """Other spellings of a signed value, and values one step from it."""
    if isinstance(value, Decimal):  # kwh_reading, timestamp
        return [
            str(value),
            int(value) if value == value.to_integral_value() else value.normalize(),
            value.quantize(Decimal("0.000001")),
            float(value),
            value + Decimal("0.001"),
            value - Decimal("0.001"),
            -value,
        ]
    text = str(value)
    return [text.upper(), f"0x{text}", f"0X{text.upper()}", f" {text}", text[:-1], text + "0"]


@SHARED_MARKET
@given(field=st.sampled_from(sorted(PAYLOAD_FIELDS)), data=st.data())
def test_a_signed_reading_with_a_field_replaced_mints_nothing_and_spoils_nothing(
    metered: tuple[MarketHarness, SimulatedMeter], field: str, data: st.DataObject
) -> None:
    """The altered reading comes first. Only an equivalent spelling of the signed
    value (``"0x"`` before the signature, ``"1.5"`` for ``1.5``) can be
    accepted, and then it is the signed reading, with its hash; anything else is
    refused without moving the meter on, so the signed reading, delivered
    next, is still accepted (or answered as that duplicate)."""
    harness, meter = metered
    step = next(_steps)
    signed = meter.reading(1_000 + 10 * step, FIRST_MS + 1_000 * step)
    value = data.draw(st.sampled_from(_near(signed[field])) | JSON_VALUES, label="value")
    before = _accepted(harness, meter)
    altered = record_payload(
        harness.deps,
        # Decimals as JSON numbers, as a meter writes them; NaN and Infinity too.
        simplejson.dumps({**signed, field: value}, use_decimal=True, allow_nan=True).encode(),
        topic_meter_address=meter.meter_address,
        received_at_ms=RECEIVED_MS,
    )
    genuine = record_document(
        harness.deps, signed, topic_meter_address=None, received_at_ms=RECEIVED_MS
    )
    event(f"altered reading: {altered.status} {altered.reason or ''}")
    assert genuine.status in (Status.ACCEPTED, Status.DUPLICATE), genuine
    if altered.status != Status.REJECTED:
        assert altered.reading_hash == genuine.reading_hash, altered
        assert genuine.status == Status.DUPLICATE
    assert _accepted(harness, meter) == before + 1
