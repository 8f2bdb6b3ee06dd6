"""The meter client's counter, clock and state file, and the rules bridge's event and retries.

No broker here: iot/meter.py and iot/rules_bridge.py without their MQTT
connection (tests/e2e/test_mqtt_readings.py runs them over mosquitto).
"""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from chalicelib.domain import readings, signing
from chalicelib.domain.providers import provider_id_for
from chalicelib.domain.readings import signed_payload
from infra.emulation import OFFLINE_ACCOUNT_ID, create_queues, ingest_topic_rule
from iot.ca import CertificateAuthority
from iot.meter import (
    ConstantPower,
    MeterClient,
    MeterClock,
    MeterError,
    MeterState,
    encode_payload,
)
from iot.provision import MeterCredentials, provision_meter
from iot.rules_bridge import (
    DEFAULT_ATTEMPTS,
    RulesBridge,
    SqsDeadLetters,
    build_event,
    topic_level,
)

HOUR_MS = 3_600_000
NOW_MS = 1_767_225_600_000


class ManualClock:
    def __init__(self, now_ms: int) -> None:
        self.now = now_ms

    def now_ms(self) -> int:
        return self.now

    def seconds_until(self, simulated_ms: int) -> float:
        return 0.0


class RealClock:
    """Stands in for the wall clock under MeterClock."""

    def __init__(self, now_ms: int) -> None:
        self.now = now_ms

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def credentials(aws_credentials: None, tmp_path: Path) -> MeterCredentials:
    with mock_aws():
        return provision_meter(
            boto3.client("iot", region_name="us-east-1"),
            meter_address="solar_meter_404",
            provider_id=provider_id_for("alice.theblock", "solar_meter_404"),
            out_dir=tmp_path / "meter",
            stack_name="stack-meter",
            region="us-east-1",
            account_id=OFFLINE_ACCOUNT_ID,
            ca=CertificateAuthority.load_or_create(tmp_path / "ca"),
        )


# -- the published reading -------------------------------------------------------------------


def test_a_published_reading_is_the_protocols_payload_signed_by_the_meter(
    credentials: MeterCredentials,
) -> None:
    key = credentials.signing_key()
    payload = signed_payload(
        key, credentials.provider_id, credentials.meter_address, 123_456, NOW_MS + 250
    )
    wire = encode_payload(payload)

    parsed = readings.parse_payload(json.loads(wire, parse_float=Decimal))
    assert (parsed.counter_wh, parsed.timestamp_ms) == (123_456, NOW_MS + 250)
    assert b'"kwh_reading":123.456' in wire
    assert b'"timestamp":1767225600.250' in wire
    assert signing.verify(credentials.public_key, parsed.message, parsed.signature)
    assert len(wire) <= readings.MAX_PAYLOAD_BYTES


# -- the counter -------------------------------------------------------------------------------


def test_the_counter_integrates_power_and_carries_what_is_below_one_wh(
    credentials: MeterCredentials,
) -> None:
    clock = ManualClock(NOW_MS)
    meter = MeterClient(credentials, ConstantPower(1000), clock=clock)

    assert meter.take_reading() is not None  # baseline, counter 0
    counters = []
    for _ in range(10):
        clock.now += 1_800  # 1000 W for 1.8 s = 0.5 Wh
        payload = meter.take_reading()
        if payload is not None:
            counters.append(readings.parse_payload(payload).counter_wh)

    # Half a Wh at a time: every second reading has a new whole Wh to report.
    assert counters == [1, 2, 3, 4, 5]
    assert meter.state.remainder_watt_ms == 0
    assert meter.stats.produced == 6


def test_no_reading_is_taken_while_the_counter_stands_still(
    credentials: MeterCredentials,
) -> None:
    clock = ManualClock(NOW_MS)
    meter = MeterClient(credentials, ConstantPower(0), clock=clock)

    assert meter.take_reading() is not None
    clock.now += HOUR_MS
    assert meter.take_reading() is None  # the marketplace wants a rising counter
    assert len(meter.pending) == 1


def test_readings_are_on_disk_before_they_are_sent_and_survive_a_restart(
    credentials: MeterCredentials,
) -> None:
    clock = ManualClock(NOW_MS)
    first = MeterClient(credentials, ConstantPower(3600), clock=clock)
    first.take_reading()
    clock.now += 1_000  # 1 Wh
    first.take_reading()
    clock.now += 500  # half a Wh, not yet reported

    on_disk = MeterState.load(credentials.state_path)
    restarted = MeterClient(credentials, ConstantPower(3600), clock=clock)

    assert on_disk == restarted.state
    assert list(restarted.pending) == list(first.pending)  # oldest first
    assert on_disk.counter_wh == 1
    clock.now += 500
    payload = restarted.take_reading()
    assert payload is not None and readings.parse_payload(payload).counter_wh == 2
    assert not list(credentials.directory.glob(".*.tmp-*"))  # atomic writes leave no debris


def test_after_reprovisioning_the_counter_goes_on_and_old_key_readings_are_dropped(
    aws_credentials: None, tmp_path: Path
) -> None:
    with mock_aws():
        iot = boto3.client("iot", region_name="us-east-1")
        ca = CertificateAuthority.load_or_create(tmp_path / "ca")
        arguments: dict[str, Any] = {
            "meter_address": "solar_meter_505",
            "provider_id": provider_id_for("alice.theblock", "solar_meter_505"),
            "out_dir": tmp_path / "meter",
            "stack_name": "stack-rotation",
            "region": "us-east-1",
            "account_id": OFFLINE_ACCOUNT_ID,
            "ca": ca,
        }
        clock = ManualClock(NOW_MS)
        before = MeterClient(provision_meter(iot, **arguments), ConstantPower(3600), clock=clock)
        before.take_reading()
        clock.now += 10_000  # 10 Wh, never sent
        before.take_reading()

        rotated = provision_meter(iot, **arguments, force=True)
        after = MeterClient(rotated, ConstantPower(3600), clock=clock)

    assert after.pending == {}  # signed with the old key: they would only be refused
    assert after.state.counter_wh == 10  # the register did not start again
    clock.now += 1_000
    payload = after.take_reading()
    assert payload is not None
    reading = readings.parse_payload(payload)
    assert reading.counter_wh == 11
    assert signing.verify(rotated.public_key, reading.message, reading.signature)


def test_a_damaged_state_file_is_refused_not_reset(credentials: MeterCredentials) -> None:
    credentials.state_path.write_text('{"version": 1, "counter_wh": ')

    with pytest.raises(MeterError, match="not a meter state file"):
        MeterState.load(credentials.state_path)


# -- the clock -----------------------------------------------------------------------------------


def test_an_accelerated_clock_replays_the_backlog_and_never_runs_ahead() -> None:
    real = RealClock(NOW_MS)
    clock = MeterClock(speedup=60, backfill_ms=HOUR_MS, real_ms=real)

    assert clock.now_ms() == NOW_MS - HOUR_MS
    real.now += 30_000  # 30 s real = 30 min meter time
    assert clock.now_ms() == NOW_MS - 30 * 60_000
    assert clock.seconds_until(clock.now_ms() + 60_000) == pytest.approx(1.0)
    real.now += 60_000  # caught up: from here on, real time
    assert clock.now_ms() == real.now
    assert clock.seconds_until(real.now + 5_000) == pytest.approx(5.0)


def test_a_restarted_clock_resumes_where_the_meter_stopped_measuring() -> None:
    real = RealClock(NOW_MS)
    clock = MeterClock(
        speedup=100, backfill_ms=HOUR_MS, not_before_ms=NOW_MS - 600_000, real_ms=real
    )

    assert clock.now_ms() == NOW_MS - 600_000


def test_the_clock_starts_when_first_read_not_when_made() -> None:
    real = RealClock(NOW_MS)
    clock = MeterClock(speedup=1000, backfill_ms=HOUR_MS, real_ms=real)
    real.now += 2_000  # connecting took two seconds

    assert clock.now_ms() == NOW_MS + 2_000 - HOUR_MS


# -- the rules bridge ---------------------------------------------------------------------------


class RecordingDeadLetters:
    def __init__(self) -> None:
        self.bodies: list[str] = []

    def send(self, body: str) -> None:
        self.bodies.append(body)


class BrokenDeadLetters:
    def send(self, body: str) -> None:
        raise ConnectionError("the queue is unreachable")


class ScriptedHandler:
    """Answers with the given results in turn; an exception in the script is raised."""

    def __init__(self, *script: Any) -> None:
        self.script = list(script)
        self.events: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        self.events.append(event)
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(step, BaseException):
            raise step
        return step


def bridge(handler: ScriptedHandler, dead_letters: Any = None) -> RulesBridge:
    return RulesBridge(
        handler,
        dead_letters or RecordingDeadLetters(),
        topic_filter=readings.topic_for("+"),
        retry_delay=0,
        clock_ms=lambda: NOW_MS,
    )


def test_the_event_is_what_the_topic_rule_builds() -> None:
    payload = b"\xff\x00 not even utf-8"
    event = build_event(readings.topic_for("wind_meter_007"), payload, NOW_MS)

    assert event == {
        "payload": base64.b64encode(payload).decode(),
        "topic_meter_address": "wind_meter_007",
        "client_id": "wind_meter_007",
        "received_at_ms": NOW_MS,
    }
    # The rule's own SQL names exactly these fields.
    for field in event:
        assert f" AS {field}" in ingest_topic_rule().sql


def test_topic_level_counts_from_one_like_iot_sql() -> None:
    assert [topic_level("a/b/c", n) for n in (0, 1, 2, 3, 4)] == ["", "a", "b", "c", ""]


def test_the_handlers_outcomes_are_counted() -> None:
    handler = ScriptedHandler(
        {"status": "accepted"}, {"status": "duplicate"}, {"status": "rejected", "reason": "x"}
    )
    subject = bridge(handler)
    topic = readings.topic_for("solar_meter_001")

    outcomes = [subject.process(topic, b"{}", NOW_MS) for _ in range(3)]

    assert outcomes == ["accepted", "duplicate", "rejected"]
    status = subject.status()
    assert (status["processed"], status["accepted"], status["duplicate"], status["rejected"]) == (
        3,
        1,
        1,
        1,
    )
    assert status["dead_lettered"] == 0


def test_a_handler_that_fails_once_is_retried_and_not_dead_lettered() -> None:
    handler = ScriptedHandler(TimeoutError("throttled"), {"status": "accepted"})
    dead_letters = RecordingDeadLetters()
    subject = bridge(handler, dead_letters)

    assert subject.process(readings.topic_for("solar_meter_001"), b"{}", NOW_MS) == "accepted"
    assert len(handler.events) == 2
    assert handler.events[0] == handler.events[1]
    assert subject.status()["retries"] == 1
    assert dead_letters.bodies == []


def test_a_handler_that_keeps_failing_sends_the_event_and_error_to_the_dead_letters() -> None:
    handler = ScriptedHandler(RuntimeError("table unavailable"))
    dead_letters = RecordingDeadLetters()
    subject = bridge(handler, dead_letters)
    topic = readings.topic_for("solar_meter_001")

    assert subject.process(topic, b'{"kwh_reading": 1}', NOW_MS) == "dead_lettered"

    assert len(handler.events) == DEFAULT_ATTEMPTS
    [letter] = [json.loads(body) for body in dead_letters.bodies]
    assert letter["requestPayload"] == build_event(topic, b'{"kwh_reading": 1}', NOW_MS)
    assert letter["responsePayload"] == {
        "errorType": "RuntimeError",
        "errorMessage": "table unavailable",
    }
    assert letter["requestContext"]["approximateInvokeCount"] == DEFAULT_ATTEMPTS
    status = subject.status()
    assert (status["dead_lettered"], status["processed"]) == (1, 0)


def test_a_message_neither_handled_nor_dead_lettered_is_reported_not_dropped() -> None:
    subject = bridge(ScriptedHandler(RuntimeError("down")), BrokenDeadLetters())

    with pytest.raises(ConnectionError):
        subject.process(readings.topic_for("solar_meter_001"), b"{}", NOW_MS)
    assert subject.status()["dead_lettered"] == 0


def test_dead_letters_go_to_the_templates_queue(aws_credentials: None) -> None:
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        queue_url = create_queues(sqs, "stack-dlq")["IngestDeadLetterQueue"]
        dead_letters = SqsDeadLetters.for_stack(sqs, "stack-dlq")
        dead_letters.send('{"hello": "queue"}')

        messages = sqs.receive_message(QueueUrl=queue_url)["Messages"]
    assert dead_letters.queue_url == queue_url
    assert [m["Body"] for m in messages] == ['{"hello": "queue"}']
