"""Meter readings become credits exactly once, on both storage adapters."""

from __future__ import annotations

import base64
import json
import random
from decimal import Decimal
from typing import Any

import pytest

from chalicelib import observability
from chalicelib.iot_events import MalformedEvent, handle_reading_event
from chalicelib.services.ingest import Outcome, Status, record_payload
from energy_client.rpc_client import RpcError, Signer
from tests.emf_spec import emf_violations
from tests.support import BLOCK, NOW, MarketHarness, SimulatedMeter, metered_provider

T0 = NOW * 1000 - 3_600_000  # an hour before the market clock, in ms
QUARTER = 900_000


def ingest(
    market: MarketHarness,
    payload: bytes,
    topic: str | None = None,
    received_at_ms: int = NOW * 1000,
) -> Outcome:
    return record_payload(
        market.deps, payload, topic_meter_address=topic, received_at_ms=received_at_ms
    )


def minted_state(market: MarketHarness, meter: SimulatedMeter) -> tuple[Any, ...]:
    """Everything a reading may change when it is accepted."""
    totals = market.audit()
    state = market.client.call("energy.getMeter", {"meter_address": meter.meter_address})
    provider = market.client.call("energy.getProvider", {"provider_id": meter.provider_id})
    return (
        totals.minted_wh,
        totals.credits,
        state["last_counter_wh"],
        state["last_reading_hash"],
        provider["available_wh"],
    )


def test_readings_mint_the_increase_with_provenance(market: MarketHarness) -> None:
    meter = metered_provider(market)
    first = ingest(market, meter.payload(1_000_000, T0), meter.meter_address)
    assert (first.status, first.credit and first.credit.wh) == (Status.ACCEPTED, 0)
    second = ingest(market, meter.payload(1_002_500, T0 + QUARTER), meter.meter_address)
    assert second.status == Status.ACCEPTED and second.credit is not None
    assert second.credit.wh == 2_500

    credits = market.client.call("energy.getCredits", {"provider_id": meter.provider_id})
    [credit] = credits["credits"]
    assert credit["amount_wh"] == 2_500 and credit["amount_kwh"] == Decimal("2.5")
    assert (credit["interval_start_ms"], credit["interval_end_ms"]) == (T0, T0 + QUARTER)
    assert credit["energy_type"] == "solar" and credit["jurisdiction"] == "US_CA"
    assert credit["state"] == "available"
    assert credit["credit_id"] == second.reading_hash
    provider = market.client.call("energy.getProvider", {"provider_id": meter.provider_id})
    assert provider["available_wh"] == 2_500
    assert provider["uptime_percent"] is not None
    state = market.client.call("energy.getMeter", {"meter_address": meter.meter_address})
    assert (state["accepted_readings"], state["last_counter_wh"]) == (2, 1_002_500)


def test_a_redelivered_reading_mints_nothing(market: MarketHarness) -> None:
    meter = metered_provider(market)
    baseline = meter.payload(1_000, T0)
    later = meter.payload(3_000, T0 + QUARTER)
    latest = meter.payload(5_000, T0 + 2 * QUARTER)
    for payload in (baseline, later, latest):
        assert ingest(market, payload).status == Status.ACCEPTED
    before = minted_state(market, meter)
    for payload in (latest, later, baseline, latest):  # newest, older, the baseline
        outcome = ingest(market, payload)
        assert outcome.status == Status.DUPLICATE
    assert minted_state(market, meter) == before
    assert market.audit().minted_wh == 4_000


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("forged signature", "bad_signature"),
        ("counter backwards", "counter_not_increasing"),
        ("counter unchanged", "counter_not_increasing"),
        ("from the future", "timestamp_in_future"),
        ("too old", "timestamp_too_old"),
        ("time going backwards", "timestamp_not_increasing"),
        ("implausible jump", "implausible_increase"),
        ("another provider", "provider_mismatch"),
    ],
)
def test_a_bad_reading_is_recorded_and_mints_nothing(
    market: MarketHarness, case: str, reason: str
) -> None:
    meter = metered_provider(market, capacity_kwh=10)  # 10 kW: 2.625 kWh a quarter
    assert ingest(market, meter.payload(50_000, T0)).status == Status.ACCEPTED
    payloads = {
        "forged signature": SimulatedMeter(
            meter.meter_address, meter.provider_id, Signer.generate("x")
        ).payload(51_000, T0 + QUARTER),
        "counter backwards": meter.payload(49_000, T0 + QUARTER),
        "counter unchanged": meter.payload(50_000, T0 + QUARTER),
        "from the future": meter.payload(51_000, NOW * 1000 + 600_000),
        "too old": meter.payload(51_000, NOW * 1000 - 7 * 3_600_000),
        "time going backwards": meter.payload(51_000, T0 - 1),
        "implausible jump": meter.payload(50_000 + 2_627, T0 + QUARTER),
        "another provider": SimulatedMeter(
            meter.meter_address, "energy-0x0000000000000000", meter.key
        ).payload(51_000, T0 + QUARTER),
    }
    before = minted_state(market, meter)
    outcome = ingest(market, payloads[case], meter.meter_address)
    assert (outcome.status, outcome.reason) == (Status.REJECTED, reason)
    assert minted_state(market, meter) == before
    rejections = market.client.call("energy.getRejections", {"meter_address": meter.meter_address})[
        "rejections"
    ]
    assert [r["reason"] for r in rejections] == [reason]
    counted = market.client.call("energy.getMeter", {"meter_address": meter.meter_address})
    assert counted["rejections"] == {reason: 1}


def test_the_plausibility_bound_accepts_the_full_capacity(market: MarketHarness) -> None:
    meter = metered_provider(market, capacity_kwh=10)
    ingest(market, meter.payload(50_000, T0))
    # 10 kW for 15 minutes is 2,500 Wh; 5 % tolerance and 1 Wh slack allow 2,626.
    assert ingest(market, meter.payload(52_626, T0 + QUARTER)).status == Status.ACCEPTED


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "malformed"),
        (b"[1, 2]", "malformed"),
        (b'{"kwh_reading": NaN}', "malformed"),
        (b"\xff\xfe", "malformed"),
        (json.dumps({"meter_address": "m"}).encode(), "malformed"),
        (b"{" + b" " * 3000 + b"}", "oversized"),
    ],
)
def test_malformed_payloads_are_recorded_under_the_topic_meter(
    market: MarketHarness, payload: bytes, reason: str
) -> None:
    meter = metered_provider(market)
    before = minted_state(market, meter)
    outcome = ingest(market, payload, meter.meter_address)
    assert (outcome.status, outcome.reason) == (Status.REJECTED, reason)
    assert minted_state(market, meter) == before
    rejections = market.client.call("energy.getRejections", {"meter_address": meter.meter_address})[
        "rejections"
    ]
    assert [r["reason"] for r in rejections] == [reason]


def test_missing_and_mistyped_fields_are_malformed(market: MarketHarness) -> None:
    meter = metered_provider(market)
    good = meter.reading(1_000, T0)
    for broken in (
        {k: v for k, v in good.items() if k != "signature"},
        {**good, "kwh_reading": "lots"},
        {**good, "kwh_reading": "0.0005"},  # half a Wh
        {**good, "kwh_reading": -1},
        {**good, "timestamp": True},
        {**good, "signature": "abc"},
        {**good, "provider_id": 7},
    ):
        outcome = ingest(market, json.dumps(broken, default=str).encode(), meter.meter_address)
        assert (outcome.status, outcome.reason) == (Status.REJECTED, "malformed"), broken


def test_a_payload_for_another_meter_than_its_topic_is_refused(market: MarketHarness) -> None:
    alice = metered_provider(market, "alice.theblock")
    bob = metered_provider(market, "bob.theblock")
    outcome = ingest(market, bob.payload(1_000, T0), topic=alice.meter_address)
    assert (outcome.status, outcome.reason) == (Status.REJECTED, "topic_mismatch")
    assert market.audit().credits == 0


def test_readings_of_an_unknown_meter_are_refused(market: MarketHarness) -> None:
    stranger = SimulatedMeter("ghost_meter", "energy-0x0000000000000000", Signer.generate("g"))
    outcome = ingest(market, stranger.payload(1_000, T0), topic="ghost_meter")
    assert (outcome.status, outcome.reason) == (Status.REJECTED, "unknown_meter")


def test_a_suspended_provider_mints_nothing(market: MarketHarness) -> None:
    meter = metered_provider(market, stake=1_000 * BLOCK)
    owner_key = None  # the owner withdraws stake below the minimum
    del owner_key
    account = market.client.call("energy.getProvider", {"provider_id": meter.provider_id})
    assert account["status"] == "active"
    uow = market.uow()
    provider = uow.providers.get(meter.provider_id)
    assert provider is not None
    uow.providers.save(provider.restaked(-1, now=NOW), expected_version=provider.version)
    uow.commit()
    outcome = ingest(market, meter.payload(1_000, T0))
    assert (outcome.status, outcome.reason) == (Status.REJECTED, "provider_suspended")


def test_shuffled_redelivery_mints_exactly_what_accepted_readings_justify(
    market: MarketHarness,
) -> None:
    """1,000 readings, 30 % delivered twice or more, in random order, on both adapters
    (moto copies the tables a transaction touches: with two items a reading, not
    three, the thousand run in seconds)."""
    count = 1_000
    meter = metered_provider(market, capacity_kwh=10_000)  # 10 MW: 41.6 kWh in 15 s
    rng = random.Random(20261124)
    counter, readings = 10_000, []
    for n in range(count):  # one reading every 15 s, ending just before the market clock
        counter += rng.randint(1, 20_000)
        readings.append((counter, NOW * 1000 - (count - n) * 15_000))
    deliveries = [meter.payload(c, t) for c, t in readings]
    deliveries += [rng.choice(deliveries) for _ in range(count * 3 // 10)]
    # Mostly in order, as a broker delivers, with local reordering and redelivery.
    order = sorted(range(len(deliveries)), key=lambda i: (i % count) + rng.uniform(-5, 5))
    outcomes = [ingest(market, deliveries[i]) for i in order]

    accepted = {o.reading_hash: o for o in outcomes if o.status == Status.ACCEPTED}
    assert len(accepted) == sum(1 for o in outcomes if o.status == Status.ACCEPTED)  # once each
    assert {o.reason for o in outcomes if o.status == Status.REJECTED} <= {
        "counter_not_increasing",
        "timestamp_not_increasing",
    }
    accepted_counters = sorted(o.credit.counter_wh for o in accepted.values() if o.credit)
    totals = market.audit()
    # Cumulative counters: the energy minted is exactly last - first accepted counter.
    assert totals.minted_wh == accepted_counters[-1] - accepted_counters[0]
    assert totals.credits == len(accepted) - 1  # every accepted reading but the baseline
    state = market.client.call("energy.getMeter", {"meter_address": meter.meter_address})
    assert state["last_counter_wh"] == accepted_counters[-1]
    assert state["accepted_readings"] == len(accepted)
    # Wh is conserved: everything minted is still available (nothing is sold yet),
    # and the provider's counter agrees with its credits.
    provider = market.client.call("energy.getProvider", {"provider_id": meter.provider_id})
    assert provider["available_wh"] == totals.minted_wh


def test_submit_reading_over_the_api_uses_the_same_rules(market: MarketHarness) -> None:
    meter = metered_provider(market)
    first = market.client.call("energy.submitReading", meter.reading(7_000, T0))
    assert (first["status"], first["amount_wh"]) == ("accepted", 0)
    second = market.client.call("energy.submitReading", meter.reading(9_500, T0 + QUARTER))
    assert (second["status"], second["amount_kwh"]) == ("accepted", Decimal("2.5"))
    again = market.client.call("energy.submitReading", meter.reading(9_500, T0 + QUARTER))
    assert (again["status"], again["amount_wh"], again["credit_id"]) == (
        "duplicate",
        0,
        second["credit_id"],
    )
    with pytest.raises(RpcError) as refused:
        market.client.call("energy.submitReading", meter.reading(9_000, T0 + 2 * QUARTER))
    assert (refused.value.code, refused.value.data["rejection"]) == (4003, "counter_not_increasing")


def test_rotating_the_meter_key_retires_the_old_one(market: MarketHarness) -> None:
    owner = market.funded_account("carol.theblock", block=20_000)
    old = Signer.generate("meter")
    provider = market.provider(owner, meter_public_key=old.public_key)
    new = Signer.generate("meter")
    market.client.call(
        "energy.updateProvider",
        {"provider_id": provider["provider_id"], "updates": {"meter_public_key": new.public_key}},
        owner,
    )
    address, pid = provider["meter_address"], provider["provider_id"]
    stale = SimulatedMeter(address, pid, old).payload(1_000, T0)
    assert ingest(market, stale).reason == "bad_signature"
    fresh = SimulatedMeter(address, pid, new).payload(1_000, T0)
    assert ingest(market, fresh).status == Status.ACCEPTED


def test_the_topic_rule_event_is_handled_and_a_broken_one_raises(market: MarketHarness) -> None:
    meter = metered_provider(market)
    event = {
        "payload": base64.b64encode(meter.payload(1_000, T0)).decode(),
        "topic_meter_address": meter.meter_address,
        "client_id": meter.meter_address,
        "received_at_ms": NOW * 1000,
    }
    assert handle_reading_event(market.deps, event)["status"] == "accepted"
    assert handle_reading_event(market.deps, event)["status"] == "duplicate"
    for broken in ({}, {**event, "payload": "%%%"}, {**event, "received_at_ms": "soon"}, None):
        with pytest.raises(MalformedEvent):
            handle_reading_event(market.deps, broken)


def test_forged_readings_over_http_leave_no_trace_on_the_meter(
    market: MarketHarness,
) -> None:
    meter = metered_provider(market)
    market.client.call("energy.submitReading", meter.reading(1_000, T0))
    forger = SimulatedMeter(meter.meter_address, meter.provider_id, Signer.generate("f"))
    with pytest.raises(RpcError) as refused:
        market.client.call("energy.submitReading", forger.reading(2_000, T0 + QUARTER))
    assert refused.value.data["rejection"] == "bad_signature"
    # Anyone can post to the API: what the meter did not sign is answered, not
    # kept against it (over MQTT, its own authenticated channel, it is both).
    state = market.client.call("energy.getMeter", {"meter_address": meter.meter_address})
    assert state["rejections"] == {}
    log = market.client.call("energy.getRejections", {"meter_address": meter.meter_address})
    assert log["rejections"] == []


def test_a_replay_is_logged_once_and_a_tampered_replay_is_refused(
    market: MarketHarness,
) -> None:
    meter = metered_provider(market)
    first, second = meter.payload(1_000, T0), meter.payload(2_000, T0 + QUARTER)
    for payload in (first, second, first, first, second):
        ingest(market, payload, meter.meter_address)
    log = market.client.call("energy.getRejections", {"meter_address": meter.meter_address})
    assert sorted(r["reason"] for r in log["rejections"]) == ["duplicate", "duplicate"]
    state = market.client.call("energy.getMeter", {"meter_address": meter.meter_address})
    assert state["rejections"] == {}  # logged, not counted against the meter
    garbled = json.loads(second)
    garbled["signature"] = "00" * 64
    outcome = ingest(market, json.dumps(garbled).encode(), meter.meter_address)
    assert (outcome.status, outcome.reason) == (Status.REJECTED, "bad_signature")


def test_each_outcome_is_a_valid_embedded_metric_line_without_per_meter_dimensions(
    market: MarketHarness, capsys: pytest.CaptureFixture[str]
) -> None:
    observability.configure()  # what importing app.py does in every function
    meter = metered_provider(market)
    capsys.readouterr()
    ingest(market, meter.payload(1_000, T0), meter.meter_address)
    ingest(market, meter.payload(1_000, T0), meter.meter_address)
    ingest(market, b"{oops", meter.meter_address)
    lines = capsys.readouterr().out.splitlines()
    assert [emf_violations(line) for line in lines] == [[], [], []]
    documents = [json.loads(line) for line in lines]
    directives = [d["_aws"]["CloudWatchMetrics"][0] for d in documents]
    assert [d["Metrics"][0]["Name"] for d in directives] == [
        "ReadingsAccepted",
        "ReadingsDuplicate",
        "ReadingsRejected",
    ]
    assert {d["Namespace"] for d in directives} == {"EnergyMarketplace"}
    # Totals without dimensions (what a rate alarm divides); refusals also by reason.
    assert [d["Dimensions"] for d in directives] == [[[]], [[], ["reason"]], [[], ["reason"]]]
    assert documents[2]["reason"] == "malformed" and documents[2]["ReadingsRejected"] == 1
    assert documents[0]["meter_address"] == meter.meter_address  # a property only


def test_a_reading_naming_another_existing_provider_or_an_unknown_meter_is_refused(
    market: MarketHarness,
) -> None:
    """Ingest reads the provider a reading names first (its item holds the meter's
    key and last reading); when that provider's meter is not the reading's, the
    meter is read as well, and the refusal is the one the meter's item decides."""
    alice = metered_provider(market, "alice.theblock")
    bob = metered_provider(market, "bob.theblock")
    for meter in (alice, bob):
        assert ingest(market, meter.payload(1_000, T0)).status == Status.ACCEPTED
    before = minted_state(market, alice)
    # Alice's meter, signed by its key, naming Bob's provider.
    crossed = SimulatedMeter(alice.meter_address, bob.provider_id, alice.key)
    outcome = ingest(market, crossed.payload(2_000, T0 + QUARTER), alice.meter_address)
    assert (outcome.status, outcome.reason) == (Status.REJECTED, "provider_mismatch")
    # No meter at this address, naming Bob's provider.
    ghost = SimulatedMeter("ghost_meter", bob.provider_id, Signer.generate("g"))
    outcome = ingest(market, ghost.payload(2_000, T0 + QUARTER), "ghost_meter")
    assert (outcome.status, outcome.reason) == (Status.REJECTED, "unknown_meter")
    assert minted_state(market, alice) == before
    assert ingest(market, alice.payload(2_000, T0 + QUARTER)).status == Status.ACCEPTED
