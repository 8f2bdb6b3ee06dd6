"""``offers``, ``buy`` and ``purchase``: what is on sale, buying it, one purchase."""

from __future__ import annotations

import argparse
import secrets
from collections.abc import Mapping
from typing import Any

from energy_client.cli.arguments import (
    KWH_AMOUNT,
    KWH_FILTER,
    PRICE,
    Commands,
    filters,
    market_filters,
    paging,
    signer_option,
    wire_kwh,
    wire_price,
)
from energy_client.cli.display import RIGHT, age, block, details, emit, kwh, note, table, when
from energy_client.cli.errors import OK
from energy_client.cli.providers import SELLER_COLUMNS, seller_cells
from energy_client.cli.session import Session, Unreachable, more


def add_commands(commands: Commands) -> None:
    sub = commands.add("offers", cmd_offers, "energy on sale now, cheapest first")
    market_filters(sub)
    sub.add_argument("--min-kwh", type=KWH_FILTER, metavar="KWH", help="at least this on sale")
    paging(sub, "offers")

    sub = commands.add("buy", cmd_buy, "buy energy: paid into escrow until settled")
    sub.add_argument("provider_id", metavar="PROVIDER_ID")
    sub.add_argument("kwh", type=KWH_AMOUNT, metavar="KWH")
    sub.add_argument("--max-price", required=True, type=PRICE, metavar="BLOCK_PER_KWH")
    sub.add_argument(
        "--idempotency-key",
        metavar="K",
        help="8-64 of A-Z a-z 0-9 _ -: the same key never buys twice (default: a new one)",
    )
    signer_option(sub)

    sub = commands.add("purchase", cmd_purchase, "one purchase")
    sub.add_argument("transaction_id", metavar="TRANSACTION_ID")


def cmd_offers(session: Session, args: argparse.Namespace) -> int:
    params = filters(args, min_field="min_kwh", min_value=args.min_kwh)
    result = session.pages("energy.getOffers", params, "offers", limit=args.limit, every=args.all)
    if session.json:
        session.print_json(result)
        return OK
    offers = result["offers"]
    if not offers:
        emit("no energy on sale matches")
        more("providers to look through", result["next_cursor"])
        return OK
    columns = [*SELLER_COLUMNS, ("AVAILABLE kWh", RIGHT), ("OLDEST CREDIT", RIGHT)]
    rows = (
        (*seller_cells(o), kwh(o["available_wh"]), age(o["oldest_credit_age_seconds"]))
        for o in offers
    )
    emit(table(columns, rows))
    more("offers", result["next_cursor"])
    return OK


def _purchase_details(p: Mapping[str, Any]) -> list[tuple[str, object]]:
    receipt = p.get("receipt")
    pairs: list[tuple[str, object]] = [
        ("purchase", p["transaction_id"]),
        ("status", p["status"]),
        ("buyer", p["buyer"]),
        ("provider", p["provider_id"]),
        ("energy", f"{kwh(p['amount_wh'])} kWh in {len(p['credit_ids'])} credit(s)"),
        ("price", f"{block(p['price_micro_block_per_kwh'])} BLOCK/kWh"),
        ("cost", f"{block(p['total_cost_micro_block'])} BLOCK"),
        ("bought", when(p["created_at_ms"])),
        ("settles at", when(p["settles_at_ms"])),
    ]
    if p.get("settled_at_ms") is not None:
        pairs.append(("settled", when(p["settled_at_ms"])))
    if receipt:
        pairs.append(("receipt", f"{receipt['chain']} #{receipt['sequence']}"))
    return pairs


def cmd_buy(session: Session, args: argparse.Namespace) -> int:
    buyer = session.signer(args.signer)
    key = args.idempotency_key or f"cli-{secrets.token_hex(12)}"
    params = {
        "provider_id": args.provider_id,
        "kwh_amount": wire_kwh(args.kwh),
        "max_price_per_kwh": wire_price(args.max_price),
        "idempotency_key": key,
    }
    try:
        purchase = session.call("energy.purchaseEnergy", params, buyer)
    except Unreachable as exc:
        if exc.sent:
            exc.hints.append(
                f"to retry without buying twice, run the same command with --idempotency-key {key}"
            )
        raise
    if session.json:
        session.print_json(purchase)
        return OK
    emit(details([*_purchase_details(purchase), ("idempotency key", key)]))
    note(
        f"the cost is held in escrow; settle now with "
        f"`settle {purchase['transaction_id']} --as {args.signer}`, "
        "or it settles by itself after the dispute window"
    )
    return OK


def cmd_purchase(session: Session, args: argparse.Namespace) -> int:
    purchase = session.call("energy.getPurchase", {"transaction_id": args.transaction_id})
    return session.show(purchase, lambda p: details(_purchase_details(p)))
