"""The local broker on its own: its files, and the identity rules it shares with IoT Core.

`make run` passes relative paths (`.local`); the broker must still find its files.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from awscrt import io, mqtt, mqtt5

from chalicelib.domain.readings import topic_for
from infra.local_stack import free_port
from iot.broker import Broker, readings_topic_filter
from iot.ca import CertificateAuthority

pytestmark = pytest.mark.e2e


def test_the_broker_starts_from_a_relative_state_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    ca = CertificateAuthority.load_or_create(Path(".local/ca"))
    broker = Broker(Path(".local/broker"), ca, port=free_port())
    with broker:  # raises BrokerError if mosquitto cannot open its files
        assert broker.directory.is_absolute()


# -- a client's MQTT identity is its certificate -------------------------------------------


class _Client:
    """An awscrt MQTT 5 client with a certificate of the local CA, counting disconnects."""

    def __init__(self, port: int, tls: io.TlsContextOptions, client_id: str) -> None:
        self.connected: Future[bool] = Future()
        self.disconnects = 0
        self.received: list[str] = []

        def succeeded(event: Any) -> None:
            if not self.connected.done():
                self.connected.set_result(True)

        def failed(event: Any) -> None:
            if not self.connected.done():
                self.connected.set_result(False)

        def disconnected(event: Any) -> None:
            self.disconnects += 1

        def received(event: Any) -> None:
            self.received.append(event.publish_packet.topic)

        self.client = mqtt5.Client(
            mqtt5.ClientOptions(
                host_name="127.0.0.1",
                port=port,
                tls_ctx=io.ClientTlsContext(tls),
                connect_options=mqtt5.ConnectPacket(client_id=client_id),
                min_reconnect_delay_ms=5_000,
                on_lifecycle_event_connection_success_fn=succeeded,
                on_lifecycle_event_connection_failure_fn=failed,
                on_lifecycle_event_disconnection_fn=disconnected,
                on_publish_callback_fn=received,
            )
        )
        self.client.start()
        assert self.connected.result(10)

    def publish(self, topic: str) -> mqtt5.PubackReasonCode:
        packet = mqtt5.PublishPacket(topic=topic, payload=b"{}", qos=mqtt5.QoS.AT_LEAST_ONCE)
        code: mqtt5.PubackReasonCode = self.client.publish(packet).result(10).puback.reason_code
        return code

    def stop(self) -> None:
        self.client.stop()


# Taken: delivered, or (no bridge listening here) taken with nobody subscribed.
ACCEPTED = (mqtt5.PubackReasonCode.SUCCESS, mqtt5.PubackReasonCode.NO_MATCHING_SUBSCRIBERS)


def _tls(ca: CertificateAuthority, directory: Path, common_name: str) -> io.TlsContextOptions:
    certificate, key = directory / f"{common_name}.pem", directory / f"{common_name}.key"
    ca.issue_client(common_name).write(certificate, key)
    tls = io.TlsContextOptions.create_client_with_mtls_from_path(str(certificate), str(key))
    tls.override_default_trust_store_from_path(None, str(ca.certificate_path))
    return tls


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[tuple[Broker, CertificateAuthority]]:
    ca = CertificateAuthority.load_or_create(tmp_path / "ca")
    with Broker(tmp_path / "broker", ca, port=free_port()) as running:
        yield running, ca


def test_another_meters_client_id_does_not_take_over_its_session(
    broker: tuple[Broker, CertificateAuthority], tmp_path: Path
) -> None:
    running, ca = broker
    victim = _Client(running.port, _tls(ca, tmp_path, "meter_a"), "meter_a")
    # Mallory holds meter_b's certificate and connects with meter_a's client id.
    mallory = _Client(running.port, _tls(ca, tmp_path, "meter_b"), "meter_a")
    try:
        time.sleep(1.0)  # a takeover would have disconnected the victim by now
        assert (victim.disconnects, mallory.disconnects) == (0, 0)
        assert victim.publish(topic_for("meter_a")) in ACCEPTED
        # Mallory is meter_b, whatever id it asked for: its own topic only.
        assert mallory.publish(topic_for("meter_a")) == mqtt5.PubackReasonCode.NOT_AUTHORIZED
        assert mallory.publish(topic_for("meter_b")) in ACCEPTED
    finally:
        mallory.stop()
        victim.stop()
    log = running.log_path.read_text(encoding="utf-8")
    assert "as meter_b (p5" in log  # the broker knew it by its certificate


def test_a_meter_is_refused_a_subscription_in_the_suback_and_receives_nothing(
    broker: tuple[Broker, CertificateAuthority], tmp_path: Path
) -> None:
    running, ca = broker
    snoop = _Client(running.port, _tls(ca, tmp_path, "meter_a"), "meter_a")
    publisher = _Client(running.port, _tls(ca, tmp_path, "meter_b"), "meter_b")
    try:
        subscribe = mqtt5.SubscribePacket(
            [
                mqtt5.Subscription(readings_topic_filter(), mqtt5.QoS.AT_LEAST_ONCE),
                mqtt5.Subscription(topic_for("meter_a"), mqtt5.QoS.AT_LEAST_ONCE),
                mqtt5.Subscription("#", mqtt5.QoS.AT_MOST_ONCE),
            ]
        )
        # Every one refused in the SUBACK, its own topic too, as IoT Core refuses
        # them (the meter policy allows no iot:Subscribe): the broker's access plugin.
        suback = snoop.client.subscribe(subscribe).result(10)
        assert suback.reason_codes == [mqtt5.SubackReasonCode.NOT_AUTHORIZED] * 3
        assert publisher.publish(topic_for("meter_b")) in ACCEPTED
        time.sleep(0.5)
        assert snoop.received == []
    finally:
        publisher.stop()
        snoop.stop()


def test_an_mqtt_311_meter_is_refused_a_subscription_in_the_suback(
    broker: tuple[Broker, CertificateAuthority], tmp_path: Path
) -> None:
    """MQTT 3.1.1 has no reason codes: a refusal is the SUBACK's failure code 0x80,
    which the AWS IoT SDK's 3.1.1 client raises as SubscribeError."""
    running, ca = broker
    client = mqtt.Client(None, io.ClientTlsContext(_tls(ca, tmp_path, "meter_a")))
    connection = mqtt.Connection(
        client=client, host_name="127.0.0.1", port=running.port, client_id="meter_a"
    )
    connection.connect().result(10)
    try:
        subscribed, _ = connection.subscribe(readings_topic_filter(), mqtt.QoS.AT_LEAST_ONCE)
        with pytest.raises(mqtt.SubscribeError):
            subscribed.result(10)
    finally:
        connection.disconnect().result(10)
