"""``portfolio`` and ``retire``: what an account holds and has done, and claiming it."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal
from typing import Any

from energy_client.cli.arguments import Commands, account_name, day, day_start_ms, signer_option
from energy_client.cli.display import (
    LEFT,
    RIGHT,
    block,
    details,
    emit,
    interval,
    kwh,
    plain,
    table,
    when,
)
from energy_client.cli.errors import OK, USAGE, CliError
from energy_client.cli.session import Session, more


def add_commands(commands: Commands) -> None:
    sub = commands.add("portfolio", cmd_portfolio, "balance, purchases, holdings, carbon")
    sub.add_argument("name", type=account_name, metavar="NAME")

    sub = commands.add("retire", cmd_retire, "retire held credits for a beneficiary")
    sub.add_argument("credit_ids", nargs="+", metavar="CREDIT_ID")
    sub.add_argument("--beneficiary", required=True, metavar="B")
    sub.add_argument("--period-start", required=True, type=day, metavar="YYYY-MM-DD")
    sub.add_argument("--period-end", required=True, type=day, metavar="YYYY-MM-DD", help="included")
    signer_option(sub)


def cmd_portfolio(session: Session, args: argparse.Namespace) -> int:
    p = session.call("energy.getPortfolio", {"account": args.name})
    if session.json:
        session.print_json(p)
        return OK
    carbon = p["carbon_offset"]
    bought = ", ".join(f"{t} {kwh(wh)} kWh" for t, wh in sorted(carbon["bought_wh"].items()))
    emit(
        details(
            [
                ("account", p["account"]),
                ("balance", f"{block(p['balance'])} BLOCK"),
                ("stake", f"{block(p['stake'])} BLOCK"),
                ("escrow", f"{block(p['escrow'])} BLOCK in {len(p['open_purchases'])} purchase(s)"),
                ("earnings", f"{block(p['earnings'])} BLOCK for {kwh(p['sold_wh'])} kWh sold"),
                ("bought", bought or "-"),
                (
                    "carbon offset",
                    f"{plain(Decimal(str(carbon['total_kg_co2'])))} kg CO2 "
                    f"(as {carbon['equivalent_trees']} trees absorb in a year)",
                ),
                ("providers", ", ".join(p["providers"]) or "-"),
            ]
        )
    )
    trade = [
        ("TRANSACTION", LEFT),
        ("PROVIDER", LEFT),
        ("ENERGY kWh", RIGHT),
        ("PRICE BLOCK/kWh", RIGHT),
        ("COST BLOCK", RIGHT),
    ]
    emit()
    emit("open purchases")
    if p["open_purchases"]:
        rows = (
            (*_trade_row(o), when(o["settles_at_ms"]))
            for o in p["open_purchases"]  # newest first
        )
        emit(table([*trade, ("SETTLES AT", LEFT)], rows))
    else:
        emit("(none)")
    emit()
    emit("holdings")
    if p["holdings"]:
        columns = [
            ("CREDIT", LEFT),
            ("PROVIDER", LEFT),
            ("TYPE", LEFT),
            ("JURISDICTION", LEFT),
            ("ENERGY kWh", RIGHT),
            ("PRODUCED", LEFT),
        ]
        rows = (
            (
                c["credit_id"],
                c["provider_id"],
                c["energy_type"],
                c["jurisdiction"],
                kwh(c["amount_wh"]),
                interval(c["interval_start_ms"], c["interval_end_ms"]),
            )
            for c in p["holdings"]
        )
        emit(table(columns, rows))
        more("holdings", p["holdings_next_cursor"])
    else:
        emit("(none)")
    emit()
    emit("purchase history")
    if p["purchase_history"]:
        rows = (
            (*_trade_row(h), when(h["settled_at_ms"]), _receipt_ref(h.get("receipt")))
            for h in p["purchase_history"]
        )
        emit(table([*trade, ("SETTLED AT", LEFT), ("RECEIPT", LEFT)], rows))
        more("settled purchases", p["purchase_history_next_cursor"])
    else:
        emit("(none)")
    return OK


def _trade_row(purchase: Mapping[str, Any]) -> tuple[str, ...]:
    return (
        purchase["transaction_id"],
        purchase["provider_id"],
        kwh(purchase["amount_wh"]),
        block(purchase["price_micro_block_per_kwh"]),
        block(purchase["total_cost_micro_block"]),
    )


def _receipt_ref(receipt: Mapping[str, Any] | None) -> str:
    return "-" if not receipt else f"#{receipt['sequence']}"


def cmd_retire(session: Session, args: argparse.Namespace) -> int:
    holder = session.signer(args.signer)
    if args.period_end < args.period_start:
        raise CliError("--period-end is before --period-start", USAGE)
    params = {
        "credit_ids": args.credit_ids,
        "beneficiary": args.beneficiary,
        "reporting_period_start_ms": day_start_ms(args.period_start),
        # Whole days, both included: the period ends at the midnight after --period-end.
        "reporting_period_end_ms": day_start_ms(args.period_end + timedelta(days=1)),
    }
    result = session.call("energy.retireCredits", params, holder)
    if session.json:
        session.print_json(result)
        return OK
    columns = [
        ("CERTIFICATE", LEFT),
        ("ENERGY kWh", RIGHT),
        ("TECHNOLOGY", LEFT),
        ("DEVICE", LEFT),
        ("PRODUCED", LEFT),
    ]
    rows = (
        (
            c["certificate_id"],
            kwh(c["energy_wh"]),
            c["technology"],
            c["device_id"],
            interval(c["production_start_ms"], c["production_end_ms"]),
        )
        for c in result["certificates"]
    )
    emit(table(columns, rows))
    emit(
        f"retired for {args.beneficiary}, "
        f"{args.period_start.isoformat()} to {args.period_end.isoformat()}"
    )
    return OK
