"""The rules bridge: the offline stand-in for the ingest IoT topic rule.

In AWS, the topic rule in infra/template.yaml selects every meter's readings
and invokes the ingest Lambda with

    SELECT encode(*, 'base64') AS payload, topic(3) AS topic_meter_address,
           clientid() AS client_id, timestamp() AS received_at_ms
    FROM 'energy/meters/+/readings'

Offline, this bridge subscribes (mTLS, its own certificate, QoS 1, a
persistent session) to the same topic filter, read from the same template,
builds the same event for each message and calls the same handler,
``app.ingest_reading(event, None)``, in-process.

- ``payload``: base64 of the raw MQTT payload bytes, whatever they are, so
  malformed and oversized payloads reach the handler and are rejected there.
- ``topic_meter_address``: topic level 3, as ``topic(3)``.
- ``client_id``: also topic level 3. A broker does not tell subscribers who
  published; but the local broker maps each client's certificate CN to its
  username and lets a client publish only to ``energy/meters/<username>/readings``
  (iot/broker.py), so topic level 3 *is* the authenticated publisher. In AWS the
  meter policy pins the client id to the thing name and the topic to the same
  name, so ``clientid()`` and ``topic(3)`` are equal there too.
- ``received_at_ms``: when the bridge received the message (mosquitto does not
  expose its own receive time; the difference is the local delivery delay).

Delivery is at least once, as with the rule: the bridge acknowledges a message
(PUBACK) only after the handler returned, or after the message went to the
dead-letter queue. A handler that raises is retried (like Lambda's two retries
of an asynchronous invocation), then the message goes to the SQS dead-letter
queue built from the template, as a Lambda on-failure destination record
(``requestPayload`` is the event, ``responsePayload`` the error). If even that
fails, the message is left unacknowledged, so the broker delivers it again
when the bridge reconnects: nothing is dropped silently.

Messages of one meter are handled in order (one worker per meter address
hash), different meters in parallel.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import hashlib
import importlib
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Final, Protocol

from infra.emulation import dead_letter_queue, ingest_topic_rule
from iot.broker import BRIDGE_IDENTITY, DEFAULT_HOST, DEFAULT_PORT
from iot.ca import write_file
from iot.lifecycle import StartStop, read_status

logger = logging.getLogger("iot.rules_bridge")

Handler = Callable[[dict[str, Any], Any], Any]

DEFAULT_HANDLER: Final = "app:ingest_reading"
DEFAULT_WORKERS: Final = 4
# Lambda retries a failed asynchronous invocation twice.
DEFAULT_ATTEMPTS: Final = 3
# The broker holds the bridge's session (and the readings sent meanwhile) this long.
SESSION_EXPIRY_SECONDS: Final = 7 * 86_400
# Unacknowledged messages the broker may have in flight to the bridge at once.
RECEIVE_MAXIMUM: Final = 256
STATUS_INTERVAL_SECONDS: Final = 0.5
LOG_INTERVAL_SECONDS: Final = 10.0
OUTCOMES: Final = ("accepted", "duplicate", "rejected")


class BridgeError(RuntimeError):
    """The bridge could not connect or subscribe."""


class DeadLetters(Protocol):
    """Where a message goes when the handler keeps failing."""

    def send(self, body: str) -> None: ...


class SqsDeadLetters:
    """The ingest dead-letter queue (SQS; moto offline)."""

    def __init__(self, client: Any, queue_url: str) -> None:
        self._client = client
        self.queue_url = queue_url

    @classmethod
    def for_stack(cls, client: Any, stack_name: str) -> SqsDeadLetters:
        name = dead_letter_queue(stack_name)["QueueName"]
        return cls(client, str(client.get_queue_url(QueueName=name)["QueueUrl"]))

    def send(self, body: str) -> None:
        self._client.send_message(QueueUrl=self.queue_url, MessageBody=body)


def topic_level(topic: str, level: int) -> str:
    """IoT SQL ``topic(n)``: the n-th level (1-based) of the topic, or '' if there is none."""
    levels = topic.split("/")
    return levels[level - 1] if 0 < level <= len(levels) else ""


def build_event(topic: str, payload: bytes, received_at_ms: int) -> dict[str, Any]:
    """The event the ingest topic rule's SQL builds for one message (see the module doc)."""
    meter_address = topic_level(topic, 3)
    return {
        "payload": base64.b64encode(payload).decode("ascii"),
        "topic_meter_address": meter_address,
        "client_id": meter_address,  # the authenticated publisher: see the module doc
        "received_at_ms": received_at_ms,
    }


def failure_record(
    event: dict[str, Any], error: BaseException, attempts: int, function: str
) -> dict[str, Any]:
    """A Lambda asynchronous-invocation on-failure record, as the DLQ gets it in AWS."""
    return {
        "version": "1.0",
        "timestamp": datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds"),
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "functionArn": function,
            "condition": "RetriesExhausted",
            "approximateInvokeCount": attempts,
        },
        "requestPayload": event,
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        },
        "responsePayload": {"errorType": type(error).__name__, "errorMessage": str(error)},
    }


@dataclass
class Counters:
    received: int = 0
    processed: int = 0  # the handler returned (accepted + duplicate + rejected + other)
    accepted: int = 0
    duplicate: int = 0
    rejected: int = 0
    other: int = 0  # the handler returned something without a known status
    retries: int = 0
    dead_lettered: int = 0
    unacknowledged: int = 0  # neither handled nor dead-lettered: left for redelivery


@dataclass(frozen=True)
class _Message:
    topic: str
    payload: bytes
    received_at_ms: int
    acknowledge: Callable[[], None]


class RulesBridge(StartStop):
    """Subscribe to the rule's topic filter and hand each message to the ingest handler."""

    def __init__(
        self,
        handler: Handler,
        dead_letters: DeadLetters,
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        certificate_path: Path | None = None,
        private_key_path: Path | None = None,
        ca_path: Path | None = None,
        client_id: str = BRIDGE_IDENTITY,
        topic_filter: str | None = None,
        function_name: str = DEFAULT_HANDLER,
        workers: int = DEFAULT_WORKERS,
        attempts: int = DEFAULT_ATTEMPTS,
        retry_delay: float = 0.2,
        status_path: Path | None = None,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        if workers < 1 or attempts < 1:
            raise ValueError("workers and attempts are at least 1")
        self.handler = handler
        self.dead_letters = dead_letters
        self.host = host
        self.port = port
        self.certificate_path = certificate_path
        self.private_key_path = private_key_path
        self.ca_path = ca_path
        self.client_id = client_id
        self.topic_filter = topic_filter or ingest_topic_rule().topic_filter
        self.function_name = function_name
        self.attempts = attempts
        self.retry_delay = retry_delay
        self.status_path = status_path
        self._clock_ms = clock_ms
        self.counters = Counters()
        self._lock = threading.Lock()
        self._queues: list[queue.Queue[_Message | None]] = [queue.Queue() for _ in range(workers)]
        self._threads: list[threading.Thread] = []
        self._client: Any = None
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._stopping = threading.Event()
        self._status_thread: threading.Thread | None = None
        self.last_error: str | None = None

    # -- handling one message (no MQTT needed) -----------------------------------------

    def process(self, topic: str, payload: bytes, received_at_ms: int) -> str:
        """Build the event, call the handler (with retries), dead-letter on failure.

        Returns the outcome: the handler's status, or ``dead_lettered``. Raises only
        when the message could be neither handled nor dead-lettered.
        """
        event = build_event(topic, payload, received_at_ms)
        error: BaseException | None = None
        for attempt in range(1, self.attempts + 1):
            try:
                result = self.handler(event, None)
            except Exception as exc:  # noqa: BLE001 - any failure of the handler is dead-lettered
                error = exc
                logger.warning(
                    "handler failed on %s (attempt %d/%d): %s: %s",
                    topic,
                    attempt,
                    self.attempts,
                    type(exc).__name__,
                    exc,
                )
                if attempt < self.attempts:
                    with self._lock:
                        self.counters.retries += 1
                    time.sleep(self.retry_delay * attempt)
                continue
            status = result.get("status") if isinstance(result, dict) else None
            outcome = status if status in OUTCOMES else "other"
            with self._lock:
                self.counters.processed += 1
                setattr(self.counters, outcome, getattr(self.counters, outcome) + 1)
            if outcome == "rejected":
                logger.info(
                    "reading on %s rejected: %s",
                    topic,
                    result.get("reason") or result.get("detail"),
                )
            return str(outcome)
        if error is None:  # attempts >= 1, so the loop either returned or failed
            raise BridgeError("the handler was never called")
        record = failure_record(event, error, self.attempts, self.function_name)
        self.dead_letters.send(json.dumps(record, sort_keys=True))
        with self._lock:
            self.counters.dead_lettered += 1
        logger.error(
            "message on %s dead-lettered after %d attempts: %s: %s",
            topic,
            self.attempts,
            type(error).__name__,
            error,
        )
        return "dead_lettered"

    def status(self) -> dict[str, Any]:
        with self._lock:
            counters = asdict(self.counters)
        return {
            "pid": os.getpid(),
            "connected": self._connected.is_set(),
            "subscribed": self._subscribed.is_set(),
            "topic_filter": self.topic_filter,
            "broker": f"{self.host}:{self.port}",
            "last_error": self.last_error,
            "updated_at_ms": self._clock_ms(),
            **counters,
        }

    def write_status(self) -> None:
        if self.status_path is not None:
            write_file(
                self.status_path,
                (json.dumps(self.status(), sort_keys=True) + "\n").encode(),
                mode=0o644,
            )

    # -- MQTT ----------------------------------------------------------------------------

    def start(self, timeout: float = 15.0) -> None:
        """Start the workers, connect, subscribe; return once the subscription is granted."""
        from awscrt import mqtt5
        from awsiot import mqtt5_client_builder

        if self.certificate_path is None or self.private_key_path is None:
            raise BridgeError("the bridge needs its client certificate and private key")
        for index, work in enumerate(self._queues):
            thread = threading.Thread(
                target=self._work, args=(work,), name=f"bridge-worker-{index}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        self._client = mqtt5_client_builder.mtls_from_path(
            endpoint=self.host,
            port=self.port,
            cert_filepath=str(self.certificate_path),
            pri_key_filepath=str(self.private_key_path),
            ca_filepath=str(self.ca_path) if self.ca_path is not None else None,
            client_id=self.client_id,
            # A persistent session: what meters publish while the bridge is down
            # waits at the broker, as it would for the rules engine.
            session_behavior=mqtt5.ClientSessionBehaviorType.REJOIN_ALWAYS,
            session_expiry_interval_sec=SESSION_EXPIRY_SECONDS,
            receive_maximum=RECEIVE_MAXIMUM,
            min_reconnect_delay_ms=200,
            max_reconnect_delay_ms=10_000,
            on_publish_received=self._on_publish_received,
            on_lifecycle_connection_success=self._on_connected,
            on_lifecycle_connection_failure=self._on_connection_failure,
            on_lifecycle_disconnection=self._on_disconnected,
        )
        self._client.start()
        self._status_thread = threading.Thread(
            target=self._report, name="bridge-status", daemon=True
        )
        self._status_thread.start()
        if not self._subscribed.wait(timeout):
            error = self.last_error or "no answer"
            self.stop()
            raise BridgeError(
                f"the rules bridge could not subscribe at {self.host}:{self.port}: {error}"
            )
        logger.info("subscribed to %s at %s:%s", self.topic_filter, self.host, self.port)

    def _on_connected(self, event: Any) -> None:
        from awscrt import mqtt5

        self._connected.set()
        # Subscribing again on a resumed session is harmless, and needed when the
        # broker lost the session.
        packet = mqtt5.SubscribePacket(
            subscriptions=[mqtt5.Subscription(self.topic_filter, mqtt5.QoS.AT_LEAST_ONCE)]
        )
        self._client.subscribe(packet).add_done_callback(self._on_subscribed)

    def _on_subscribed(self, done: Any) -> None:
        from awscrt import mqtt5
        from awscrt.exceptions import AwsCrtError

        try:
            codes = done.result().reason_codes
        except AwsCrtError as exc:
            self.last_error = f"subscribe failed: {exc}"
            logger.error("%s", self.last_error)
            return
        if codes and codes[0] in (mqtt5.SubackReasonCode.GRANTED_QOS_1,):
            self._subscribed.set()
        else:
            self.last_error = f"subscription to {self.topic_filter} refused: {codes}"
            logger.error("%s", self.last_error)

    def _on_connection_failure(self, event: Any) -> None:
        self.last_error = f"connection failed: {event.exception}"
        logger.warning("%s", self.last_error)

    def _on_disconnected(self, event: Any) -> None:
        self._connected.clear()
        if not self._stopping.is_set():
            logger.warning("disconnected: %s", event.exception)

    def _on_publish_received(self, data: Any) -> None:
        # Runs on the MQTT client's event loop: hand the message over and return.
        packet = data.publish_packet
        received_at_ms = self._clock_ms()
        control = data.acquire_publish_acknowledgement_control
        handle = control() if control is not None else None
        client = self._client

        def acknowledge() -> None:
            if handle is not None and client is not None:
                client.invoke_publish_acknowledgement(handle)

        topic = str(packet.topic)
        payload = bytes(packet.payload or b"")
        with self._lock:
            self.counters.received += 1
        shard = int.from_bytes(hashlib.sha256(topic.encode()).digest()[:4], "big")
        self._queues[shard % len(self._queues)].put(
            _Message(topic, payload, received_at_ms, acknowledge)
        )

    def _work(self, work: queue.Queue[_Message | None]) -> None:
        while True:
            message = work.get()
            if message is None or self._stopping.is_set():
                return
            try:
                self.process(message.topic, message.payload, message.received_at_ms)
            except Exception:  # the dead-letter queue itself failed
                logger.exception(
                    "message on %s neither handled nor dead-lettered; left unacknowledged "
                    "for redelivery",
                    message.topic,
                )
                with self._lock:
                    self.counters.unacknowledged += 1
                continue
            try:
                message.acknowledge()
            except Exception:  # noqa: BLE001 - disconnected: the broker redelivers it
                logger.warning("could not acknowledge a message on %s", message.topic)

    def _report(self) -> None:
        last_logged: dict[str, Any] = {}
        next_log = time.monotonic() + LOG_INTERVAL_SECONDS
        while not self._stopping.wait(STATUS_INTERVAL_SECONDS):
            self.write_status()
            if time.monotonic() >= next_log:
                next_log = time.monotonic() + LOG_INTERVAL_SECONDS
                with self._lock:
                    counters = asdict(self.counters)
                if counters != last_logged:
                    last_logged = counters
                    logger.info("%s", self.summary())

    def summary(self) -> str:
        with self._lock:
            c = self.counters
            return (
                f"received {c.received}, processed {c.processed} (accepted {c.accepted}, "
                f"duplicate {c.duplicate}, rejected {c.rejected}), retries {c.retries}, "
                f"dead-lettered {c.dead_lettered}, unacknowledged {c.unacknowledged}"
            )

    def stop(self) -> None:
        """Stop taking messages, let the workers finish the one in hand, disconnect."""
        self._stopping.set()
        for work in self._queues:
            work.put(None)
        for thread in self._threads:
            thread.join(timeout=30)
        self._threads.clear()
        client, self._client = self._client, None
        if client is not None:
            client.stop()
        self._connected.clear()
        self._subscribed.clear()
        if self._status_thread is not None:
            self._status_thread.join(timeout=5)
            self._status_thread = None
        self.write_status()
        logger.info("stopped: %s", self.summary())


def spawn(
    *,
    host: str,
    port: int,
    tls_dir: Path,
    stack_name: str,
    status_path: Path,
    environment: dict[str, str],
    cwd: Path,
    output: Any = None,
    handler: str = DEFAULT_HANDLER,
) -> subprocess.Popen[bytes]:
    """Start ``python -m iot.rules_bridge`` in its own process group (the local stack does)."""
    status_path.unlink(missing_ok=True)
    command = [
        sys.executable,
        "-m",
        "iot.rules_bridge",
        "--host",
        host,
        "--port",
        str(port),
        "--tls-dir",
        str(tls_dir),
        "--stack-name",
        stack_name,
        "--status-file",
        str(status_path),
        "--handler",
        handler,
    ]
    return subprocess.Popen(
        command,
        cwd=cwd,
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT if output is not None else None,
        process_group=0,
    )


def wait_until_subscribed(
    process: subprocess.Popen[bytes], status_path: Path, timeout: float
) -> None:
    """Return once the bridge process reports its subscription; raise if it dies first."""
    deadline = time.monotonic() + timeout
    while not read_status(status_path).get("subscribed"):
        exit_code = process.poll()
        if exit_code is not None:
            raise BridgeError(f"the rules bridge exited with code {exit_code} while starting")
        if time.monotonic() > deadline:
            raise BridgeError(f"the rules bridge did not subscribe within {timeout:.0f}s")
        time.sleep(0.05)


def load_handler(reference: str) -> Handler:
    """``module:attribute`` -> the callable (``app:ingest_reading``)."""
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"not a module:attribute reference: {reference!r}")
    handler = getattr(importlib.import_module(module_name), attribute)
    if not callable(handler):
        raise ValueError(f"{reference} is not callable")
    result: Handler = handler
    return result


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m iot.rules_bridge",
        description="Offline topic rule: MQTT readings -> the ingest handler, failures -> DLQ.",
    )
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument(
        "--tls-dir",
        type=Path,
        required=True,
        help="directory with the bridge's certificate.pem, private.key and ca.pem",
    )
    parser.add_argument("--stack-name", required=True, help="names the dead-letter queue")
    parser.add_argument("--handler", default=DEFAULT_HANDLER, help="module:function to invoke")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS)
    parser.add_argument("--status-file", type=Path, help="JSON counters, rewritten twice a second")
    parser.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "INFO"))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    import boto3

    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    # boto3 announces where it found credentials and endpoints on every client.
    logging.getLogger("botocore").setLevel(logging.WARNING)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    try:
        handler = load_handler(args.handler)
        dead_letters = SqsDeadLetters.for_stack(boto3.client("sqs"), args.stack_name)
        bridge = RulesBridge(
            handler,
            dead_letters,
            host=args.host,
            port=args.port,
            certificate_path=args.tls_dir / "certificate.pem",
            private_key_path=args.tls_dir / "private.key",
            ca_path=args.tls_dir / "ca.pem",
            function_name=args.handler,
            workers=args.workers,
            status_path=args.status_file,
        )
        bridge.start()
    except _Stop:
        return 0
    except Exception as exc:  # noqa: BLE001 - one readable line for whoever started us
        print(f"error: rules bridge: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(
        f"rules bridge: {bridge.topic_filter} at {args.host}:{args.port} -> {args.handler}; "
        f"dead letters to {dead_letters.queue_url}",
        flush=True,
    )
    try:
        stop.wait()
    except (KeyboardInterrupt, _Stop):
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        bridge.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
