"""``stats``, ``prices``, ``activity`` and ``leaders``: the market's figures
(docs/analytics.md defines each one)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final

from chalicelib.domain import carbon
from energy_client.cli.arguments import ENERGY_TYPES, Commands
from energy_client.cli.display import (
    LEFT,
    RIGHT,
    block,
    details,
    emit,
    kwh,
    plain,
    table,
    when,
)
from energy_client.cli.errors import OK
from energy_client.cli.session import Session

MAX_HOURS: Final = 720  # energy.getPriceHistory and getMarketActivity: 30 days
MAX_LEADERS: Final = 20
WINDOWS: Final = ("24h", "7d", "all")
WINDOW_NAMES: Final = {"24h": "24 h", "7d": "7 days", "all": "all time"}


def _bounded(low: int, high: int, what: str) -> Any:
    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"{text!r}: {what} is a whole number from {low} to {high}"
            )
        return value

    convert.__name__ = what
    return convert


HOURS = _bounded(1, MAX_HOURS, "the number of hours")
LEADERS = _bounded(1, MAX_LEADERS, "the number of places")


def add_commands(commands: Commands) -> None:
    sub = commands.add(
        "stats", cmd_stats, "the market's figures: capacity, prices, energy, grid health, leaders"
    )

    hours_help = f"the window, ending now: 1-{MAX_HOURS} hours (default 24)"
    sub = commands.add("prices", cmd_prices, "open, high, low, close and VWAP per time bucket")
    sub.add_argument("--hours", type=HOURS, default=24, metavar="N", help=hours_help)
    scope = sub.add_mutually_exclusive_group()
    scope.add_argument("--type", dest="energy_type", choices=ENERGY_TYPES, help="one energy type")
    scope.add_argument("--jurisdiction", metavar="J", help="one jurisdiction: US_CA, DE_BY, ...")

    sub = commands.add(
        "activity", cmd_activity, "purchases, settlements, revenue and generation per bucket"
    )
    sub.add_argument("--hours", type=HOURS, default=24, metavar="N", help=hours_help)
    sub.add_argument("--daily", action="store_true", help="one row per UTC day")

    sub = commands.add("leaders", cmd_leaders, "providers by energy sold")
    sub.add_argument(
        "--window", choices=WINDOWS, default="24h", help="24h, 7d or all (default 24h)"
    )
    sub.add_argument(
        "--limit", type=LEADERS, default=10, metavar="N", help="places, 1-20 (default 10)"
    )


# -- helpers --------------------------------------------------------------------------------


def span(ms: int) -> str:
    """A bucket size: ``3600000`` -> ``1 h``, ``60000`` -> ``1 min``, ``86400000`` -> ``1 day``."""
    for size, unit in ((86_400_000, "day"), (3_600_000, "h"), (60_000, "min")):
        if ms % size == 0:
            return f"{ms // size} {unit}"
    return f"{ms} ms"


def price(micro_block_per_kwh: Any) -> str:
    return "-" if micro_block_per_kwh is None else f"{block(micro_block_per_kwh)} BLOCK/kWh"


def percent(value: Any) -> str:
    return f"{plain(Decimal(str(value)))} %"


def by_type(wh_by_type: Mapping[str, Any]) -> str:
    return ", ".join(f"{kind} {kwh(wh)}" for kind, wh in sorted(wh_by_type.items())) or "-"


def _start(ms: int, daily: bool) -> str:
    return when(ms)[:10] if daily else when(ms)


# -- stats ----------------------------------------------------------------------------------


def cmd_stats(session: Session, args: argparse.Namespace) -> int:
    return session.show(session.call("energy.getMarketStats"), stats_text)


def stats_text(s: Mapping[str, Any]) -> str:
    traded, revenue, prices = s["energy_traded"], s["revenue"], s["average_price"]
    providers, grid, carbon = s["providers"], s["grid_health"], s["carbon_offset"]
    mix = s["energy_mix"]
    refused = ", ".join(f"{reason} {n}" for reason, n in sorted(s["refused_24h"].items()))
    lines = [
        details(
            [
                ("as of", f"{when(s['as_of_ms'])} (buckets of {span(s['bucket_ms'])})"),
                ("capacity", f"{kwh(s['total_capacity_wh'])} kWh on the market"),
                ("on sale", f"{kwh(s['on_sale_wh'])} kWh"),
                (
                    "providers",
                    f"{providers['registered']} registered, {providers['listed']} on the "
                    f"market, {providers['active_24h']} active in 24 h, "
                    f"{providers['meters_on_time']} meter(s) on time",
                ),
                ("buyers", f"{s['active_buyers']} active in 24 h"),
                (
                    "price, 24 h",
                    f"{price(prices['vwap_24h_micro_block_per_kwh'])} (volume-weighted)",
                ),
                ("price, listed", f"{price(prices['listed_micro_block_per_kwh'])} (average ask)"),
                (
                    "traded",
                    f"{kwh(traded['wh_24h'])} kWh in {traded['trades_24h']} purchase(s) in 24 h; "
                    f"{kwh(traded['wh_all_time'])} kWh all time",
                ),
                (
                    "settled",
                    f"{kwh(traded['settled_wh_24h'])} kWh in 24 h; "
                    f"{kwh(traded['settled_wh_all_time'])} kWh all time",
                ),
                (
                    "revenue",
                    f"{block(revenue['micro_block_24h'])} BLOCK in 24 h; "
                    f"{block(revenue['micro_block_all_time'])} BLOCK all time",
                ),
                (
                    "carbon offset",
                    f"{plain(Decimal(str(carbon['total_kg_co2'])))} kg CO2 "
                    f"(as {carbon['equivalent_trees']} trees absorb in a year)",
                ),
                (
                    "grid health",
                    f"{grid['score']}/100: meters on time {percent(grid['on_time_percent'])}, "
                    f"readings accepted {percent(grid['accepted_percent'])}, supply "
                    f"{percent(grid['supply_percent'])}",
                ),
                (
                    "readings, 24 h",
                    f"{s['readings_24h']} accepted; refused: {refused or 'none'}",
                ),
                ("open disputes", s["open_disputes"]),
            ]
        ),
        "",
        "energy mix, kWh",
    ]
    kinds = sorted(
        set(mix["capacity_wh"]) | set(mix["generated_wh_24h"]) | set(mix["traded_wh_24h"])
    )
    if kinds:
        columns = [
            ("TYPE", LEFT),
            ("CAPACITY", RIGHT),
            ("GENERATED 24 h", RIGHT),
            ("TRADED 24 h", RIGHT),
        ]
        rows = (
            (
                kind,
                kwh(mix["capacity_wh"].get(kind, 0)),
                kwh(mix["generated_wh_24h"].get(kind, 0)),
                kwh(mix["traded_wh_24h"].get(kind, 0)),
            )
            for kind in kinds
        )
        lines.append(table(columns, rows))
    else:
        lines.append("(none)")
    lines += ["", "top providers, 24 h", leaders_text(s["top_providers"])]
    return "\n".join(lines)


# -- prices ---------------------------------------------------------------------------------


def cmd_prices(session: Session, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"hours": args.hours}
    if args.energy_type is not None:
        params["energy_type"] = args.energy_type
    if args.jurisdiction is not None:
        params["jurisdiction"] = args.jurisdiction
    return session.show(session.call("energy.getPriceHistory", params), prices_text)


def prices_text(h: Mapping[str, Any]) -> str:
    scope = h["scope"].replace("type#", "energy type ").replace("jur#", "jurisdiction ")
    head = (
        f"{scope}: buckets of {span(h['bucket_ms'])} from {when(h['from_ms'])} "
        f"to {when(h['to_ms'])}; prices in BLOCK/kWh"
    )
    if not h["buckets"]:
        return f"{head}\nno purchases in this window"
    columns = [
        ("BUCKET", LEFT),
        ("OPEN", RIGHT),
        ("HIGH", RIGHT),
        ("LOW", RIGHT),
        ("CLOSE", RIGHT),
        ("VWAP", RIGHT),
        ("VOLUME kWh", RIGHT),
        ("TRADES", RIGHT),
    ]
    rows = (
        (
            when(b["start_ms"]),
            block(b["open"]),
            block(b["high"]),
            block(b["low"]),
            block(b["close"]),
            block(b["vwap"]),
            kwh(b["volume_wh"]),
            b["trades"],
        )
        for b in h["buckets"]
    )
    return f"{head}\n{table(columns, rows)}"


# -- activity -------------------------------------------------------------------------------


def cmd_activity(session: Session, args: argparse.Namespace) -> int:
    params = {"hours": args.hours, "daily": args.daily}
    result = session.call("energy.getMarketActivity", params)
    return session.show(result, lambda a: activity_text(a, args.daily))


def activity_text(a: Mapping[str, Any], daily: bool) -> str:
    if not a["buckets"]:
        return "no activity in this window"
    columns = [
        ("DAY" if daily else "BUCKET", LEFT),
        ("TRADES", RIGHT),
        ("TRADED kWh", RIGHT),
        ("VOLUME BLOCK", RIGHT),
        ("SETTLED kWh", RIGHT),
        ("REVENUE BLOCK", RIGHT),
        ("READINGS", RIGHT),
        ("GENERATED kWh", LEFT),
        ("CO2 AVOIDED kg", RIGHT),
    ]
    rows = (
        (
            _start(b["start_ms"], daily),
            b["trades"],
            kwh(b["traded_wh"]),
            block(b["volume_micro_block"]),
            kwh(b["settled_wh"]),
            block(b["revenue_micro_block"]),
            b["readings"],
            by_type(b["generated_wh"]),
            plain(carbon.kg_from_g(int(b["carbon_g_co2"]))),
        )
        for b in a["buckets"]
    )
    return f"buckets of {span(a['bucket_ms'])}\n{table(columns, rows)}"


# -- leaders --------------------------------------------------------------------------------


def cmd_leaders(session: Session, args: argparse.Namespace) -> int:
    params = {"window": args.window, "limit": args.limit}
    result = session.call("energy.getTopProviders", params)
    if session.json:
        session.print_json(result)
        return OK
    emit(f"providers by energy sold, {WINDOW_NAMES[result['window']]}")
    emit(leaders_text(result["providers"]))
    return OK


def leaders_text(leaders: list[Mapping[str, Any]]) -> str:
    if not leaders:
        return "(no energy sold)"
    columns = [
        ("#", RIGHT),
        ("PROVIDER", LEFT),
        ("NAME", LEFT),
        ("TYPE", LEFT),
        ("JURISDICTION", LEFT),
        ("SOLD kWh", RIGHT),
    ]
    rows = (
        (
            p["rank"],
            p["provider_id"],
            p["display_name"] or "-",
            p["energy_type"] or "-",
            p["jurisdiction"] or "-",
            kwh(p["sold_wh"]),
        )
        for p in leaders
    )
    return table(columns, rows)
