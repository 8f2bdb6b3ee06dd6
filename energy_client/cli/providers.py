"""``provider`` and ``providers``: register a provider, look at one, list them."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any, Final

from energy_client.cli.arguments import (
    BLOCK_AMOUNT,
    ENERGY_TYPES,
    KWH_AMOUNT,
    KWH_FILTER,
    POSITIVE_PRICE,
    Commands,
    coordinate,
    filters,
    key_name,
    market_filters,
    paging,
    public_key,
    signer_option,
    wire_kwh,
    wire_price,
)
from energy_client.cli.display import LEFT, RIGHT, block, details, emit, kwh, table, when_seconds
from energy_client.cli.errors import OK
from energy_client.cli.session import Session, more


def add_commands(commands: Commands) -> None:
    provider = commands.group("provider", "register and look at a provider")
    sub = provider.add("register", cmd_provider_register, "register and stake")
    signer_option(sub)
    sub.add_argument("--display-name", required=True, metavar="NAME")
    sub.add_argument("--energy-type", required=True, choices=ENERGY_TYPES)
    sub.add_argument("--jurisdiction", required=True, metavar="J", help="e.g. US_CA, DE_BY")
    sub.add_argument("--latitude", required=True, type=coordinate(90, "latitude"))
    sub.add_argument("--longitude", required=True, type=coordinate(180, "longitude"))
    sub.add_argument("--capacity-kwh", required=True, type=KWH_AMOUNT, metavar="KW")
    sub.add_argument("--price", required=True, type=POSITIVE_PRICE, metavar="BLOCK_PER_KWH")
    sub.add_argument(
        "--stake", required=True, type=BLOCK_AMOUNT, metavar="BLOCK", help="at least 1000"
    )
    sub.add_argument("--meter-address", required=True, metavar="ADDRESS")
    meter_key = sub.add_mutually_exclusive_group(required=True)
    meter_key.add_argument("--meter-public-key", metavar="HEX", type=public_key)
    meter_key.add_argument("--meter-key", metavar="KEY", type=key_name, help="a key in DIR")
    sub = provider.add("show", cmd_provider_show, "one provider")
    sub.add_argument("provider_id", metavar="PROVIDER_ID")

    sub = commands.add("providers", cmd_providers, "providers, cheapest first")
    market_filters(sub)
    sub.add_argument("--min-capacity", type=KWH_FILTER, metavar="KW")
    sub.add_argument(
        "--include-inactive", action="store_true", help="also paused and suspended ones"
    )
    paging(sub, "providers")


def _provider_details(p: Mapping[str, Any]) -> str:
    rating = "-" if p["rating"] is None else f"{p['rating']} / 5"
    uptime = "-" if p["uptime_percent"] is None else f"{p['uptime_percent']}%"
    return details(
        [
            ("provider", p["provider_id"]),
            ("name", p["display_name"]),
            ("owner", p["owner"]),
            ("status", p["status"]),
            ("energy type", p["energy_type"]),
            ("jurisdiction", p["jurisdiction"]),
            ("location", f"{p['latitude']}, {p['longitude']}"),
            ("capacity", f"{kwh(p['capacity_wh'])} kW"),
            ("price", f"{block(p['price_micro_block_per_kwh'])} BLOCK/kWh"),
            ("on sale", f"{kwh(p['available_wh'])} kWh"),
            ("stake", f"{block(p['stake'])} BLOCK"),
            ("open obligations", p["open_obligations"]),
            ("rating", rating),
            ("uptime", uptime),
            ("meter", p["meter_address"]),
            ("meter key", p["meter_public_key"]),
            ("registered", when_seconds(p["created_at"])),
        ]
    )


def cmd_provider_register(session: Session, args: argparse.Namespace) -> int:
    owner = session.signer(args.signer)
    meter_public_key = args.meter_public_key
    if meter_public_key is None:
        meter_public_key = bytes(session.keys.load(args.meter_key).verify_key).hex()
    params = {
        "owner": args.signer,
        "display_name": args.display_name,
        "energy_type": args.energy_type,
        "jurisdiction": args.jurisdiction,
        "latitude": args.latitude,
        "longitude": args.longitude,
        "capacity_kwh": wire_kwh(args.capacity_kwh),
        "price_per_kwh": wire_price(args.price),
        "stake": args.stake,
        "meter_address": args.meter_address,
        "meter_public_key": meter_public_key,
    }
    provider = session.call("energy.registerProvider", params, owner)
    return session.show(provider, _provider_details)


# Where a table lists providers (or their offers), its first columns: who
# sells what kind of energy, where, at what price.
SELLER_COLUMNS: Final = (
    ("PROVIDER", LEFT),
    ("NAME", LEFT),
    ("TYPE", LEFT),
    ("JURISDICTION", LEFT),
    ("PRICE BLOCK/kWh", RIGHT),
)


def seller_cells(provider: Mapping[str, Any]) -> tuple[str, ...]:
    """The cells under SELLER_COLUMNS for a provider or an offer as the API returns it."""
    return (
        provider["provider_id"],
        provider["display_name"],
        provider["energy_type"],
        provider["jurisdiction"],
        block(provider["price_micro_block_per_kwh"]),
    )


def cmd_provider_show(session: Session, args: argparse.Namespace) -> int:
    provider = session.call("energy.getProvider", {"provider_id": args.provider_id})
    return session.show(provider, _provider_details)


def cmd_providers(session: Session, args: argparse.Namespace) -> int:
    params = filters(args, min_field="min_capacity", min_value=args.min_capacity)
    if args.include_inactive:
        params["include_inactive"] = True
    result = session.pages(
        "energy.listProviders", params, "providers", limit=args.limit, every=args.all
    )
    if session.json:
        session.print_json(result)
        return OK
    providers = result["providers"]
    if not providers:
        emit("no providers match")
        return OK
    columns = [
        *SELLER_COLUMNS,
        ("CAPACITY kW", RIGHT),
        ("ON SALE kWh", RIGHT),
        ("STATUS", LEFT),
    ]
    rows = (
        (*seller_cells(p), kwh(p["capacity_wh"]), kwh(p["available_wh"]), p["status"])
        for p in providers
    )
    emit(table(columns, rows))
    more("providers", result["next_cursor"])
    return OK
