"""``meter``: sign and send a meter's reading, and look at a meter."""

from __future__ import annotations

import argparse
import time

from chalicelib.domain.readings import signed_payload
from energy_client.cli.arguments import KWH_FILTER, Commands, key_name, unix_seconds
from energy_client.cli.display import details, emit, kwh, when
from energy_client.cli.errors import OK
from energy_client.cli.session import Session


def add_commands(commands: Commands) -> None:
    meter = commands.group("meter", "a meter's readings")
    sub = meter.add("submit", cmd_meter_submit, "sign a cumulative reading with a meter key")
    sub.add_argument("provider_id", metavar="PROVIDER_ID")
    sub.add_argument("meter_address", metavar="METER_ADDRESS")
    sub.add_argument("kwh", type=KWH_FILTER, metavar="KWH", help="the meter's cumulative counter")
    sub.add_argument("--meter-key", required=True, type=key_name, metavar="KEY")
    sub.add_argument(
        "--at", type=unix_seconds, metavar="SECONDS", help="when it was read (default: now)"
    )
    sub = meter.add("show", cmd_meter_show, "a meter's state and refusals")
    sub.add_argument("meter_address", metavar="METER_ADDRESS")


def cmd_meter_submit(session: Session, args: argparse.Namespace) -> int:
    meter = session.keys.load(args.meter_key)
    at_ms = args.at if args.at is not None else int(time.time()) * 1000
    reading = signed_payload(meter, args.provider_id, args.meter_address, args.kwh, at_ms)
    result = session.call("energy.submitReading", reading)
    if session.json:
        session.print_json(result)
        return OK
    if result["status"] == "duplicate":
        emit(f"duplicate: this reading was accepted before; nothing minted ({result['credit_id']})")
    elif int(result["amount_wh"]) == 0:
        emit(f"accepted: the meter's baseline at {kwh(args.kwh)} kWh; nothing minted")
    else:
        emit(f"accepted: minted {kwh(result['amount_wh'])} kWh, credit {result['credit_id']}")
    return OK


def cmd_meter_show(session: Session, args: argparse.Namespace) -> int:
    meter = session.call("energy.getMeter", {"meter_address": args.meter_address})
    if session.json:
        session.print_json(meter)
        return OK
    counter = meter["last_counter_wh"]
    refusals = ", ".join(f"{reason} {n}" for reason, n in sorted(meter["rejections"].items()))
    emit(
        details(
            [
                ("meter", meter["meter_address"]),
                ("provider", meter["provider_id"]),
                ("public key", meter["public_key"]),
                ("active", "yes" if meter["active"] else "no"),
                ("topic", meter["topic"]),
                ("counter", "-" if counter is None else f"{kwh(counter)} kWh"),
                ("last reading", when(meter["last_timestamp_ms"])),
                ("accepted", meter["accepted_readings"]),
                ("refused", refusals or "-"),
            ]
        )
    )
    return OK
