"""What the local stack tells a person: where its files are, its processes' status, and
the text printed once it has started."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infra.emulation import INGEST_DEAD_LETTER_QUEUE_ID
from infra.local.processes import DISCOVER_REQUEST
from iot.lifecycle import read_status

if TYPE_CHECKING:
    from infra.local.stack import LocalStack

# Where the local stack keeps the CA, the broker's files, the bridge's, the jobs',
# the stream poller's, the WebSocket gateway's and the demo's, under state_dir.
CA_DIR = "ca"
BROKER_DIR = "broker"
BRIDGE_DIR = "bridge"
JOBS_DIR = "jobs"
STREAMS_DIR = "streams"
WEBSOCKETS_DIR = "websockets"
WEB_DIR = "web"
DEMO_DIR = "demo"
STATUS_FILE = "status.json"


class StateFiles:
    """The local stack's files under ``state_dir`` and the status its processes write there."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir

    @property
    def ca_dir(self) -> Path:
        return self.state_dir / CA_DIR

    @property
    def broker_dir(self) -> Path:
        return self.state_dir / BROKER_DIR

    @property
    def broker_log_path(self) -> Path:
        return self.broker_dir / "mosquitto.log"

    @property
    def bridge_dir(self) -> Path:
        return self.state_dir / BRIDGE_DIR

    @property
    def bridge_status_path(self) -> Path:
        return self.bridge_dir / STATUS_FILE

    @property
    def jobs_dir(self) -> Path:
        return self.state_dir / JOBS_DIR

    @property
    def jobs_status_path(self) -> Path:
        return self.jobs_dir / STATUS_FILE

    @property
    def streams_dir(self) -> Path:
        return self.state_dir / STREAMS_DIR

    @property
    def streams_status_path(self) -> Path:
        return self.streams_dir / STATUS_FILE

    @property
    def websockets_dir(self) -> Path:
        return self.state_dir / WEBSOCKETS_DIR

    @property
    def websockets_status_path(self) -> Path:
        return self.websockets_dir / STATUS_FILE

    @property
    def web_dir(self) -> Path:
        return self.state_dir / WEB_DIR

    @property
    def web_status_path(self) -> Path:
        return self.web_dir / STATUS_FILE

    @property
    def demo_status_path(self) -> Path:
        return self.state_dir / DEMO_DIR / STATUS_FILE

    def bridge_status(self) -> dict[str, Any]:
        """The rules bridge's counters (iot.rules_bridge.RulesBridge.status), from its file."""
        return read_status(self.bridge_status_path)

    def jobs_status(self) -> dict[str, Any]:
        """Runs and last results of the scheduled jobs (infra.scheduler), from its file."""
        return read_status(self.jobs_status_path)

    def streams_status(self) -> dict[str, Any]:
        """Records handled, failures and backlog per stream handler (infra.stream_poller)."""
        return read_status(self.streams_status_path)

    def websockets_status(self) -> dict[str, Any]:
        """Connections open, messages in and out, pushes, gone (infra.ws_gateway), from its file."""
        return read_status(self.websockets_status_path)

    def web_status(self) -> dict[str, Any]:
        """Files served, API calls and WebSocket tunnels passed (infra.web_server), from its file."""
        return read_status(self.web_status_path)

    def demo_status(self) -> dict[str, Any]:
        """The demo fleet's counters (iot.demo.fleet), from its file."""
        return read_status(self.demo_status_path)


def describe(stack: LocalStack) -> str:
    """What is running where, for a person at a terminal."""
    payload = json.dumps(DISCOVER_REQUEST, separators=(",", ":"))
    tables = "\n".join(
        f"    {variable}={name}" for variable, name in sorted(stack.table_names.items())
    )
    return (
        "Energy Marketplace is running locally.\n"
        f"  moto (AWS emulation): {stack.moto_endpoint}\n"
        f"  tables (stack {stack.stack_name}):\n{tables}\n"
        f"{_mqtt_lines(stack)}"
        f"{_jobs_lines(stack)}"
        f"{_streams_lines(stack)}"
        f"{_websocket_lines(stack)}"
        f"{_demo_lines(stack)}"
        f"  JSON-RPC API:         {stack.rpc_url}\n"
        f"{_web_lines(stack)}"
        f"  operator key:         {stack.operator_key_path} "
        f"(public key {stack.environment['OPERATOR_PUBLIC_KEY']})\n"
        "  try:\n"
        f"    curl -s -X POST {stack.rpc_url} -H 'Content-Type: application/json' \\\n"
        f"      -d '{payload}'\n"
        + (
            f"Open the dashboard: {stack.dashboard_url}\n"
            if stack.web_server_pid is not None
            else ""
        )
        + "Press Ctrl-C to stop."
    )


def _mqtt_lines(stack: LocalStack) -> str:
    if stack.mqtt_port is None:
        return ""
    return (
        f"  MQTT broker:          mqtts://{stack.host}:{stack.mqtt_port} (mosquitto, "
        f"client certificates from {stack.ca_dir}; log {stack.broker_log_path})\n"
        f"  rules bridge:         pid {stack.bridge_pid}, counters in "
        f"{stack.bridge_status_path}\n"
        f"  dead-letter queue:    {stack.queue_urls.get(INGEST_DEAD_LETTER_QUEUE_ID)}\n"
        f"  IoT (moto):           thing type {stack.iot_names.get('thing_type')}, "
        f"policy {stack.iot_names.get('policy')}\n"
        "  a meter:\n"
        f"    AWS_ENDPOINT_URL_IOT={stack.moto_endpoint} AWS_ACCESS_KEY_ID=testing "
        "AWS_SECRET_ACCESS_KEY=testing \\\n"
        "      python -m iot.provision --meter-address solar_meter_001 "
        "--owner <account> \\\n"
        f"      --stack-name {stack.stack_name} --local-ca {stack.ca_dir} "
        f"--port {stack.mqtt_port} --out {stack.state_dir}/meters/solar_meter_001\n"
        "    python -m iot.meter --credentials "
        f"{stack.state_dir}/meters/solar_meter_001 --power-w 3000 --interval 60\n"
    )


def _jobs_lines(stack: LocalStack) -> str:
    if stack.scheduler_pid is None:
        return ""
    return (
        f"  scheduled jobs:       pid {stack.scheduler_pid}, settlement, expiry and dispute "
        "deadlines every "
        f"{stack.jobs_interval:g} s; status in {stack.jobs_status_path}\n"
    )


def _streams_lines(stack: LocalStack) -> str:
    if stack.stream_poller_pid is None:
        return ""
    return (
        f"  stream poller:        pid {stack.stream_poller_pid}, ledger stream -> "
        "publish_market_events, registry stream -> watch_meters (the fraud detectors); "
        f"status in {stack.streams_status_path}\n"
    )


def _websocket_lines(stack: LocalStack) -> str:
    if stack.ws_gateway_pid is None:
        return ""
    # The gateway found the app's handlers; it says which in its status.
    routes = ", ".join(stack.websockets_status().get("routes") or []) or "none in the app yet"
    return (
        f"  WebSocket API:        {stack.websocket_url} (gateway pid {stack.ws_gateway_pid}, "
        f"the app's handlers for {routes})\n"
        f"  @connections API:     {stack.websocket_management_endpoint} "
        f"(WEBSOCKET_MANAGEMENT_ENDPOINT); status in {stack.websockets_status_path}\n"
    )


def _web_lines(stack: LocalStack) -> str:
    if stack.web_server_pid is None:
        return ""
    built = stack.web_status().get("built")
    state = "" if built else f" (not built: run `make web`, which builds {stack.web_dist})"
    return (
        f"  dashboard:            {stack.dashboard_url}{state}\n"
        f"                        (web/dist, with /rpc -> the API and /ws -> the WebSocket "
        f"API on the same origin; pid {stack.web_server_pid}, status in "
        f"{stack.web_status_path})\n"
    )


def _demo_lines(stack: LocalStack) -> str:
    if stack.demo_pid is None or stack.demo is None:
        return ""
    demo = stack.demo
    keys = stack.state_dir / DEMO_DIR / "keys"
    cheating = demo.cheaters + (1 if demo.faulty_every_seconds > 0 and demo.meters else 0)
    return (
        f"  demo fleet:           pid {stack.demo_pid}, {demo.meters} meters, "
        f"{demo.buyers} buyers, {demo.validators} staked validators and {cheating} cheating "
        f"meters (wind and hydro weather at {demo.speedup}x, solar in real time); "
        f"status in {stack.demo_status_path}; account keys in {keys}\n"
        "  disputes:             flags, votes, verdicts and slashes are logged below as they "
        'happen, counted under "disputes" in the status file; look them up with\n'
        f"    python -m energy_client --url {stack.rpc_url} disputes --status guilty\n"
        f"    python -m energy_client --url {stack.rpc_url} dispute DISPUTE_ID\n"
    )
