"""What the local stack runs with: defaults, settings from the environment, the command line."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from nacl.signing import SigningKey

PROJECT_DIR = Path(__file__).resolve().parents[2]
DEFAULT_STACK_NAME = "energy-marketplace-local"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_MOTO_PORT = 5000
DEFAULT_API_PORT = 8000
DEFAULT_MQTT_PORT = 8883
# The WebSocket API and its @connections management API (infra/ws_gateway.py).
DEFAULT_WS_PORT = 8001
# The dashboard (web/dist) and, on the same origin, /rpc and /ws (infra/web_server.py).
DEFAULT_WEB_PORT = 8080
WEB_DIST_DIR = PROJECT_DIR / "web" / "dist"
DEFAULT_STATE_DIR = Path(".local")
DEFAULT_JOBS_INTERVAL_SECONDS = 30.0

# A local market moves faster than a real one: purchases settle 5 minutes after
# their newest credit and unsold credits expire after 2 hours (AWS defaults:
# 24 hours and 30 days), so that the jobs have work while you watch; the
# analytics' price and activity buckets are minutes instead of hours.
LOCAL_SETTINGS = {
    "DISPUTE_WINDOW_MS": str(5 * 60_000),
    "CREDIT_LIFETIME_MS": str(2 * 3_600_000),
    "ANALYTICS_BUCKET_MS": str(60_000),
}
REGION = "us-east-1"
# moto accepts any credentials; these make sure nothing real is ever used.
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
# Application settings a developer may export for `make run` (MARKET_FEE_BPS=250 make run).
_APPLICATION_SETTINGS = {
    "MARKET_FEE_BPS",
    "DISPUTE_WINDOW_MS",
    "CREDIT_LIFETIME_MS",
    "ANALYTICS_BUCKET_MS",
    "ANALYTICS_SLOT_MS",
    "LOG_LEVEL",
}


@dataclass(frozen=True)
class DemoOptions:
    """The demo fleet `make run` starts (iot/demo/fleet.py); see its --help."""

    meters: int = 12
    buyers: int = 4
    interval_seconds: float = 30.0
    speedup: int = 60
    buyer_pause_seconds: float = 10.0
    faulty_every_seconds: float = 60.0
    validators: int = 5
    validator_pause_seconds: float = 5.0
    cheaters: int = 2

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
            "--validators",
            str(self.validators),
            "--validator-pause",
            str(self.validator_pause_seconds),
            "--cheaters",
            str(self.cheaters),
        ]


def application_environment(
    *,
    moto_endpoint: str,
    stack_name: str,
    operator_key: SigningKey,
    receipt_key: SigningKey | None,
    websocket_management_endpoint: str | None = None,
) -> dict[str, str]:
    """The settings the application reads to use the moto at moto_endpoint (tables aside).

    With the local WebSocket gateway's ``@connections`` endpoint, where the app
    pushes to clients (in AWS: https://{api-id}.execute-api.{region}.amazonaws.com/{stage}).
    """
    return {
        **FAKE_CREDENTIALS,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL_DYNAMODB": moto_endpoint,
        # The bridge's dead-letter queue and provisioning (python -m iot.provision).
        "AWS_ENDPOINT_URL_SQS": moto_endpoint,
        "AWS_ENDPOINT_URL_IOT": moto_endpoint,
        "AWS_ENDPOINT_URL_STS": moto_endpoint,
        "AWS_ENDPOINT_URL_DYNAMODB_STREAMS": moto_endpoint,
        # botocore otherwise sends some calls (streams) to account-scoped hosts.
        "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
        "MARKETPLACE_ID": stack_name,
        "OPERATOR_PUBLIC_KEY": operator_key.verify_key.encode().hex(),
        **({"RECEIPT_SIGNING_KEY": bytes(receipt_key).hex()} if receipt_key is not None else {}),
        **(
            {"WEBSOCKET_MANAGEMENT_ENDPOINT": websocket_management_endpoint}
            if websocket_management_endpoint is not None
            else {}
        ),
    }


def api_gateway_stage(project_dir: Path, chalice_stage: str) -> str:
    """The API Gateway stage a Chalice stage deploys to (the WebSocket URL's path).

    Read from .chalice/config.json, as `chalice deploy` reads it; Chalice's default is "api".
    """
    try:
        config = json.loads((project_dir / ".chalice" / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "api"
    stage_config = config.get("stages", {}).get(chalice_stage, {})
    return str(stage_config.get("api_gateway_stage") or config.get("api_gateway_stage") or "api")


def port_from_env(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise SystemExit(f"error: {name}={value!r} is not a port number") from None


def settings_from_environment() -> dict[str, str]:
    """Application settings a developer exported (MARKET_FEE_BPS=250 make run, ...)."""
    return {name: value for name, value in os.environ.items() if name in _APPLICATION_SETTINGS}


def demo_options(args: argparse.Namespace) -> DemoOptions | None:
    """The demo fleet the command line asks for; None without it or without MQTT."""
    if not (args.demo and args.mqtt):
        return None
    return DemoOptions(
        meters=args.demo_meters,
        buyers=args.demo_buyers,
        interval_seconds=args.demo_interval,
        speedup=args.demo_speedup,
        validators=args.demo_validators,
        cheaters=args.demo_cheaters,
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m infra.local_stack",
        description="Run moto, the marketplace tables and the Chalice API on this machine.",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on")
    parser.add_argument(
        "--moto-port",
        type=int,
        default=port_from_env("MOTO_PORT", DEFAULT_MOTO_PORT),
        help="moto server port (env MOTO_PORT, default %(default)s)",
    )
    parser.add_argument(
        "--api-port",
        type=int,
        default=port_from_env("API_PORT", DEFAULT_API_PORT),
        help="chalice local port (env API_PORT, default %(default)s)",
    )
    parser.add_argument(
        "--mqtt-port",
        type=int,
        default=port_from_env("MQTT_PORT", DEFAULT_MQTT_PORT),
        help="MQTT broker (TLS) port (env MQTT_PORT, default %(default)s)",
    )
    parser.add_argument(
        "--ws-port",
        type=int,
        default=port_from_env("WS_PORT", DEFAULT_WS_PORT),
        help="WebSocket gateway port: the WebSocket API and its @connections API "
        "(env WS_PORT, default %(default)s)",
    )
    parser.add_argument(
        "--web-port",
        type=int,
        default=port_from_env("WEB_PORT", DEFAULT_WEB_PORT),
        help="the dashboard, with /rpc and /ws on the same origin "
        "(env WEB_PORT, default %(default)s)",
    )
    parser.add_argument(
        "--no-web",
        dest="web",
        action="store_false",
        help="do not serve the dashboard (web/dist)",
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
        "--demo-validators",
        type=int,
        default=int(os.environ.get("DEMO_VALIDATORS") or defaults.validators),
        help="staked validators who judge disputes (env DEMO_VALIDATORS, default %(default)s)",
    )
    parser.add_argument(
        "--demo-cheaters",
        type=int,
        default=int(os.environ.get("DEMO_CHEATERS") or defaults.cheaters),
        help="cheating prosumers besides the faulty meter: solar at night, over capacity "
        "(env DEMO_CHEATERS, default %(default)s; 0 for none)",
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
