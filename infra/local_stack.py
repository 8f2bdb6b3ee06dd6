"""Run the marketplace on this machine: moto, the resources from infra/, MQTT and `chalice local`.

What runs, in start order (and stopped in reverse):

- moto (AWS emulation), with the tables, the meter thing type and policy, and the
  ingest dead-letter queue built from infra/template.yaml;
- mosquitto, the stand-in for IoT Core's broker: TLS with client certificates
  from the local CA, the meter policy's access checks (iot/broker.py);
- the rules bridge, the stand-in for the ingest topic rule: a subprocess with the
  same environment as the API, invoking ``app.ingest_reading`` (iot/rules_bridge.py);
- the job scheduler, the stand-in for the EventBridge schedules: a subprocess
  calling the app's ``@app.schedule`` functions on a timer (infra/scheduler.py);
- the stream poller, the stand-in for Lambda's stream event sources: a
  subprocess handing each table stream's records to the app's
  ``@app.on_dynamodb_record`` functions (infra/stream_poller.py);
- ``chalice local``, the JSON-RPC API;
- the WebSocket gateway, the stand-in for API Gateway's WebSocket API: a
  subprocess calling the app's ``$connect``, ``$default`` and ``$disconnect``
  handlers and serving the ``@connections`` management API the app pushes
  through (``WEBSOCKET_MANAGEMENT_ENDPOINT``) (infra/ws_gateway.py);
- the dashboard's web server, the stand-in for CloudFront in front of S3 and the APIs: it
  serves the built app (``web/dist``) and passes ``/rpc`` to the API and ``/ws`` to the
  WebSocket API on the same origin (infra/web_server.py);
- the demo fleet (``iot/demo/fleet.py``): accounts, providers of every energy
  type with provisioned meters publishing over MQTT, and buyers.

This module is the command (``python -m infra.local_stack``, what ``make run``
runs) and the names its users import; the parts live in ``infra/local/``:
options (command line, settings), processes (ports, spawning, stopping),
bootstrap (moto, its resources, the broker, keys), report (state files,
status, the text printed at start) and stack (``LocalStack``).
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence
from types import FrameType

from infra.local.bootstrap import load_or_create_key, load_or_create_operator_key
from infra.local.errors import LocalStackError, PortInUseError
from infra.local.options import (
    DEFAULT_API_PORT,
    DEFAULT_HOST,
    DEFAULT_MOTO_PORT,
    DEFAULT_MQTT_PORT,
    DEFAULT_STATE_DIR,
    DEFAULT_WEB_PORT,
    DEFAULT_WS_PORT,
    FAKE_CREDENTIALS,
    LOCAL_SETTINGS,
    REGION,
    DemoOptions,
    demo_options,
    parse_args,
    settings_from_environment,
)
from infra.local.processes import ensure_port_free, free_port
from infra.local.stack import LocalStack

__all__ = [
    "DEFAULT_API_PORT",
    "DEFAULT_HOST",
    "DEFAULT_MOTO_PORT",
    "DEFAULT_MQTT_PORT",
    "DEFAULT_STATE_DIR",
    "DEFAULT_WEB_PORT",
    "DEFAULT_WS_PORT",
    "FAKE_CREDENTIALS",
    "LOCAL_SETTINGS",
    "REGION",
    "DemoOptions",
    "LocalStack",
    "LocalStackError",
    "PortInUseError",
    "ensure_port_free",
    "free_port",
    "load_or_create_key",
    "load_or_create_operator_key",
    "main",
    "parse_args",
]


class _Shutdown(Exception):
    """A termination signal arrived."""


def _raise_shutdown(signum: int, frame: FrameType | None) -> None:
    raise _Shutdown(signal.Signals(signum).name)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    stack = LocalStack(
        host=args.host,
        moto_port=args.moto_port,
        api_port=args.api_port,
        mqtt_port=args.mqtt_port,
        mqtt=args.mqtt,
        ws_port=args.ws_port,
        web=args.web,
        web_port=args.web_port,
        state_dir=args.state_dir,
        autoreload=args.autoreload,
        jobs=args.jobs,
        jobs_interval=args.jobs_interval,
        demo=demo_options(args),
        settings={**LOCAL_SETTINGS, **settings_from_environment()},
    )
    # Python leaves SIGINT ignored when started in the background by a shell
    # without job control; the stack must still stop on it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_shutdown)
    signal.signal(signal.SIGHUP, _raise_shutdown)
    try:
        mqtt = f", MQTT on {args.host}:{args.mqtt_port}" if args.mqtt else ""
        print(
            f"Starting moto on {args.host}:{args.moto_port}{mqtt}, the API on "
            f"{args.host}:{args.api_port}, WebSockets on {args.host}:{args.ws_port}"
            + (f" and the dashboard on {args.host}:{args.web_port}" if args.web else "")
            + " ...",
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
