"""The local MQTT broker (mosquitto) that stands in for AWS IoT Core's broker offline.

What AWS IoT enforces with X.509 certificates and the meter policy, mosquitto
enforces here with its TLS listener and an ACL file:

- ``require_certificate true``: no client certificate issued by the local CA,
  no connection (AWS IoT: no registered, active certificate, no connection);
- ``use_identity_as_username true``: the certificate's CN becomes the MQTT
  username, so the identity cannot be claimed, only proven;
- ``use_username_as_clientid true``: the client id becomes that username, so
  a client's MQTT identity is its certificate. The IoT policy allows
  ``iot:Connect`` only with client id = thing name, so IoT Core refuses a
  connect under another meter's client id; here the connect is accepted
  under the connecting certificate's own name instead. Either way the other
  meter's session is never taken over (mosquitto would otherwise disconnect
  the first client with that id);
- ``pattern write energy/meters/%u/readings``: a meter may publish only to
  its own readings topic (the policy's ``${iot:Connection.Thing.ThingName}``);
  anything else gets PUBACK reason 135 (not authorised) on MQTT 5;
- only the rules bridge's identity may read ``energy/meters/+/readings``.

Differences left (docs/meter-protocol.md): a connect under a foreign client id
is renamed rather than refused, and a subscription the ACL does not allow is
granted in the SUBACK (mosquitto 2.0's acl_file checks reads when it
delivers, and can deny a SUBSCRIBE only through an auth plugin) but delivers
nothing, where IoT Core answers it as a failure.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import IO, Any, Final

from chalicelib.domain import readings
from iot.ca import CertificateAuthority, IssuedCertificate
from iot.lifecycle import StartStop

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8883  # MQTT over TLS, as AWS IoT Core
# Not a valid meter address (those may not hold a dot), so no meter can be the bridge.
BRIDGE_IDENTITY: Final = "rules-bridge.iot.local"
# AWS IoT accepts messages up to 128 KiB; so does the local broker (plus room for
# the MQTT header), so an oversized reading reaches the ingest function, as in AWS,
# and is rejected there with its recorded reason.
MAX_PACKET_BYTES: Final = 128 * 1024 + 1024
# Messages kept for a disconnected persistent session (the bridge's), per client.
MAX_QUEUED_MESSAGES: Final = 1_000_000
_BINARY_CANDIDATES: Final = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


class BrokerError(RuntimeError):
    """The broker could not be configured, started or stopped."""


def mosquitto_executable() -> str:
    """Path of the mosquitto binary (Debian installs it in /usr/sbin, off a user's PATH)."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in _BINARY_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    raise BrokerError(
        "mosquitto is not installed (`make setup` installs it: apt-get install mosquitto)"
    )


def meter_write_pattern() -> str:
    """The ACL pattern that lets a client write only to the readings topic of its own identity."""
    return readings.topic_for("%u")


def readings_topic_filter() -> str:
    """Every meter's readings topic: what the topic rule selects and the bridge subscribes to."""
    return readings.topic_for("+")


def acl_text(bridge_identity: str = BRIDGE_IDENTITY) -> str:
    return (
        "# Written by iot/broker.py: the offline form of the meter IoT policy.\n"
        "# A meter (username = its certificate's CN = its meter address) may publish\n"
        "# to its own readings topic only; it may read nothing.\n"
        f"pattern write {meter_write_pattern()}\n"
        "\n"
        "# The rules bridge reads every meter's readings and publishes nothing.\n"
        f"user {bridge_identity}\n"
        f"topic read {readings_topic_filter()}\n"
    )


def config_text(
    *,
    host: str,
    port: int,
    cafile: Path,
    certfile: Path,
    keyfile: Path,
    acl_file: Path,
    persistence_dir: Path,
    log_file: Path,
) -> str:
    # mosquitto started as root drops to the user named here; the CA and keys
    # live in a private directory of ours, so it must stay who started it.
    user = pwd.getpwuid(os.getuid()).pw_name  # not $USER: that may name someone else
    return "\n".join(
        [
            "# Written by iot/broker.py; regenerated on every start.",
            "per_listener_settings false",
            f"user {user}",
            "allow_anonymous false",
            f"acl_file {acl_file}",
            "persistence true",
            f"persistence_location {persistence_dir}/",  # mosquitto wants the slash
            f"max_queued_messages {MAX_QUEUED_MESSAGES}",
            f"max_packet_size {MAX_PACKET_BYTES}",
            f"log_dest file {log_file}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
            "",
            f"listener {port} {host}",
            "protocol mqtt",
            f"cafile {cafile}",
            f"certfile {certfile}",
            f"keyfile {keyfile}",
            "tls_version tlsv1.2",
            "require_certificate true",
            "use_identity_as_username true",
            # Global (per_listener_settings false): the certificate's CN is the client id.
            "use_username_as_clientid true",
            "",
        ]
    )


class Broker(StartStop):
    """mosquitto on ``host:port`` with TLS from the local CA and the meter ACL.

    Its files (config, ACL, server certificate, persistence, log) live in
    ``directory``. Use it as a context manager, or call start() and stop().
    """

    def __init__(
        self,
        directory: Path,
        ca: CertificateAuthority,
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        bridge_identity: str = BRIDGE_IDENTITY,
        startup_timeout: float = 15.0,
        output: IO[Any] | None = None,
    ) -> None:
        # Absolute: mosquitto runs with this directory as its cwd, and its config
        # names files by path.
        self.directory = directory.resolve()
        self.ca = ca
        self.host = host
        self.port = port
        self.bridge_identity = bridge_identity
        self.startup_timeout = startup_timeout
        self.output = output
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def config_path(self) -> Path:
        return self.directory / "mosquitto.conf"

    @property
    def acl_path(self) -> Path:
        return self.directory / "acl"

    @property
    def log_path(self) -> Path:
        return self.directory / "mosquitto.log"

    @property
    def server_certificate_path(self) -> Path:
        return self.directory / "server.pem"

    @property
    def server_key_path(self) -> Path:
        return self.directory / "server.key"

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        return self._process

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def endpoint(self) -> str:
        return f"mqtts://{self.host}:{self.port}"

    def write_config(self) -> Path:
        """Write the server certificate, ACL and mosquitto.conf; return the config path."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        persistence = self.directory / "data"
        persistence.mkdir(mode=0o700, exist_ok=True)
        server: IssuedCertificate = self.ca.issue_server()
        server.write(self.server_certificate_path, self.server_key_path)
        self.acl_path.write_text(acl_text(self.bridge_identity), encoding="utf-8")
        self.config_path.write_text(
            config_text(
                host=self.host,
                port=self.port,
                cafile=self.ca.certificate_path,
                certfile=self.server_certificate_path,
                keyfile=self.server_key_path,
                acl_file=self.acl_path,
                persistence_dir=persistence,
                log_file=self.log_path,
            ),
            encoding="utf-8",
        )
        return self.config_path

    def start(self) -> None:
        """Start mosquitto and return once its TLS listener completes a handshake."""
        if self._process is not None:
            raise BrokerError("the broker is already running")
        executable = mosquitto_executable()
        self.write_config()
        self._process = subprocess.Popen(
            [executable, "-c", str(self.config_path)],
            cwd=self.directory,
            stdin=subprocess.DEVNULL,
            stdout=self.output if self.output is not None else subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            process_group=0,  # Ctrl-C at a terminal reaches our stack, which stops us
        )
        try:
            self._wait_until_accepting()
        except BaseException:
            self.stop()
            raise

    def _wait_until_accepting(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        context = ssl.create_default_context(cafile=str(self.ca.certificate_path))
        while True:
            process = self._process
            if process is None or process.poll() is not None:
                code = None if process is None else process.returncode
                raise BrokerError(
                    f"mosquitto exited with code {code} while starting: {self._log_tail()}"
                )
            try:
                with (
                    socket.create_connection((self.host, self.port), timeout=2) as raw,
                    context.wrap_socket(raw, server_hostname=self.host),
                ):
                    # A handshake that gets this far proves the listener serves our
                    # certificate; the server refuses us later for lack of ours.
                    return
            except ssl.SSLCertVerificationError as exc:
                raise BrokerError(
                    f"{self.host}:{self.port} serves a certificate not from our CA: {exc}"
                ) from exc
            except ssl.SSLError:
                return  # refused for want of a client certificate: it is mosquitto
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise BrokerError(
                    f"mosquitto did not listen on {self.host}:{self.port} within "
                    f"{self.startup_timeout:.0f}s: {self._log_tail()}"
                )
            time.sleep(0.05)

    def _log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(text.strip().splitlines()[-lines:]) or "(empty log)"

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM mosquitto (it saves its persistent sessions), SIGKILL after ``grace``."""
        process, self._process = self._process, None
        if process is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(sig)
            try:
                process.wait(timeout=grace)
                return
            except subprocess.TimeoutExpired:
                continue
