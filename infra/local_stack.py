"""Run the marketplace on this machine: moto, the resources from infra/, MQTT and `chalice local`.

What runs, in start order (and stopped in reverse):

- moto (AWS emulation), with the tables, the meter thing type and policy, and the
  ingest dead-letter queue built from infra/template.yaml;
- mosquitto, the stand-in for IoT Core's broker: TLS with client certificates
  from the local CA, the meter ACL (iot/broker.py);
- the rules bridge, the stand-in for the ingest topic rule: a subprocess with the
  same environment as the API, invoking ``app.ingest_reading`` (iot/rules_bridge.py);
- the job scheduler, the stand-in for the EventBridge schedules: a subprocess
  calling the app's ``@app.schedule`` functions on a timer (infra/scheduler.py);
- the stream poller, the stand-in for Lambda's stream event sources: a
  subprocess handing each table stream's records to the app's
  ``@app.on_dynamodb_record`` functions (infra/stream_poller.py);
- ``chalice local``, the JSON-RPC API;
- the demo fleet (``iot/demo/fleet.py``): accounts, providers of every energy
  type with provisioned meters publishing over MQTT, and buyers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any

import boto3
from nacl.signing import SigningKey

from energy_client import keyfiles
from infra.emulation import (
    INGEST_DEAD_LETTER_QUEUE_ID,
    OFFLINE_ACCOUNT_ID,
    create_iot_resources,
    create_queues,
    create_tables,
)
from infra.moto_server import LocalMotoServer
from iot import rules_bridge
from iot.broker import BRIDGE_IDENTITY, Broker
from iot.ca import CertificateAuthority
from iot.lifecycle import StartStop, read_status

PROJECT_DIR = Path(__file__).resolve().parent.parent
DEFAULT_STACK_NAME = "energy-marketplace-local"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_MOTO_PORT = 5000
DEFAULT_API_PORT = 8000
DEFAULT_MQTT_PORT = 8883
DEFAULT_STATE_DIR = Path(".local")
OPERATOR_KEY_FILE = "operator.key"
# The marketplace's receipt signing key (in AWS: an SSM SecureString).
RECEIPT_KEY_FILE = "receipt-signing.key"
JOBS_DIR = "jobs"
STREAMS_DIR = "streams"
DEFAULT_JOBS_INTERVAL_SECONDS = 30.0


@dataclass(frozen=True)
class DemoOptions:
    """The demo fleet `make run` starts (iot/demo/fleet.py); see its --help."""

    meters: int = 12
    buyers: int = 4
    interval_seconds: float = 30.0
    speedup: int = 60
    buyer_pause_seconds: float = 10.0
    faulty_every_seconds: float = 120.0

    def arguments(self) -> list[str]:
        return [
            "--meters",
            str(self.meters),
            "--buyers",
            str(self.buyers),
            "--interval",
            str(self.interval_seconds),
            "--speedup",
            str(self.speedup),
            "--buyer-pause",
            str(self.buyer_pause_seconds),
            "--faulty-every",
            str(self.faulty_every_seconds),
        ]


# A local market moves faster than a real one: purchases settle 5 minutes after
# their newest credit and unsold credits expire after 2 hours (AWS defaults:
# 24 hours and 30 days), so that the jobs have work while you watch.
LOCAL_SETTINGS = {"DISPUTE_WINDOW_MS": str(5 * 60_000), "CREDIT_LIFETIME_MS": str(2 * 3_600_000)}
REGION = "us-east-1"
# moto accepts any credentials; these make sure nothing real is ever used.
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
DISCOVER_REQUEST = {"jsonrpc": "2.0", "id": 1, "method": "rpc.discover"}
# How a person at the terminal picks another port for each server.
_PORT_HINTS = {
    "moto": "--moto-port or MOTO_PORT",
    "API": "--api-port or API_PORT",
    "MQTT": "--mqtt-port or MQTT_PORT",
}
# Where the local stack keeps the CA, the broker's files and the bridge's, under state_dir.
CA_DIR = "ca"
BROKER_DIR = "broker"
BRIDGE_DIR = "bridge"
BRIDGE_STATUS_FILE = "status.json"


class LocalStackError(RuntimeError):
    """The local stack could not start or stopped unexpectedly."""


class PortInUseError(LocalStackError):
    """A port the local stack needs is already taken."""

    def __init__(self, what: str, host: str, port: int, reason: str | None) -> None:
        hint = _PORT_HINTS.get(what)
        super().__init__(
            f"{what} port {host}:{port} is already in use ({reason or 'bind failed'})"
            + (f"; choose another with {hint}" if hint else "")
        )


def ensure_port_free(host: str, port: int, what: str) -> None:
    """Raise PortInUseError (one readable line) if something listens on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # SO_REUSEADDR ignores sockets in TIME_WAIT, as the servers themselves do.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise PortInUseError(what, host, port, exc.strerror) from exc


def free_port(host: str = DEFAULT_HOST) -> int:
    """Return a port that was free a moment ago (for tests that start servers)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def load_or_create_operator_key(state_dir: Path) -> tuple[SigningKey, Path]:
    """Load the operator's Ed25519 key from state_dir, creating it (mode 0600) on first use."""
    return load_or_create_key(state_dir, OPERATOR_KEY_FILE)


def load_or_create_key(state_dir: Path, file_name: str) -> tuple[SigningKey, Path]:
    """Load an Ed25519 key (hex seed) from state_dir, creating it (mode 0600) on first use."""
    key_path = state_dir / file_name
    try:
        return keyfiles.load_or_create_key(key_path), key_path
    except keyfiles.NotASeed as exc:
        raise LocalStackError(str(exc)) from exc


def _chalice_executable() -> str:
    beside_python = Path(sys.executable).with_name("chalice")
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("chalice")
    if found is None:
        raise LocalStackError("the chalice command is not installed (run `make run`)")
    return found


class LocalStack(StartStop):
    """moto + resources from the template + mosquitto + rules bridge + `chalice local`.

    Use it as a context manager. Pass port 0 for moto and MQTT and free_port() for
    the API to run beside another instance (tests do); ``mqtt=False`` leaves out the
    broker and the bridge.
    """

    def __init__(
        self,
        *,
        host: str = DEFAULT_HOST,
        moto_port: int = DEFAULT_MOTO_PORT,
        api_port: int = DEFAULT_API_PORT,
        # 0: a free port (read it from mqtt_port once started). `make run` passes 8883;
        # tests that predate MQTT start stacks side by side without naming a port.
        mqtt_port: int = 0,
        mqtt: bool = True,
        state_dir: Path = DEFAULT_STATE_DIR,
        project_dir: Path = PROJECT_DIR,
        stack_name: str = DEFAULT_STACK_NAME,
        stage: str = "local",
        autoreload: bool = False,
        chalice_output: IO[Any] | None = None,
        bridge_output: IO[Any] | None = None,
        startup_timeout: float = 60.0,
        jobs: bool = True,
        jobs_interval: float = DEFAULT_JOBS_INTERVAL_SECONDS,
        demo: DemoOptions | None = None,
        settings: dict[str, str] | None = None,
    ) -> None:
        self.host = host
        self.api_port = api_port
        # Absolute: the broker runs in its own directory, the bridge and chalice
        # in theirs, and every path handed to them must mean the same file.
        self.state_dir = state_dir.resolve()
        self.project_dir = project_dir
        self.stack_name = stack_name
        self.stage = stage
        self.autoreload = autoreload
        # None lets chalice write to our stdout/stderr; tests pass a file.
        self.chalice_output = chalice_output
        # The bridge writes where chalice does unless told otherwise.
        self.bridge_output = bridge_output if bridge_output is not None else chalice_output
        self.mqtt = mqtt
        self._requested_mqtt_port = mqtt_port
        self.mqtt_port: int | None = None
        self.startup_timeout = startup_timeout
        self._requested_moto_port = moto_port
        self._moto: LocalMotoServer | None = None
        self._moto_port: int | None = None
        self._chalice: subprocess.Popen[bytes] | None = None
        self._broker: Broker | None = None
        self._bridge: subprocess.Popen[bytes] | None = None
        self.ca: CertificateAuthority | None = None
        self.table_names: dict[str, str] = {}
        self.stream_arns: dict[str, str] = {}
        self.iot_names: dict[str, str] = {}
        self.queue_urls: dict[str, str] = {}
        self.failed_component: str | None = None
        self.operator_key: SigningKey | None = None
        self.operator_key_path = state_dir / OPERATOR_KEY_FILE
        self.receipt_key: SigningKey | None = None
        self.jobs = jobs
        self.jobs_interval = jobs_interval
        self._scheduler: subprocess.Popen[bytes] | None = None
        self._stream_poller: subprocess.Popen[bytes] | None = None
        self.demo = demo
        self._demo: subprocess.Popen[bytes] | None = None
        # Application settings (environment variables) beyond the stack's own.
        self.settings = dict(settings or {})

    @property
    def moto_endpoint(self) -> str:
        if self._moto_port is None:
            raise LocalStackError("the local stack is not running")
        return f"http://{self.host}:{self._moto_port}"

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.api_port}"

    @property
    def rpc_url(self) -> str:
        return f"{self.api_url}/rpc"

    @property
    def environment(self) -> dict[str, str]:
        """The settings the application reads, pointing at this local stack."""
        if self.operator_key is None:
            raise LocalStackError("the local stack is not running")
        return {
            **self.table_names,
            **FAKE_CREDENTIALS,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_ENDPOINT_URL_DYNAMODB": self.moto_endpoint,
            # The bridge's dead-letter queue and provisioning (python -m iot.provision).
            "AWS_ENDPOINT_URL_SQS": self.moto_endpoint,
            "AWS_ENDPOINT_URL_IOT": self.moto_endpoint,
            "AWS_ENDPOINT_URL_STS": self.moto_endpoint,
            "AWS_ENDPOINT_URL_DYNAMODB_STREAMS": self.moto_endpoint,
            # botocore otherwise sends some calls (streams) to account-scoped hosts.
            "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
            "MARKETPLACE_ID": self.stack_name,
            "OPERATOR_PUBLIC_KEY": self.operator_key.verify_key.encode().hex(),
            **(
                {"RECEIPT_SIGNING_KEY": bytes(self.receipt_key).hex()}
                if self.receipt_key is not None
                else {}
            ),
            **self.stream_arns,
            **self.settings,
        }

    @property
    def chalice_pid(self) -> int | None:
        return None if self._chalice is None else self._chalice.pid

    @property
    def scheduler_pid(self) -> int | None:
        return None if self._scheduler is None else self._scheduler.pid

    @property
    def jobs_status_path(self) -> Path:
        return self.state_dir / JOBS_DIR / "status.json"

    def jobs_status(self) -> dict[str, Any]:
        """Runs and last results of the scheduled jobs (infra.scheduler), from its file."""
        return read_status(self.jobs_status_path)

    @property
    def broker_pid(self) -> int | None:
        return None if self._broker is None else self._broker.pid

    @property
    def bridge_pid(self) -> int | None:
        return None if self._bridge is None else self._bridge.pid

    @property
    def ca_dir(self) -> Path:
        return self.state_dir / CA_DIR

    @property
    def bridge_dir(self) -> Path:
        return self.state_dir / BRIDGE_DIR

    @property
    def bridge_status_path(self) -> Path:
        return self.bridge_dir / BRIDGE_STATUS_FILE

    @property
    def broker_log_path(self) -> Path:
        return self.state_dir / BROKER_DIR / "mosquitto.log"

    @property
    def dead_letter_queue_url(self) -> str:
        try:
            return self.queue_urls[INGEST_DEAD_LETTER_QUEUE_ID]
        except KeyError:
            raise LocalStackError("the local stack is not running") from None

    def bridge_status(self) -> dict[str, Any]:
        """The rules bridge's counters (iot.rules_bridge.RulesBridge.status), from its file."""
        return read_status(self.bridge_status_path)

    def aws_client(self, service: str) -> Any:
        """A boto3 client for ``service`` in this stack's moto."""
        return boto3.client(
            service,
            endpoint_url=self.moto_endpoint,
            region_name=REGION,
            aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    def start(self) -> None:
        """Start moto, create the resources, the broker, the bridge and chalice local."""
        try:
            self._start_moto()
            self._create_tables()
            self._create_iot_and_queues()
            self.operator_key, self.operator_key_path = load_or_create_operator_key(self.state_dir)
            self.receipt_key, _ = load_or_create_key(self.state_dir, RECEIPT_KEY_FILE)
            if self.mqtt:
                self._start_broker()
                self._start_bridge()
            if self.jobs:
                self._start_scheduler()
            self._start_stream_poller()
            self._start_chalice()
            self._wait_until_serving()
            if self.demo is not None and self.mqtt:
                self._start_demo(self.demo)
        except BaseException:
            self.stop()
            raise

    def _start_moto(self) -> None:
        if self._requested_moto_port != 0:
            ensure_port_free(self.host, self._requested_moto_port, "moto")
        # Chalice's own output stays; moto's per-request access log would drown it.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        server = LocalMotoServer(
            ip_address=self.host, port=self._requested_moto_port, verbose=False
        )
        server.start()
        if server.bind_error is not None:
            raise PortInUseError(
                "moto", self.host, self._requested_moto_port, server.bind_error.strerror
            ) from server.bind_error
        self._moto = server
        self._moto_port = server.get_host_and_port()[1]

    def _create_tables(self) -> None:
        dynamodb = self.aws_client("dynamodb")
        self.table_names = create_tables(dynamodb, self.stack_name)
        # What the template gives the functions in AWS (GetAtt LedgerTable.StreamArn).
        self.stream_arns = {
            "LEDGER_STREAM_ARN": dynamodb.describe_table(
                TableName=self.table_names["LEDGER_TABLE"]
            )["Table"]["LatestStreamArn"]
        }

    def _create_iot_and_queues(self) -> None:
        self.iot_names = create_iot_resources(
            self.aws_client("iot"), self.stack_name, REGION, OFFLINE_ACCOUNT_ID
        )
        self.queue_urls = create_queues(self.aws_client("sqs"), self.stack_name)

    def _start_broker(self) -> None:
        port = self._requested_mqtt_port
        if port == 0:
            port = free_port(self.host)
        else:
            ensure_port_free(self.host, port, "MQTT")
        self.ca = CertificateAuthority.load_or_create(self.ca_dir)
        broker_dir = self.state_dir / BROKER_DIR
        # moto starts empty every time: readings queued for an old bridge session
        # would meet meters that no longer exist.
        shutil.rmtree(broker_dir / "data", ignore_errors=True)
        self._broker = Broker(broker_dir, self.ca, host=self.host, port=port)
        self._broker.start()
        self.mqtt_port = port

    def _start_bridge(self) -> None:
        if self.ca is None or self.mqtt_port is None:
            raise LocalStackError("the broker is not running")
        bridge_dir = self.bridge_dir
        bridge_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.ca.issue_client(BRIDGE_IDENTITY).write(
            bridge_dir / "certificate.pem", bridge_dir / "private.key"
        )
        (bridge_dir / "ca.pem").write_bytes(self.ca.certificate_pem)
        self._bridge = rules_bridge.spawn(
            host=self.host,
            port=self.mqtt_port,
            tls_dir=bridge_dir,
            stack_name=self.stack_name,
            status_path=self.bridge_status_path,
            environment=self.child_environment(),
            cwd=self.project_dir,
            output=self.bridge_output,
        )
        try:
            rules_bridge.wait_until_subscribed(
                self._bridge, self.bridge_status_path, self.startup_timeout
            )
        except rules_bridge.BridgeError as exc:
            raise LocalStackError(str(exc)) from exc

    @property
    def stream_poller_pid(self) -> int | None:
        return None if self._stream_poller is None else self._stream_poller.pid

    @property
    def streams_status_path(self) -> Path:
        return self.state_dir / STREAMS_DIR / "status.json"

    def streams_status(self) -> dict[str, Any]:
        """Records handled, failures and backlog per stream handler (infra.stream_poller)."""
        return read_status(self.streams_status_path)

    def _start_stream_poller(self) -> None:
        streams_dir = self.state_dir / STREAMS_DIR
        streams_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.streams_status_path.unlink(missing_ok=True)
        self._stream_poller = self._spawn_python(
            "infra.stream_poller", "--status-file", str(self.streams_status_path)
        )

    def _spawn_python(self, module: str, *arguments: str) -> subprocess.Popen[bytes]:
        """A ``python -m`` child with the stack's environment, in its own process group."""
        return subprocess.Popen(
            [sys.executable, "-m", module, *arguments],
            cwd=self.project_dir,
            env=self.child_environment(),
            stdin=subprocess.DEVNULL,
            stdout=self.bridge_output,
            stderr=subprocess.STDOUT if self.bridge_output is not None else None,
            process_group=0,
        )

    def _start_scheduler(self) -> None:
        jobs_dir = self.state_dir / JOBS_DIR
        jobs_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.jobs_status_path.unlink(missing_ok=True)
        self._scheduler = self._spawn_python(
            "infra.scheduler",
            "--interval",
            str(self.jobs_interval),
            "--status-file",
            str(self.jobs_status_path),
        )

    @property
    def demo_pid(self) -> int | None:
        return None if self._demo is None else self._demo.pid

    @property
    def demo_status_path(self) -> Path:
        return self.state_dir / "demo" / "status.json"

    def demo_status(self) -> dict[str, Any]:
        """The demo fleet's counters (iot.demo.fleet), from its file."""
        return read_status(self.demo_status_path)

    def stop_demo(self) -> None:
        """Stop the demo fleet alone (its meters and buyers), leaving the market running."""
        demo, self._demo = self._demo, None
        if demo is not None:
            _stop_process_group(demo)

    def _start_demo(self, demo: DemoOptions) -> None:
        if self.mqtt_port is None:
            raise LocalStackError("the demo needs the MQTT broker")
        self.demo_status_path.unlink(missing_ok=True)  # a previous run's counters
        self._demo = self._spawn_python(
            "iot.demo.fleet",
            "--rpc-url",
            self.rpc_url,
            "--state-dir",
            str(self.state_dir),
            "--stack-name",
            self.stack_name,
            "--mqtt-port",
            str(self.mqtt_port),
            *demo.arguments(),
        )

    def child_environment(self) -> dict[str, str]:
        """The environment of the stack's processes: ours, less AWS settings, plus the stack's."""
        environment = {
            name: value
            for name, value in os.environ.items()
            # A developer's own AWS settings must not leak into the local stack.
            if not name.startswith(("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN"))
        }
        environment.update(self.environment)
        environment["NO_PROXY"] = ",".join(
            filter(None, [environment.get("NO_PROXY", ""), self.host, "localhost"])
        )
        return environment

    def _start_chalice(self) -> None:
        ensure_port_free(self.host, self.api_port, "API")
        environment = self.child_environment()
        command = [
            _chalice_executable(),
            "--project-dir",
            str(self.project_dir),
            "local",
            "--host",
            self.host,
            "--port",
            str(self.api_port),
            "--stage",
            self.stage,
        ]
        if not self.autoreload:
            command.append("--no-autoreload")
        self._chalice = subprocess.Popen(
            command,
            cwd=self.project_dir,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=self.chalice_output,
            stderr=subprocess.STDOUT if self.chalice_output is not None else None,
            # Its own process group: Ctrl-C reaches only us, and stop() can end
            # chalice together with its autoreload worker.
            process_group=0,
        )

    def _wait_until_serving(self) -> None:
        if self._chalice is None:
            raise LocalStackError("chalice local was not started")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        body = json.dumps(DISCOVER_REQUEST).encode()
        deadline = time.monotonic() + self.startup_timeout
        while True:
            exit_code = self._chalice.poll()
            if exit_code is not None:
                raise LocalStackError(f"chalice local exited with code {exit_code} while starting")
            request = urllib.request.Request(  # noqa: S310 - our own http:// URL
                self.rpc_url,
                data=body,
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            try:
                with opener.open(request, timeout=5):
                    return
            except urllib.error.HTTPError:
                return  # any HTTP answer means the server is up
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise LocalStackError(
                    f"chalice local did not answer at {self.rpc_url} "
                    f"within {self.startup_timeout:.0f}s"
                )
            time.sleep(0.1)

    def wait(self) -> int:
        """Block until chalice local, the bridge or the broker exits; return its exit code.

        ``failed_component`` names which one it was.
        """
        if self._chalice is None:
            raise LocalStackError("the local stack is not running")
        while True:
            components: list[tuple[str, subprocess.Popen[bytes] | None]] = [
                ("chalice local", self._chalice),
                ("the rules bridge", self._bridge),
                ("the job scheduler", self._scheduler),
                ("the stream poller", self._stream_poller),
                ("the demo fleet", self._demo),
                ("mosquitto", self._broker.process if self._broker is not None else None),
            ]
            for name, process in components:
                if process is not None and (code := process.poll()) is not None:
                    self.failed_component = name
                    return code
            time.sleep(0.5)

    def stop(self) -> None:
        """Stop the demo, chalice local, the jobs, the bridge, the broker and moto.

        Safe to call twice.
        """
        self.stop_demo()
        process, self._chalice = self._chalice, None
        if process is not None:
            _stop_process_group(process)
        bridge, self._bridge = self._bridge, None
        if bridge is not None:
            _stop_process_group(bridge)
        jobs, self._scheduler = self._scheduler, None
        if jobs is not None:
            _stop_process_group(jobs)
        poller, self._stream_poller = self._stream_poller, None
        if poller is not None:
            _stop_process_group(poller)
        broker, self._broker = self._broker, None
        if broker is not None:
            broker.stop()
        self.mqtt_port = None
        server, self._moto = self._moto, None
        if server is not None:
            # moto's state lives in this process: empty it, so that a stack
            # started again here begins with a new market, as `make run` does.
            with contextlib.suppress(OSError):
                request = urllib.request.Request(  # noqa: S310 - our own http:// URL
                    f"{self.moto_endpoint}/moto-api/reset", data=b"", method="POST"
                )
                urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                    request, timeout=10
                ).close()
            server.stop()
        self._moto_port = None

    def describe(self) -> str:
        """What is running where, for a person at a terminal."""
        payload = json.dumps(DISCOVER_REQUEST, separators=(",", ":"))
        tables = "\n".join(
            f"    {variable}={name}" for variable, name in sorted(self.table_names.items())
        )
        mqtt = ""
        if self.mqtt_port is not None:
            mqtt = (
                f"  MQTT broker:          mqtts://{self.host}:{self.mqtt_port} (mosquitto, "
                f"client certificates from {self.ca_dir}; log {self.broker_log_path})\n"
                f"  rules bridge:         pid {self.bridge_pid}, counters in "
                f"{self.bridge_status_path}\n"
                f"  dead-letter queue:    {self.queue_urls.get(INGEST_DEAD_LETTER_QUEUE_ID)}\n"
                f"  IoT (moto):           thing type {self.iot_names.get('thing_type')}, "
                f"policy {self.iot_names.get('policy')}\n"
                "  a meter:\n"
                f"    AWS_ENDPOINT_URL_IOT={self.moto_endpoint} AWS_ACCESS_KEY_ID=testing "
                "AWS_SECRET_ACCESS_KEY=testing \\\n"
                "      python -m iot.provision --meter-address solar_meter_001 "
                "--owner <account> \\\n"
                f"      --stack-name {self.stack_name} --local-ca {self.ca_dir} "
                f"--port {self.mqtt_port} --out {self.state_dir}/meters/solar_meter_001\n"
                "    python -m iot.meter --credentials "
                f"{self.state_dir}/meters/solar_meter_001 --power-w 3000 --interval 60\n"
            )
        demo = ""
        if self.demo_pid is not None and self.demo is not None:
            demo = (
                f"  demo fleet:           pid {self.demo_pid}, {self.demo.meters} meters and "
                f"{self.demo.buyers} buyers (weather at {self.demo.speedup}x); status in "
                f"{self.demo_status_path}; account keys in {self.state_dir / 'demo' / 'keys'}\n"
            )
        jobs = ""
        if self.scheduler_pid is not None:
            jobs = (
                f"  scheduled jobs:       pid {self.scheduler_pid}, settlement and expiry every "
                f"{self.jobs_interval:g} s; status in {self.jobs_status_path}\n"
            )
        streams = ""
        if self.stream_poller_pid is not None:
            streams = (
                f"  stream poller:        pid {self.stream_poller_pid}, ledger stream -> "
                f"publish_market_events; status in {self.streams_status_path}\n"
            )
        return (
            "Energy Marketplace is running locally.\n"
            f"  moto (AWS emulation): {self.moto_endpoint}\n"
            f"  tables (stack {self.stack_name}):\n{tables}\n"
            f"{mqtt}"
            f"{jobs}"
            f"{streams}"
            f"{demo}"
            f"  JSON-RPC API:         {self.rpc_url}\n"
            f"  operator key:         {self.operator_key_path} "
            f"(public key {self.environment['OPERATOR_PUBLIC_KEY']})\n"
            "  try:\n"
            f"    curl -s -X POST {self.rpc_url} -H 'Content-Type: application/json' \\\n"
            f"      -d '{payload}'\n"
            "Press Ctrl-C to stop."
        )


def _stop_process_group(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM the process group, SIGKILL it after a grace period, and reap the leader."""
    group = process.pid  # process_group=0 made the child its group's leader
    for sig, timeout in ((signal.SIGTERM, grace), (signal.SIGKILL, grace)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, sig)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; make sure nothing it started lives on in the group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
        return


class _Shutdown(Exception):
    """A termination signal arrived."""


def _raise_shutdown(signum: int, frame: FrameType | None) -> None:
    raise _Shutdown(signal.Signals(signum).name)


def _port_from_env(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise SystemExit(f"error: {name}={value!r} is not a port number") from None


def _settings_from_environment() -> dict[str, str]:
    """Application settings a developer exported (MARKET_FEE_BPS=250 make run, ...)."""
    names = {"MARKET_FEE_BPS", "DISPUTE_WINDOW_MS", "CREDIT_LIFETIME_MS", "LOG_LEVEL"}
    return {name: value for name, value in os.environ.items() if name in names}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m infra.local_stack",
        description="Run moto, the marketplace tables and the Chalice API on this machine.",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on")
    parser.add_argument(
        "--moto-port",
        type=int,
        default=_port_from_env("MOTO_PORT", DEFAULT_MOTO_PORT),
        help="moto server port (env MOTO_PORT, default %(default)s)",
    )
    parser.add_argument(
        "--api-port",
        type=int,
        default=_port_from_env("API_PORT", DEFAULT_API_PORT),
        help="chalice local port (env API_PORT, default %(default)s)",
    )
    parser.add_argument(
        "--mqtt-port",
        type=int,
        default=_port_from_env("MQTT_PORT", DEFAULT_MQTT_PORT),
        help="MQTT broker (TLS) port (env MQTT_PORT, default %(default)s)",
    )
    parser.add_argument(
        "--no-mqtt",
        dest="mqtt",
        action="store_false",
        help="run without the MQTT broker and the rules bridge",
    )
    parser.add_argument(
        "--no-jobs",
        dest="jobs",
        action="store_false",
        help="do not run the scheduled jobs (settlement, expiry)",
    )
    parser.add_argument(
        "--no-demo",
        dest="demo",
        action="store_false",
        help="do not start the demo fleet of meters and buyers",
    )
    defaults = DemoOptions()
    parser.add_argument(
        "--demo-meters",
        type=int,
        default=int(os.environ.get("DEMO_METERS") or defaults.meters),
        help="meters in the demo fleet (env DEMO_METERS, default %(default)s)",
    )
    parser.add_argument(
        "--demo-buyers",
        type=int,
        default=int(os.environ.get("DEMO_BUYERS") or defaults.buyers),
        help="buyers in the demo (env DEMO_BUYERS, default %(default)s)",
    )
    parser.add_argument(
        "--demo-interval",
        type=float,
        default=float(os.environ.get("DEMO_INTERVAL_SECONDS") or defaults.interval_seconds),
        help="seconds between a meter's readings (env DEMO_INTERVAL_SECONDS, default %(default)s)",
    )
    parser.add_argument(
        "--demo-speedup",
        type=int,
        default=int(os.environ.get("DEMO_SPEEDUP") or defaults.speedup),
        help="how much faster the demo's weather runs (env DEMO_SPEEDUP, default %(default)s)",
    )
    parser.add_argument(
        "--jobs-interval",
        type=float,
        default=float(os.environ.get("JOBS_INTERVAL_SECONDS") or DEFAULT_JOBS_INTERVAL_SECONDS),
        help="seconds between runs of the scheduled jobs "
        "(env JOBS_INTERVAL_SECONDS, default %(default)s)",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help="operator key, local CA, broker and bridge files (default %(default)s)",
    )
    parser.add_argument(
        "--autoreload",
        action=argparse.BooleanOptionalAction,
        # Off by default: chalice's file watcher polls the whole project, the
        # state directory included, where the broker and the bridge write all
        # the time, so the API would restart every few seconds.
        default=False,
        help="restart the API when the code changes (default off)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    stack = LocalStack(
        host=args.host,
        moto_port=args.moto_port,
        api_port=args.api_port,
        mqtt_port=args.mqtt_port,
        mqtt=args.mqtt,
        state_dir=args.state_dir,
        autoreload=args.autoreload,
        jobs=args.jobs,
        jobs_interval=args.jobs_interval,
        demo=(
            DemoOptions(
                meters=args.demo_meters,
                buyers=args.demo_buyers,
                interval_seconds=args.demo_interval,
                speedup=args.demo_speedup,
            )
            if args.demo and args.mqtt
            else None
        ),
        settings={**LOCAL_SETTINGS, **_settings_from_environment()},
    )
    # Python leaves SIGINT ignored when started in the background by a shell
    # without job control; the stack must still stop on it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_shutdown)
    signal.signal(signal.SIGHUP, _raise_shutdown)
    try:
        mqtt = f", MQTT on {args.host}:{args.mqtt_port}" if args.mqtt else ""
        print(
            f"Starting moto on {args.host}:{args.moto_port}{mqtt} and the API on "
            f"{args.host}:{args.api_port} ...",
            flush=True,
        )
        stack.start()
        print(stack.describe(), flush=True)
        exit_code = stack.wait()
        print(f"error: {stack.failed_component} exited with code {exit_code}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, _Shutdown):
        print("\nStopping the local stack.", flush=True)
        return 0
    except LocalStackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        # A second Ctrl-C must not cut the clean-up short and leave orphans.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
