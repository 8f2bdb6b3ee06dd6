"""Meters over real MQTT: mosquitto with mTLS and the meter ACL, the rules bridge, the API.

`make run`'s stack, started the same way: meters are provisioned into moto with
certificates from the local CA, their providers registered over HTTP, and the
awsiotsdk meter client publishes through the broker; credits and rejections are
read back through the JSON-RPC API.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from awscrt import io, mqtt5
from awscrt.exceptions import AwsCrtError
from awsiot import mqtt5_client_builder
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from chalicelib.domain import readings
from chalicelib.domain.providers import provider_id_for
from chalicelib.domain.readings import signed_payload
from energy_client.rpc_client import MarketplaceClient, Signer
from infra.emulation import OFFLINE_ACCOUNT_ID
from infra.local_stack import REGION, LocalStack, free_port
from iot import rules_bridge
from iot.broker import BRIDGE_IDENTITY, Broker
from iot.device_keys import generate_device_keys
from iot.lifecycle import read_status
from iot.meter import (
    ConstantPower,
    MeterClient,
    MeterState,
    encode_payload,
)
from iot.provision import MeterCredentials, provision_meter
from tests.support import BLOCK, registration_params

pytestmark = pytest.mark.e2e

PROJECT_DIR = Path(__file__).resolve().parents[2]
MINUTE_MS = 60_000
_accounts = itertools.count(1)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    state = tmp_path_factory.mktemp("mqtt-stack")
    with (
        (state / "stack.log").open("wb") as log,
        LocalStack(
            moto_port=0,
            api_port=free_port(),
            mqtt_port=0,
            state_dir=state,
            chalice_output=log,
            stack_name="energy-marketplace-e2e-mqtt",
        ) as running,
    ):
        yield running


@pytest.fixture(scope="module")
def api(stack: LocalStack) -> MarketplaceClient:
    return MarketplaceClient.over_http(stack.rpc_url)


@pytest.fixture(scope="module")
def operator(stack: LocalStack) -> Signer:
    return Signer.from_seed_hex("operator", stack.operator_key_path.read_text().strip())


class ManualClock:
    """A meter clock the test moves by hand (MeterClient's Clock)."""

    def __init__(self, now_ms: int) -> None:
        self.now = now_ms

    def now_ms(self) -> int:
        return self.now

    def seconds_until(self, simulated_ms: int) -> float:
        return 0.0

    def advance(self, ms: int) -> None:
        self.now += ms


@dataclass
class Meter:
    credentials: MeterCredentials
    owner: Signer
    provider_id: str

    @property
    def address(self) -> str:
        return self.credentials.meter_address


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def new_meter(
    stack: LocalStack,
    api: MarketplaceClient,
    operator: Signer,
    directory: Path,
    *,
    port: int | None = None,
    **registration: Any,
) -> Meter:
    """Provision a meter into moto (local CA) and register its provider over HTTP."""
    number = next(_accounts)
    owner = Signer.generate(f"mqtt-owner-{number}.theblock")
    meter_address = f"mqtt_meter_{number:03d}"
    api.create_account(owner)
    api.deposit(operator, owner.account, 20_000 * BLOCK, f"0xmqtt-deposit-{number}")
    provider_id = provider_id_for(owner.account, meter_address)
    assert stack.ca is not None
    credentials = provision_meter(
        stack.aws_client("iot"),
        meter_address=meter_address,
        provider_id=provider_id,
        out_dir=directory / meter_address,
        stack_name=stack.stack_name,
        region=REGION,
        account_id=OFFLINE_ACCOUNT_ID,
        ca=stack.ca,
        port=port if port is not None else stack.mqtt_port,
    )
    params = registration_params(
        owner.account,
        meter_address=meter_address,
        meter_public_key=credentials.public_key,
        **registration,
    )
    provider = api.call("energy.registerProvider", params, owner)
    assert provider["provider_id"] == provider_id
    return Meter(credentials, owner, provider_id)


def wait_for(condition: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what or condition}")
        time.sleep(0.05)


def fresh_status(stack: LocalStack) -> dict[str, Any]:
    """The bridge's counters as written after this call began (it rewrites them twice a second)."""
    asked_at = now_ms()
    status: dict[str, Any] = wait_for(
        lambda: (s := stack.bridge_status()).get("updated_at_ms", 0) > asked_at and s,
        timeout=5,
        what="a fresh bridge status",
    )
    return status


def credits_of(api: MarketplaceClient, provider_id: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = api.call(
        "energy.getCredits", {"provider_id": provider_id, "limit": 100}
    )["credits"]
    return result


def rejection_reasons(api: MarketplaceClient, meter_address: str) -> list[str]:
    page = api.call("energy.getRejections", {"meter_address": meter_address, "limit": 100})
    return sorted(r["reason"] for r in page["rejections"])


# -- a bare MQTT 5 client, for what the meter client would never do ----------------------


class RawClient:
    """An awscrt MQTT 5 client with explicit TLS options; reports CONNACK or failure."""

    def __init__(self, host: str, port: int, tls: io.TlsContextOptions, client_id: str) -> None:
        self.connected: Future[bool] = Future()

        def succeeded(event: Any) -> None:
            if not self.connected.done():
                self.connected.set_result(True)

        self.error: Any = None

        def failed(event: Any) -> None:
            self.error = event.exception
            if not self.connected.done():
                self.connected.set_result(False)

        self.client = mqtt5.Client(
            mqtt5.ClientOptions(
                host_name=host,
                port=port,
                tls_ctx=io.ClientTlsContext(tls),
                connect_options=mqtt5.ConnectPacket(client_id=client_id),
                min_reconnect_delay_ms=5_000,
                on_lifecycle_event_connection_success_fn=succeeded,
                on_lifecycle_event_connection_failure_fn=failed,
            )
        )

    def __enter__(self) -> RawClient:
        self.client.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.stop()

    def publish(self, topic: str, payload: bytes) -> mqtt5.PubackReasonCode:
        result = self.client.publish(
            mqtt5.PublishPacket(topic=topic, payload=payload, qos=mqtt5.QoS.AT_LEAST_ONCE)
        ).result(10)
        code: mqtt5.PubackReasonCode = result.puback.reason_code
        return code


def meter_tls(credentials: MeterCredentials) -> io.TlsContextOptions:
    tls = io.TlsContextOptions.create_client_with_mtls_from_path(
        str(credentials.certificate_path), str(credentials.private_key_path)
    )
    assert credentials.ca_path is not None
    tls.override_default_trust_store_from_path(None, str(credentials.ca_path))
    return tls


def connected_as_meter(credentials: MeterCredentials, port: int | None = None) -> RawClient:
    client = RawClient(
        credentials.endpoint,
        port if port is not None else credentials.port,
        meter_tls(credentials),
        credentials.meter_address,
    )
    client.__enter__()
    assert client.connected.result(10), client.error
    return client


# -- readings become credits --------------------------------------------------------------


def test_readings_published_over_mqtt_mint_credits_with_the_right_wh(
    stack: LocalStack, api: MarketplaceClient, operator: Signer, tmp_path: Path
) -> None:
    meter = new_meter(stack, api, operator, tmp_path, capacity_kwh="5")
    start = now_ms() - 90 * MINUTE_MS
    clock = ManualClock(start)
    client = MeterClient(meter.credentials, ConstantPower(2400), clock=clock)
    client.connect()
    try:
        assert client.take_reading() is not None  # the baseline: mints nothing
        for _ in range(4):
            clock.advance(15 * MINUTE_MS)  # 2400 W for a quarter hour: 600 Wh
            assert client.take_reading() is not None
        client.publish_pending()
        assert client.wait_until_settled(timeout=20), client.stats
    finally:
        client.close()

    credits = wait_for(
        lambda: len(c := credits_of(api, meter.provider_id)) == 4 and c, what="4 credits"
    )
    assert client.stats.acknowledged == 5
    assert [credit["amount_wh"] for credit in credits] == [600, 600, 600, 600]
    intervals = sorted((c["interval_start_ms"], c["interval_end_ms"]) for c in credits)
    quarter = 15 * MINUTE_MS
    assert intervals == [(start + i * quarter, start + (i + 1) * quarter) for i in range(4)]
    assert {c["meter_address"] for c in credits} == {meter.address}
    assert max(c["counter_wh"] for c in credits) == 2400
    assert rejection_reasons(api, meter.address) == []


def test_a_meter_whose_keys_were_born_on_it_connects_and_its_readings_are_accepted(
    stack: LocalStack, api: MarketplaceClient, operator: Signer, tmp_path: Path
) -> None:
    # On the meter: its TLS key, its CSR, its Ed25519 key.
    number = next(_accounts)
    meter_address = f"mqtt_meter_{number:03d}"
    on_meter = tmp_path / "on-the-meter"
    request = generate_device_keys(on_meter, meter_address)
    # The provisioning side sees the request only (public material).
    owner = Signer.generate(f"mqtt-owner-{number}.theblock")
    api.create_account(owner)
    api.deposit(operator, owner.account, 20_000 * BLOCK, f"0xmqtt-deposit-{number}")
    provider_id = provider_id_for(owner.account, meter_address)
    assert stack.ca is not None
    issued_dir = tmp_path / "issued"
    provision_meter(
        stack.aws_client("iot"),
        meter_address=meter_address,
        provider_id=provider_id,
        out_dir=issued_dir,
        stack_name=stack.stack_name,
        region=REGION,
        account_id=OFFLINE_ACCOUNT_ID,
        ca=stack.ca,
        port=stack.mqtt_port,
        device=request,
    )
    assert not any(b"PRIVATE KEY" in p.read_bytes() for p in issued_dir.iterdir())
    params = registration_params(
        owner.account,
        meter_address=meter_address,
        meter_public_key=request.public_key,
        capacity_kwh="5",
    )
    api.call("energy.registerProvider", params, owner)
    # Back on the meter: the issued files beside its own keys.
    for issued in issued_dir.iterdir():
        (on_meter / issued.name).write_bytes(issued.read_bytes())
    credentials = MeterCredentials.load(on_meter)

    clock = ManualClock(now_ms() - 30 * MINUTE_MS)
    client = MeterClient(credentials, ConstantPower(2400), clock=clock)
    client.connect()
    try:
        assert client.take_reading() is not None
        clock.advance(15 * MINUTE_MS)
        assert client.take_reading() is not None
        client.publish_pending()
        assert client.wait_until_settled(timeout=20), client.stats
    finally:
        client.close()
    credits = wait_for(lambda: credits_of(api, provider_id), what="a credit")
    assert [c["amount_wh"] for c in credits] == [600]
    assert rejection_reasons(api, meter_address) == []


def test_a_restarted_meter_continues_its_counter_and_resends_what_was_not_acknowledged(
    stack: LocalStack, api: MarketplaceClient, operator: Signer, tmp_path: Path
) -> None:
    meter = new_meter(stack, api, operator, tmp_path, capacity_kwh="5")
    clock = ManualClock(now_ms() - 60 * MINUTE_MS)
    # Given a meter that took three readings and never got them acknowledged
    offline = MeterClient(meter.credentials, ConstantPower(1200), clock=clock)
    for _ in range(3):
        assert offline.take_reading() is not None
        clock.advance(10 * MINUTE_MS)  # 200 Wh
    assert len(MeterState.load(meter.credentials.state_path).pending) == 3
    del offline  # the process died

    # When it restarts from its credentials directory and takes one more reading
    restarted = MeterClient(meter.credentials, ConstantPower(1200), clock=clock)
    assert len(restarted.pending) == 3
    assert restarted.take_reading() is not None
    restarted.connect()
    try:
        assert restarted.wait_until_settled(timeout=20), restarted.stats
    finally:
        restarted.close()

    # Then all four readings arrived and the counter went on where it stopped
    credits = wait_for(lambda: len(c := credits_of(api, meter.provider_id)) == 3 and c)
    assert sorted(c["amount_wh"] for c in credits) == [200, 200, 200]
    assert max(c["counter_wh"] for c in credits) == 600
    state = MeterState.load(meter.credentials.state_path)
    assert state.pending == {}
    assert state.counter_wh == 600


def test_the_meter_command_publishes_and_resumes_from_its_state_file(
    stack: LocalStack, api: MarketplaceClient, operator: Signer, tmp_path: Path
) -> None:
    meter = new_meter(stack, api, operator, tmp_path, capacity_kwh="5")
    command = [
        sys.executable,
        "-m",
        "iot.meter",
        "--credentials",
        str(meter.credentials.directory),
        "--power-w",
        "1200",
        "--interval",
        "600",
        "--backfill",
        "3600",
        "--speedup",
        "7200",
    ]
    environment = {**os.environ, "NO_PROXY": "127.0.0.1,localhost"}

    def run(count: int) -> str:
        result = subprocess.run(
            [*command, "--count", str(count)],
            cwd=PROJECT_DIR,
            env=environment,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    first = run(3)
    counter_after_first = MeterState.load(meter.credentials.state_path).counter_wh
    second = run(2)
    state = MeterState.load(meter.credentials.state_path)

    assert "3 readings, 3 acknowledged" in first
    assert "2 readings, 2 acknowledged" in second
    assert state.pending == {}
    assert state.counter_wh > counter_after_first > 0
    # Every Wh the counter gained after the first reading was minted, once.
    credits = wait_for(lambda: len(c := credits_of(api, meter.provider_id)) == 4 and c)
    assert sum(c["amount_wh"] for c in credits) == state.counter_wh
    assert max(c["counter_wh"] for c in credits) == state.counter_wh


# -- what the broker refuses ----------------------------------------------------------------


def test_a_meter_cannot_publish_to_another_meters_topic(
    stack: LocalStack, api: MarketplaceClient, operator: Signer, tmp_path: Path
) -> None:
    mallory = new_meter(stack, api, operator, tmp_path)
    victim = new_meter(stack, api, operator, tmp_path)
    forged = signed_payload(
        mallory.credentials.signing_key(), victim.provider_id, victim.address, 1000, now_ms()
    )
    received_before = fresh_status(stack)["received"]

    with connected_as_meter(mallory.credentials) as client:
        refused = client.publish(readings.topic_for(victim.address), encode_payload(forged))
        elsewhere = client.publish(f"energy/meters/{mallory.address}/commands", b"{}")
        own = client.publish(readings.topic_for(mallory.address), b"not a reading")

    assert refused == elsewhere == mqtt5.PubackReasonCode.NOT_AUTHORIZED  # 135
    assert own == mqtt5.PubackReasonCode.SUCCESS
    wait_for(lambda: stack.bridge_status()["received"] >= received_before + 1)
    time.sleep(0.3)  # anything else delivered would have arrived by now
    assert fresh_status(stack)["received"] == received_before + 1
    assert rejection_reasons(api, victim.address) == []
    assert credits_of(api, victim.provider_id) == []


def test_the_meter_client_counts_a_refused_publish_and_does_not_retry_it(
    stack: LocalStack, api: MarketplaceClient, operator: Signer, tmp_path: Path
) -> None:
    mallory = new_meter(stack, api, operator, tmp_path)
    victim = new_meter(stack, api, operator, tmp_path)
    client = MeterClient(
        mallory.credentials, ConstantPower(1000), topic=readings.topic_for(victim.address)
    )
    client.connect()
    try:
        assert client.take_reading() is not None
        client.publish_pending()
        assert client.wait_until_settled(timeout=10)
    finally:
        client.close()
    assert (client.stats.refused, client.stats.acknowledged) == (1, 0)


def test_a_client_without_a_certificate_cannot_connect(stack: LocalStack, tmp_path: Path) -> None:
    assert stack.ca is not None and stack.mqtt_port is not None
    tls = io.TlsContextOptions()
    tls.override_default_trust_store_from_path(None, str(stack.ca.certificate_path))
    with RawClient(stack.host, stack.mqtt_port, tls, "solar_meter_001") as client:
        assert client.connected.result(10) is False
    assert isinstance(client.error, AwsCrtError)


def test_a_certificate_from_another_ca_cannot_connect_even_with_a_meters_name(
    stack: LocalStack, api: MarketplaceClient, operator: Signer, tmp_path: Path
) -> None:
    meter = new_meter(stack, api, operator, tmp_path)
    assert stack.ca is not None
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, meter.address)])
    self_signed = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(stack.ca.certificate.not_valid_before_utc)
        .not_valid_after(stack.ca.certificate.not_valid_after_utc)
        .sign(key, hashes.SHA256())
    )
    certificate_path = tmp_path / "impostor.pem"
    key_path = tmp_path / "impostor.key"
    certificate_path.write_bytes(self_signed.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    failures: list[Any] = []
    connected = threading.Event()
    impostor = mqtt5_client_builder.mtls_from_path(
        endpoint=stack.host,
        port=stack.mqtt_port,
        cert_filepath=str(certificate_path),
        pri_key_filepath=str(key_path),
        ca_filepath=str(meter.credentials.ca_path),
        client_id=meter.address,
        on_lifecycle_connection_success=lambda event: connected.set(),
        on_lifecycle_connection_failure=lambda event: failures.append(event.exception),
    )
    impostor.start()
    try:
        wait_for(lambda: failures or connected.is_set(), timeout=10)
    finally:
        impostor.stop()
    assert not connected.is_set()
    assert failures


# -- what the ingest handler rejects, over the real broker --------------------------------


def test_malformed_and_oversized_payloads_reach_the_handler_and_are_recorded(
    stack: LocalStack, api: MarketplaceClient, operator: Signer, tmp_path: Path
) -> None:
    meter = new_meter(stack, api, operator, tmp_path)
    topic = readings.topic_for(meter.address)
    good = signed_payload(
        meter.credentials.signing_key(), meter.provider_id, meter.address, 1000, now_ms()
    )
    oversized = encode_payload({**good, "padding": "x" * readings.MAX_PAYLOAD_BYTES})
    missing_signature = encode_payload({k: v for k, v in good.items() if k != "signature"})
    rejected_before = fresh_status(stack)["rejected"]

    with connected_as_meter(meter.credentials) as client:
        for payload in (b"{not json", b"[1, 2, 3]", missing_signature, b"\xff\xfe", oversized):
            assert client.publish(topic, payload) == mqtt5.PubackReasonCode.SUCCESS

    wait_for(lambda: stack.bridge_status()["rejected"] >= rejected_before + 5)
    assert rejection_reasons(api, meter.address) == [
        "malformed",
        "malformed",
        "malformed",
        "malformed",
        "oversized",
    ]
    assert credits_of(api, meter.provider_id) == []


def test_bad_readings_over_mqtt_are_rejected_with_their_reason_and_mint_nothing(
    stack: LocalStack, api: MarketplaceClient, operator: Signer, tmp_path: Path
) -> None:
    meter = new_meter(stack, api, operator, tmp_path, capacity_kwh="5")  # 5 kW
    other = new_meter(stack, api, operator, tmp_path)
    key = meter.credentials.signing_key()
    topic = readings.topic_for(meter.address)
    t0 = now_ms() - 30 * MINUTE_MS

    def reading(counter_wh: int, at_ms: int, signer: Any = key) -> bytes:
        return encode_payload(
            signed_payload(signer, meter.provider_id, meter.address, counter_wh, at_ms)
        )

    baseline = reading(10_000, t0)
    good = reading(11_000, t0 + 15 * MINUTE_MS)  # 1 kWh in 15 min: 4 kW of 5
    bad = {
        "bad_signature": reading(11_500, t0 + 20 * MINUTE_MS, other.credentials.signing_key()),
        "counter_not_increasing": reading(10_500, t0 + 20 * MINUTE_MS),
        "timestamp_in_future": reading(11_100, now_ms() + 10 * MINUTE_MS),
        "timestamp_too_old": reading(11_100, now_ms() - 7 * 60 * MINUTE_MS),
        "implausible_increase": reading(20_000, t0 + 20 * MINUTE_MS),  # 9 kWh in 5 min
        "topic_mismatch": encode_payload(
            signed_payload(key, meter.provider_id, other.address, 11_200, t0 + 20 * MINUTE_MS)
        ),
    }
    status_before = fresh_status(stack)

    with connected_as_meter(meter.credentials) as client:
        for payload in (baseline, good, good, *bad.values()):  # `good` twice: a redelivery
            assert client.publish(topic, payload) == mqtt5.PubackReasonCode.SUCCESS

    wait_for(lambda: stack.bridge_status()["processed"] >= status_before["processed"] + 9)
    status = fresh_status(stack)
    assert status["accepted"] - status_before["accepted"] == 2
    assert status["duplicate"] - status_before["duplicate"] == 1
    assert status["rejected"] - status_before["rejected"] == len(bad)
    # The replayed reading is logged once as a duplicate, beside every refusal.
    assert rejection_reasons(api, meter.address) == sorted([*bad, "duplicate"])
    credits = credits_of(api, meter.provider_id)
    assert [c["amount_wh"] for c in credits] == [1000]


# -- what the handler cannot process goes to the dead-letter queue --------------------------


def test_a_message_the_handler_raises_on_goes_to_the_dead_letter_queue(
    stack: LocalStack, api: MarketplaceClient, operator: Signer, tmp_path: Path
) -> None:
    # Given a broker and a bridge whose storage is broken (its registry table is gone)
    assert stack.ca is not None
    broker = Broker(tmp_path / "broker", stack.ca, port=free_port())
    bridge_dir = tmp_path / "bridge"
    stack.ca.issue_client(BRIDGE_IDENTITY).write(
        bridge_dir / "certificate.pem", bridge_dir / "private.key"
    )
    (bridge_dir / "ca.pem").write_bytes(stack.ca.certificate_pem)
    environment = {**stack.child_environment(), "REGISTRY_TABLE": "no-such-table"}
    meter = new_meter(stack, api, operator, tmp_path, port=broker.port)
    payload = encode_payload(
        signed_payload(
            meter.credentials.signing_key(), meter.provider_id, meter.address, 500, now_ms()
        )
    )
    status_path = bridge_dir / "status.json"
    with broker, (tmp_path / "bridge.log").open("wb") as log:
        bridge = rules_bridge.spawn(
            host=broker.host,
            port=broker.port,
            tls_dir=bridge_dir,
            stack_name=stack.stack_name,
            status_path=status_path,
            environment=environment,
            cwd=PROJECT_DIR,
            output=log,
        )
        try:
            rules_bridge.wait_until_subscribed(bridge, status_path, timeout=30)

            # When the meter publishes a reading
            with connected_as_meter(meter.credentials, port=broker.port) as client:
                assert client.publish(meter.credentials.topic, payload) == (
                    mqtt5.PubackReasonCode.SUCCESS
                )
            status = wait_for(
                lambda: (s := read_status(status_path))["dead_lettered"] and s,
                what="a dead letter",
            )
        finally:
            bridge.terminate()
            bridge.wait(timeout=30)

    # Then, after the retries, it is in the dead-letter queue with the event and the error
    assert status["retries"] == rules_bridge.DEFAULT_ATTEMPTS - 1
    assert (status["processed"], status["unacknowledged"]) == (0, 0)
    sqs = stack.aws_client("sqs")
    letters = [
        json.loads(message["Body"])
        for message in sqs.receive_message(
            QueueUrl=stack.dead_letter_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
        ).get("Messages", [])
    ]
    mine = [
        letter
        for letter in letters
        if letter["requestPayload"]["topic_meter_address"] == meter.address
    ]
    assert len(mine) == 1, letters
    letter = mine[0]
    event = letter["requestPayload"]
    assert base64.b64decode(event["payload"]) == payload
    assert event["client_id"] == meter.address
    assert abs(event["received_at_ms"] - now_ms()) < 60_000
    assert letter["requestContext"]["condition"] == "RetriesExhausted"
    assert letter["requestContext"]["approximateInvokeCount"] == rules_bridge.DEFAULT_ATTEMPTS
    assert letter["responsePayload"]["errorType"] == "ResourceNotFoundException"
    # and nothing was minted or recorded by the healthy stack
    assert credits_of(api, meter.provider_id) == []
