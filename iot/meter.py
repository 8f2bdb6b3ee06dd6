"""The meter client: signs cumulative readings and publishes them, QoS 1, over mTLS (awsiotsdk).

A meter keeps one cumulative counter in whole Wh. Every interval it reads
the counter, signs the canonical reading message with its Ed25519 key
(chalicelib.domain.readings, docs/meter-protocol.md) and publishes the
reading to its own topic. What it has produced and not yet had acknowledged
(PUBACK) is written ahead to ``state.json`` in its credentials directory,
atomically, before it is sent; after a restart the meter continues its
counter and sends again whatever was not acknowledged. A reading sent twice
is harmless: the marketplace recognises it by its hash and mints once.

Connection loss is the client's business (awscrt reconnects with backoff);
publishes that were in flight fail and are sent again once it reconnects.

    python -m iot.meter --credentials .local/meters/solar_meter_001 --power-w 3000 --interval 60
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import FrameType
from typing import Any, Final, Protocol

from chalicelib.domain import readings, signing
from energy_client.rpc_client import encode
from iot.ca import write_file
from iot.provision import MeterCredentials, ProvisioningError

logger = logging.getLogger("iot.meter")

STATE_VERSION: Final = 1
WATT_MS_PER_WH: Final = 3_600_000  # 1 Wh = 1 W for 3,600,000 ms


class MeterError(RuntimeError):
    """The meter cannot run (bad state file, no connection)."""


class GenerationSource(Protocol):
    """What the meter measures: energy produced between two instants."""

    def watt_milliseconds(self, start_ms: int, end_ms: int) -> int:
        """Energy produced in [start_ms, end_ms), in W·ms (1 Wh = 3,600,000 W·ms)."""
        ...


@dataclass(frozen=True)
class ConstantPower:
    """A generator that always produces ``watts`` (the realistic profiles come later)."""

    watts: int

    def watt_milliseconds(self, start_ms: int, end_ms: int) -> int:
        return self.watts * max(0, end_ms - start_ms)


class Clock(Protocol):
    """The meter's notion of now (tests use a clock they move by hand)."""

    def now_ms(self) -> int: ...

    def seconds_until(self, simulated_ms: int) -> float: ...


class MeterClock:
    """The meter's clock in Unix ms: real time, or a backlog replayed faster.

    With ``backfill_ms`` and ``speedup`` the clock starts ``backfill_ms`` in the past
    and runs ``speedup`` times faster until it reaches the present, then keeps real
    time. It never runs ahead: the marketplace refuses readings from the future, so
    acceleration can only compress a backlog (at most the marketplace's maximum
    reading age), not invent tomorrow's energy.
    """

    def __init__(
        self,
        *,
        speedup: float = 1.0,
        backfill_ms: int = 0,
        not_before_ms: int | None = None,
        real_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        if speedup < 1:
            raise ValueError("speedup is at least 1")
        self._real_ms = real_ms
        self._speedup = speedup
        self._backfill_ms = backfill_ms
        self._not_before_ms = not_before_ms
        self._anchor: tuple[int, int] | None = None

    def _anchored(self) -> tuple[int, int]:
        # Anchored on first use, not at construction: time spent connecting must
        # not be replayed at `speedup` as if the meter had been measuring.
        if self._anchor is None:
            real_start = self._real_ms()
            start = real_start - self._backfill_ms
            if self._not_before_ms is not None:
                start = max(start, min(self._not_before_ms, real_start))
            self._anchor = (real_start, start)
        return self._anchor

    def now_ms(self) -> int:
        real_start, sim_start = self._anchored()
        real = self._real_ms()
        simulated = sim_start + int((real - real_start) * self._speedup)
        return min(simulated, real)

    def seconds_until(self, simulated_ms: int) -> float:
        """Real seconds until the clock shows ``simulated_ms`` (0 if it already has)."""
        real_start, sim_start = self._anchored()
        # now_ms() is min(fast, real), both rising: it reaches the target once both have.
        fast_reaches = real_start + (simulated_ms - sim_start) / self._speedup
        return max(0.0, (max(fast_reaches, simulated_ms) - self._real_ms()) / 1000)


def encode_payload(payload: dict[str, Any]) -> bytes:
    return encode(payload)


@dataclass
class MeterState:
    """What the meter must not forget across a restart (state.json)."""

    counter_wh: int = 0
    remainder_watt_ms: int = 0  # energy below one Wh, carried into the next reading
    measured_until_ms: int | None = None  # the counter includes energy up to here
    last_published_counter_wh: int | None = None
    # Produced and not yet acknowledged, oldest first: reading hash -> payload.
    pending: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> MeterState:
        if not path.exists():
            return cls()
        try:
            document = json.loads(path.read_text(encoding="utf-8"), parse_float=Decimal)
            if document.get("version") != STATE_VERSION:
                raise ValueError(f"unknown state version {document.get('version')!r}")
            return cls(
                counter_wh=int(document["counter_wh"]),
                remainder_watt_ms=int(document["remainder_watt_ms"]),
                measured_until_ms=document["measured_until_ms"],
                last_published_counter_wh=document["last_published_counter_wh"],
                pending=dict(document["pending"]),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise MeterError(f"{path} is not a meter state file: {exc}") from exc

    def save(self, path: Path) -> None:
        document = {
            "version": STATE_VERSION,
            "counter_wh": self.counter_wh,
            "remainder_watt_ms": self.remainder_watt_ms,
            "measured_until_ms": self.measured_until_ms,
            "last_published_counter_wh": self.last_published_counter_wh,
            "pending": self.pending,
        }
        write_file(path, encode(document) + b"\n", mode=0o600)


@dataclass
class MeterStats:
    produced: int = 0
    acknowledged: int = 0
    refused: int = 0  # PUBACK with a failure reason (e.g. 135, not authorised)
    send_failures: int = 0  # not sent or not acknowledged (disconnect, timeout): sent again


class MeterClient:
    """One meter: its credentials directory, its generation source and its MQTT connection."""

    def __init__(
        self,
        credentials: MeterCredentials,
        source: GenerationSource,
        *,
        clock: Clock | None = None,
        connect_timeout: float = 10.0,
        topic: str | None = None,
    ) -> None:
        self.credentials = credentials
        self.source = source
        self._key = credentials.signing_key()
        self._lock = threading.RLock()
        self.state = MeterState.load(credentials.state_path)
        self._drop_readings_signed_with_another_key()
        self.clock: Clock = clock or MeterClock(not_before_ms=self.state.measured_until_ms)
        self.connect_timeout = connect_timeout
        # Only tests publish elsewhere (to prove the broker refuses it).
        self.topic = topic or readings.topic_for(credentials.meter_address)
        self.stats = MeterStats()
        self._in_flight: set[str] = set()
        self._connected = threading.Event()
        self._changed = threading.Condition(self._lock)
        self._client: Any = None
        self._closing = False
        self.last_connection_error: str | None = None

    def _drop_readings_signed_with_another_key(self) -> None:
        # After re-provisioning (key rotation) the old key's unsent readings would only
        # be refused as bad signatures. Dropping them loses no energy: the counter is
        # cumulative, so the next reading carries it.
        public_key = self.credentials.public_key
        stale = [
            reading_hash
            for reading_hash, payload in self.state.pending.items()
            if not _signed_by(public_key, payload)
        ]
        if stale:
            logger.warning(
                "%s: dropping %d unsent readings signed with a previous key",
                self.credentials.meter_address,
                len(stale),
            )
            for reading_hash in stale:
                del self.state.pending[reading_hash]
            self.state.save(self.credentials.state_path)

    # -- readings ------------------------------------------------------------------------

    def take_reading(self) -> dict[str, Any] | None:
        """Read the counter now; sign and queue a reading if it went up. Returns the payload."""
        with self._lock:
            now = self.clock.now_ms()
            state = self.state
            if state.measured_until_ms is not None and now > state.measured_until_ms:
                energy = state.remainder_watt_ms + self.source.watt_milliseconds(
                    state.measured_until_ms, now
                )
                state.counter_wh += energy // WATT_MS_PER_WH
                state.remainder_watt_ms = energy % WATT_MS_PER_WH
            state.measured_until_ms = max(now, state.measured_until_ms or now)
            if (
                state.last_published_counter_wh is not None
                and state.counter_wh <= state.last_published_counter_wh
            ):
                # The marketplace wants a strictly increasing counter: nothing new, no reading.
                state.save(self.credentials.state_path)
                return None
            payload = readings.signed_payload(
                self._key,
                self.credentials.provider_id,
                self.credentials.meter_address,
                state.counter_wh,
                now,
            )
            reading_hash = readings.parse_payload(payload).reading_hash
            state.pending[reading_hash] = payload
            state.last_published_counter_wh = state.counter_wh
            # Written ahead: a reading is on disk before it is on the wire.
            state.save(self.credentials.state_path)
            self.stats.produced += 1
            return payload

    @property
    def pending(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return dict(self.state.pending)

    # -- connection ------------------------------------------------------------------------

    def connect(self) -> None:
        """Connect over mTLS and wait for the CONNACK (the client reconnects by itself later)."""
        from awscrt import mqtt5
        from awsiot import mqtt5_client_builder

        credentials = self.credentials
        ca_path = credentials.ca_path
        self._client = mqtt5_client_builder.mtls_from_path(
            endpoint=credentials.endpoint,
            port=credentials.port,
            cert_filepath=str(credentials.certificate_path),
            pri_key_filepath=str(credentials.private_key_path),
            ca_filepath=str(ca_path) if ca_path is not None else None,
            client_id=credentials.meter_address,  # the policy allows no other
            session_behavior=mqtt5.ClientSessionBehaviorType.CLEAN,
            # In-flight publishes fail on a disconnect; state.json keeps them and
            # they go out again after the reconnect: one retry path, not two.
            offline_queue_behavior=mqtt5.ClientOperationQueueBehaviorType.FAIL_ALL_ON_DISCONNECT,
            min_reconnect_delay_ms=200,
            max_reconnect_delay_ms=30_000,
            ack_timeout_sec=30,
            on_lifecycle_connection_success=self._on_connected,
            on_lifecycle_connection_failure=self._on_connection_failure,
            on_lifecycle_disconnection=self._on_disconnected,
        )
        self._closing = False
        self._client.start()
        if not self._connected.wait(self.connect_timeout):
            error = self.last_connection_error or "no answer"
            self.close()
            raise MeterError(
                f"{credentials.meter_address} could not connect to "
                f"{credentials.endpoint}:{credentials.port}: {error}"
            )

    def _on_connected(self, event: Any) -> None:
        logger.info("%s connected", self.credentials.meter_address)
        self._connected.set()
        with self._changed:
            self._changed.notify_all()

    def _on_connection_failure(self, event: Any) -> None:
        self.last_connection_error = str(event.exception)
        logger.warning("%s connection failed: %s", self.credentials.meter_address, event.exception)

    def _on_disconnected(self, event: Any) -> None:
        self._connected.clear()
        if not self._closing:
            logger.warning("%s disconnected: %s", self.credentials.meter_address, event.exception)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def close(self) -> None:
        self._closing = True
        client, self._client = self._client, None
        if client is not None:
            client.stop()
        self._connected.clear()

    # -- publishing --------------------------------------------------------------------------

    def publish_pending(self) -> int:
        """Send every pending reading not already in flight; return how many were sent."""
        from awscrt import mqtt5
        from awscrt.exceptions import AwsCrtError

        if self._client is None or not self.connected:
            return 0
        with self._lock:
            due = [(h, p) for h, p in self.state.pending.items() if h not in self._in_flight]
            self._in_flight.update(h for h, _ in due)
        for reading_hash, payload in due:
            packet = mqtt5.PublishPacket(
                topic=self.topic, payload=encode_payload(payload), qos=mqtt5.QoS.AT_LEAST_ONCE
            )
            try:
                future = self._client.publish(packet)
            except AwsCrtError:  # the client refused the operation (stopping): retry later
                logger.exception("%s could not publish", self.credentials.meter_address)
                self._settle(reading_hash, acknowledged=False, refused=False)
                continue
            future.add_done_callback(
                lambda done, reading_hash=reading_hash: self._on_publish_done(reading_hash, done)
            )
        return len(due)

    def publish_once(self, payload: bytes) -> bool:
        """Send one payload outside the meter's register (QoS 1, not kept or resent).

        For a demo of what the marketplace refuses: a reading a faulty meter
        sends besides its real ones. False when not connected.
        """
        from awscrt import mqtt5
        from awscrt.exceptions import AwsCrtError

        if self._client is None or not self.connected:
            return False
        try:
            self._client.publish(
                mqtt5.PublishPacket(topic=self.topic, payload=payload, qos=mqtt5.QoS.AT_LEAST_ONCE)
            )
        except AwsCrtError:
            return False
        return True

    def _on_publish_done(self, reading_hash: str, done: Any) -> None:
        from awscrt import mqtt5
        from awscrt.exceptions import AwsCrtError

        try:
            puback = done.result().puback
        except AwsCrtError as exc:  # disconnect or timeout: the reading stays pending
            logger.warning(
                "%s reading %s not acknowledged: %s",
                self.credentials.meter_address,
                reading_hash[:12],
                exc,
            )
            self._settle(reading_hash, acknowledged=False, refused=False)
            return
        code = puback.reason_code if puback is not None else mqtt5.PubackReasonCode.SUCCESS
        if code == mqtt5.PubackReasonCode.SUCCESS:
            self._settle(reading_hash, acknowledged=True, refused=False)
        elif code == mqtt5.PubackReasonCode.NO_MATCHING_SUBSCRIBERS:
            # Accepted by the broker but heard by nobody (no rules bridge session):
            # not delivered, so it stays pending and goes out again.
            logger.warning(
                "%s reading %s reached no subscriber; will resend",
                self.credentials.meter_address,
                reading_hash[:12],
            )
            self._settle(reading_hash, acknowledged=False, refused=False)
        else:
            # Refused for good (135: not authorised): resending cannot help.
            logger.error(
                "%s reading %s refused by the broker: %s %s",
                self.credentials.meter_address,
                reading_hash[:12],
                code.name if hasattr(code, "name") else code,
                puback.reason_string or "",
            )
            self._settle(reading_hash, acknowledged=False, refused=True)

    def _settle(self, reading_hash: str, *, acknowledged: bool, refused: bool) -> None:
        with self._changed:
            self._in_flight.discard(reading_hash)
            if acknowledged or refused:
                if self.state.pending.pop(reading_hash, None) is not None:
                    self.state.save(self.credentials.state_path)
                if acknowledged:
                    self.stats.acknowledged += 1
                else:
                    self.stats.refused += 1
            else:
                self.stats.send_failures += 1
            self._changed.notify_all()

    def wait_until_settled(self, timeout: float) -> bool:
        """Wait until nothing is pending (every reading acknowledged or refused)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._changed:
                if not self.state.pending:
                    return True
                # Readings that failed (disconnect, no subscriber) go out again.
                idle = not self._in_flight
            if idle:
                self.publish_pending()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with self._changed:
                self._changed.wait(min(remaining, 0.25))

    # -- the loop ------------------------------------------------------------------------------

    def run(self, interval_ms: int, stop: threading.Event, max_readings: int | None = None) -> None:
        """Take a reading every ``interval_ms`` of meter time and publish until ``stop``."""
        next_due = self.clock.now_ms()
        taken = 0
        while not stop.is_set():
            if self.clock.now_ms() >= next_due:
                if self.take_reading() is not None:
                    taken += 1
                next_due += interval_ms
            self.publish_pending()
            if max_readings is not None and taken >= max_readings:
                break
            stop.wait(min(1.0, max(0.001, self.clock.seconds_until(next_due))))


def _signed_by(public_key: str, payload: dict[str, Any]) -> bool:
    try:
        reading = readings.parse_payload(payload)
    except readings.ReadingRejected:
        return False
    return signing.verify(public_key, reading.message, reading.signature)


class _Stop(Exception):
    pass


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m iot.meter",
        description="Run one meter from its credentials directory (see iot/provision.py).",
    )
    parser.add_argument("--credentials", type=Path, required=True, help="credentials directory")
    parser.add_argument(
        "--power-w", type=int, default=3000, help="constant generation in W (default 3000)"
    )
    parser.add_argument(
        "--interval", type=float, default=60.0, help="seconds of meter time between readings"
    )
    parser.add_argument(
        "--speedup",
        type=float,
        default=1.0,
        help="replay the --backfill backlog this many times faster than real time",
    )
    parser.add_argument(
        "--backfill",
        type=float,
        default=0.0,
        help="start this many seconds in the past (at most the marketplace's max age)",
    )
    parser.add_argument("--count", type=int, help="stop after this many readings (and their acks)")
    parser.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "INFO"))
    return parser.parse_args(argv)


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    if args.power_w < 0 or args.interval <= 0:
        print("error: --power-w must be >= 0 and --interval > 0", file=sys.stderr)
        return 2
    try:
        credentials = MeterCredentials.load(args.credentials)
        state = MeterState.load(credentials.state_path)
        clock = MeterClock(
            speedup=args.speedup,
            backfill_ms=int(args.backfill * 1000),
            not_before_ms=state.measured_until_ms,
        )
        meter = MeterClient(credentials, ConstantPower(args.power_w), clock=clock)
        if meter.pending:
            print(f"{len(meter.pending)} readings not yet acknowledged: sending them again")
        meter.connect()
    except (ProvisioningError, MeterError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    signal.signal(signal.SIGTERM, _raise_stop)
    print(
        f"meter {credentials.meter_address} publishing to {credentials.topic} at "
        f"{credentials.endpoint}:{credentials.port}, counter {meter.state.counter_wh} Wh",
        flush=True,
    )
    try:
        meter.run(int(args.interval * 1000), stop, max_readings=args.count)
        if args.count is not None:
            meter.wait_until_settled(timeout=30)
    except (KeyboardInterrupt, _Stop):
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        meter.close()
    stats = meter.stats
    print(
        f"meter {credentials.meter_address}: counter {meter.state.counter_wh} Wh, "
        f"{stats.produced} readings, {stats.acknowledged} acknowledged, "
        f"{stats.refused} refused, {len(meter.pending)} pending",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
