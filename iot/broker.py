"""The local MQTT broker (mosquitto) that stands in for AWS IoT Core's broker offline.

What AWS IoT enforces with X.509 certificates and the meter policy, mosquitto
enforces here with its TLS listener and an access-check plugin of ours
(``iot/mosquitto/meter_acl.c``, compiled on first use):

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
- a meter may publish only to its own readings topic
  (``energy/meters/<its CN>/readings``, the policy's
  ``${iot:Connection.Thing.ThingName}``); anything else gets PUBACK reason
  135 (not authorised) on MQTT 5;
- a meter may subscribe to nothing: the SUBACK says so (0x87 not authorised
  on MQTT 5, 0x80 on 3.1.1), as IoT Core's does. mosquitto's own acl_file
  cannot: it grants every SUBSCRIBE and filters only what it delivers, hence
  the plugin;
- only the rules bridge's identity may subscribe to and read
  ``energy/meters/+/readings``.

Difference left (docs/meter-protocol.md): a connect under a foreign client id
is renamed rather than refused.
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


# The plugin's source, and where it is built (build/ is the project's build output).
PLUGIN_SOURCE: Final = Path(__file__).resolve().parent / "mosquitto" / "meter_acl.c"
PLUGIN_BUILD_DIR: Final = Path(__file__).resolve().parent.parent / "build" / "mosquitto"


def plugin_options(bridge_identity: str = BRIDGE_IDENTITY) -> dict[str, str]:
    """The plugin's settings: the offline form of the meter IoT policy."""
    return {
        "meter_topic": meter_write_pattern(),
        "bridge_identity": bridge_identity,
        "bridge_filter": readings_topic_filter(),
    }


def access_plugin(build_dir: Path = PLUGIN_BUILD_DIR) -> Path:
    """The compiled access-check plugin, built from its source when missing or older.

    Needs a C compiler and mosquitto's plugin headers (Debian: gcc, mosquitto-dev;
    `make mosquitto` installs them). Built to a temporary name and renamed, so
    two processes building at once never load a half-written file.
    """
    target = build_dir / "meter_acl.so"
    if target.exists() and target.stat().st_mtime >= PLUGIN_SOURCE.stat().st_mtime:
        return target
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None or not Path("/usr/include/mosquitto_plugin.h").exists():
        raise BrokerError(
            "building the broker's access plugin needs a C compiler and mosquitto's"
            " plugin headers (`make mosquitto` installs them: apt-get install gcc"
            " mosquitto-dev)"
        )
    build_dir.mkdir(parents=True, exist_ok=True)
    partial = build_dir / f".meter_acl.{os.getpid()}.so"
    command = [compiler, "-std=c11", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Werror", "-O2"]
    command += ["-fPIC", "-shared", "-o", str(partial), str(PLUGIN_SOURCE)]
    built = subprocess.run(command, capture_output=True, text=True, check=False)
    if built.returncode != 0:
        partial.unlink(missing_ok=True)
        raise BrokerError(f"building the broker's access plugin failed: {built.stderr.strip()}")
    partial.replace(target)
    return target


def config_text(
    *,
    host: str,
    port: int,
    cafile: Path,
    certfile: Path,
    keyfile: Path,
    plugin: Path,
    bridge_identity: str,
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
            # Access checks: the meter policy (iot/mosquitto/meter_acl.c), and no
            # acl_file, whose grants would come first and answer every SUBSCRIBE.
            f"plugin {plugin}",
            *(
                f"plugin_opt_{key} {value}"
                for key, value in plugin_options(bridge_identity).items()
            ),
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
        """Write the server certificate and mosquitto.conf; return the config path."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        persistence = self.directory / "data"
        persistence.mkdir(mode=0o700, exist_ok=True)
        server: IssuedCertificate = self.ca.issue_server()
        server.write(self.server_certificate_path, self.server_key_path)
        self.config_path.write_text(
            config_text(
                host=self.host,
                port=self.port,
                cafile=self.ca.certificate_path,
                certfile=self.server_certificate_path,
                keyfile=self.server_key_path,
                plugin=access_plugin(),
                bridge_identity=self.bridge_identity,
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
