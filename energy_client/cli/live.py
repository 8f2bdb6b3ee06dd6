"""``watch``: live events as they happen (docs/events.md), over the WebSocket API."""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from collections.abc import Mapping
from typing import Any, Final

from chalicelib.domain import events
from energy_client.cli.arguments import Commands, key_name
from energy_client.cli.display import kwh, note, when
from energy_client.cli.errors import OK, USAGE, CliError
from energy_client.cli.session import Session
from energy_client.rpc_client import events_token

DEFAULT_WS_URL: Final = "ws://127.0.0.1:8001/"
WS_URL_ENV: Final = "ENERGY_MARKET_WS_URL"
PING_SECONDS: Final = 60.0  # API Gateway closes a connection idle for 10 minutes
TOKEN_LIFETIME_MS: Final = 3_600_000
MAX_BACKOFF_SECONDS: Final = 30.0


def add_commands(commands: Commands) -> None:
    sub = commands.add("watch", cmd_watch, "print live events as they happen (docs/events.md)")
    sub.add_argument(
        "topics",
        nargs="*",
        metavar="TOPIC",
        help="topics to follow (default: every public one): " + ", ".join(events.PUBLIC_TOPICS),
    )
    sub.add_argument(
        "--account",
        type=key_name,
        metavar="KEY",
        help="also follow this account's own topic (signs a token with its key)",
    )
    sub.add_argument(
        "--ws-url",
        metavar="URL",
        help=f"the WebSocket API (default: ${WS_URL_ENV} or {DEFAULT_WS_URL})",
    )
    sub.add_argument("--count", type=int, metavar="N", help="stop after N events")
    sub.add_argument("--seconds", type=float, metavar="S", help="stop after S seconds")


def cmd_watch(session: Session, args: argparse.Namespace) -> int:
    from websockets.exceptions import ConnectionClosed, InvalidStatus
    from websockets.sync.client import connect

    topics = list(args.topics) or list(events.PUBLIC_TOPICS)
    unknown = [t for t in topics if not events.is_topic(t)]
    if unknown:
        raise CliError(
            f"no such topic: {unknown[0]}",
            USAGE,
            [
                f"topics: {', '.join(events.PUBLIC_TOPICS)}, or provider:<provider id>",
                "an account's own events: --account KEY",
            ],
        )
    url = args.ws_url or os.environ.get(WS_URL_ENV) or DEFAULT_WS_URL
    signer = session.signer(args.account) if args.account else None
    marketplace_id = session.call("energy.getMarketInfo")["marketplace_id"] if signer else ""
    if signer is not None:
        topics.append(events.account_topic(signer.account))
    deadline = time.monotonic() + args.seconds if args.seconds else None
    seen = 0
    backoff = 1.0
    while deadline is None or time.monotonic() < deadline:
        message: dict[str, Any] = {"action": "subscribe", "topics": topics, "id": "watch"}
        if signer is not None:
            expires = int(time.time() * 1000) + TOKEN_LIFETIME_MS - 60_000
            message["token"] = events_token(signer, marketplace_id, expires)
        try:
            with connect(url, open_timeout=10) as socket:
                socket.send(json.dumps(message))
                backoff = 1.0
                last_sent = time.monotonic()
                while deadline is None or time.monotonic() < deadline:
                    wait = PING_SECONDS
                    if deadline is not None:
                        wait = min(wait, max(0.0, deadline - time.monotonic()))
                    try:
                        frame = socket.recv(timeout=wait)
                    except TimeoutError:
                        if time.monotonic() - last_sent >= PING_SECONDS:
                            socket.send(json.dumps({"action": "ping"}))
                            last_sent = time.monotonic()
                        continue
                    left = None if args.count is None else args.count - seen
                    seen += _show(json.loads(frame), args, left)
                    if args.count is not None and seen >= args.count:
                        return OK
        except InvalidStatus as refused:
            raise CliError(
                f"{url} refused the connection ({refused.response.status_code})",
                USAGE,
                ["is the account's key the one the marketplace knows?"],
            ) from refused
        except (OSError, ConnectionClosed) as dropped:
            # Reconnect and subscribe again (subscriptions do not outlive a
            # connection); events sent meanwhile are not replayed.
            note(f"connection to {url} lost ({dropped}); reconnecting")
            time.sleep(backoff + random.uniform(0, backoff / 2))  # noqa: S311  (jitter, not crypto)
            backoff = min(MAX_BACKOFF_SECONDS, backoff * 2)
    return OK


def _show(frame: Mapping[str, Any], args: argparse.Namespace, limit: int | None) -> int:
    """Print a frame's events, at most ``limit`` of them; how many were printed."""
    kind = frame.get("type")
    if kind == "error":
        reason = frame.get("reason")
        hints = []
        if args.account and reason in ("bad_token", "not_authorised"):
            hints.append(
                f"the token was signed with the key {args.account}: is it the key the "
                f"account {args.account} was created with on this marketplace? If it is, "
                "check this computer's clock"
            )
        raise CliError(f"the marketplace refused: {reason}: {frame.get('message')}", hints=hints)
    if kind == "subscribed":
        note(f"watching {', '.join(frame.get('topics', []))}")
        return 0
    if kind != "events":
        return 0
    shown = 0
    for event in frame.get("events", [])[:limit]:
        if args.json:
            print(json.dumps(event, sort_keys=True), flush=True)
        else:
            print(f"{when(event['at_ms'])}  {event['topic']:<16}  {describe(event)}", flush=True)
        shown += 1
    return shown


def describe(event: Mapping[str, Any]) -> str:
    data = event.get("data", {})
    name = event.get("event")
    if name == "new_reading" and "providers" in data:
        # The public topic: every reading of one stream batch, by provider.
        providers = len(data["providers"]) + data.get("providers_not_listed", 0)
        mix = ", ".join(f"{kind} {kwh(wh)}" for kind, wh in data.get("wh_by_type", {}).items())
        return (
            f"{data['readings']} reading(s) from {providers} provider(s), "
            f"{kwh(data['wh'])} kWh" + (f" ({mix})" if mix else "")
        )
    if name == "new_reading":
        return (
            f"{data['provider_id']}: {data['readings']} reading(s), {kwh(data['wh'])} kWh, "
            f"counter {kwh(data['counter_wh'])} kWh"
        )
    if name == "provider_update":
        return (
            f"{data['provider_id']} {data['display_name']!r}: {data['status']}, "
            f"{kwh(data['on_sale_wh'])} kWh on sale at "
            f"{data['price_micro_block_per_kwh'] / 1_000_000:g} BLOCK/kWh"
        )
    if name in ("new_settlement", "purchase_settled", "purchase_opened", "purchase_revoked"):
        return (
            f"{name} {data['transaction_id']}: {kwh(data['wh'])} kWh from "
            f"{data['provider_id']} for {data['total_cost'] / 1_000_000:g} BLOCK"
        )
    if name in ("dispute_opened", "dispute_resolved", "dispute_assigned"):
        return f"{name} {data['dispute_id']} against {data['provider_id']}: {data['status']}"
    if name == "balance":
        return f"{data['account']}: balance {data['balance'] / 1_000_000:g} BLOCK"
    if name == "market_stats":
        traded = data["energy_traded"]["wh_24h"]
        return (
            f"market: {kwh(traded)} kWh traded in 24 h, grid health {data['grid_health']['score']}"
        )
    return json.dumps(data, sort_keys=True)
