"""``settle`` and ``receipts``: settling a purchase, and the receipt chains it adds to
(listed, exported, verified offline)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from energy_client import receipts as receipts_tool
from energy_client.cli.arguments import MAX_PAGE, Commands, account_name, paging, signer_option
from energy_client.cli.display import LEFT, RIGHT, block, details, dumps, emit, kwh, table, when
from energy_client.cli.errors import OK, USAGE, CliError
from energy_client.cli.session import Session, more


def add_commands(commands: Commands) -> None:
    sub = commands.add("settle", cmd_settle, "settle a purchase now (the buyer)")
    sub.add_argument("transaction_id", metavar="TRANSACTION_ID")
    signer_option(sub)

    # receipts: a listing, or export / verify
    sub = commands.add("receipts", cmd_receipts, "settlement receipts; export, verify")
    whose = sub.add_mutually_exclusive_group()
    whose.add_argument("--provider", metavar="PROVIDER_ID", help="a provider's chain")
    whose.add_argument("--buyer", type=account_name, metavar="NAME", help="a buyer's receipts")
    paging(sub, "receipts")
    receipt_commands = sub.add_subparsers(dest="receipts_command", metavar="[export|verify]")
    export = receipt_commands.add_parser(
        "export",
        parents=[commands.common],
        help="write chains to an export file (the format of python -m energy_client.receipts)",
    )
    export.add_argument(
        "--provider",
        dest="export_providers",
        action="append",
        metavar="PROVIDER_ID",
        help="a chain to export (repeat for more)",
    )
    export.add_argument(
        "--buyer",
        dest="export_buyer",
        type=account_name,
        metavar="NAME",
        help="export every chain holding one of this buyer's receipts",
    )
    export.add_argument("-o", "--output", metavar="FILE", help="write here, not to stdout")
    verify = receipt_commands.add_parser(
        "verify", parents=[commands.common], help="check an export offline (exit 1 when broken)"
    )
    verify.add_argument("file", metavar="FILE")
    verify.add_argument(
        "--public-key",
        metavar="HEX",
        help="the marketplace's receipt key (`info` shows it; default: the export's own)",
    )


def cmd_settle(session: Session, args: argparse.Namespace) -> int:
    buyer = session.signer(args.signer)
    result = session.call("energy.settle", {"transaction_id": args.transaction_id}, buyer)
    if session.json:
        session.print_json(result)
        return OK
    r = result["receipt"]
    status = "already settled" if result["already_settled"] else "settled"
    emit(
        details(
            [
                ("purchase", result["transaction_id"]),
                ("status", status),
                ("energy", f"{kwh(r['wh'])} kWh, now held by {r['buyer']}"),
                (
                    "paid",
                    f"{block(r['provider_amount_micro_block'])} BLOCK to {r['provider_owner']}",
                ),
                ("market fee", f"{block(r['fee_micro_block'])} BLOCK"),
                ("settled", f"{when(r['settled_at_ms'])} by {r['settled_by']}"),
                ("receipt", f"{r['chain']} #{r['sequence']}"),
                ("receipt hash", r["receipt_hash"]),
            ]
        )
    )
    return OK


def cmd_receipts(session: Session, args: argparse.Namespace) -> int:
    if args.receipts_command == "export":
        return cmd_receipts_export(session, args)
    if args.receipts_command == "verify":
        return receipts_tool.run_verify(
            argparse.Namespace(file=args.file, public_key=args.public_key)
        )
    if (args.provider is None) == (args.buyer is None):
        raise CliError(
            "give --provider ID or --buyer NAME (or use `receipts export` / `receipts verify`)",
            USAGE,
        )
    params = {"provider_id": args.provider} if args.provider else {"buyer": args.buyer}
    result = session.pages(
        "energy.getReceipts", params, "receipts", limit=args.limit, every=args.all
    )
    if session.json:
        session.print_json(result)
        return OK
    receipts = result["receipts"]
    if not receipts:
        emit(f"no receipts for {args.provider or args.buyer}")
        return OK
    party = ("BUYER", LEFT) if args.provider else ("PROVIDER", LEFT)
    columns = [
        ("SEQ", RIGHT),
        ("SETTLED AT", LEFT),
        ("TRANSACTION", LEFT),
        party,
        ("ENERGY kWh", RIGHT),
        ("COST BLOCK", RIGHT),
        ("FEE BLOCK", RIGHT),
        ("BY", LEFT),
        ("HASH", LEFT),
    ]
    rows = (
        (
            r["sequence"],
            when(r["settled_at_ms"]),
            r["transaction_id"],
            r["buyer"] if args.provider else r["chain"],
            kwh(r["wh"]),
            block(r["total_cost_micro_block"]),
            block(r["fee_micro_block"]),
            r["settled_by"],
            r["receipt_hash"][:16],
        )
        for r in receipts
    )
    emit(table(columns, rows))
    head = result.get("head")
    if head:
        emit(f"chain head: #{head['sequence']} {head['receipt_hash']}")
    more("receipts", result["next_cursor"])
    return OK


def cmd_receipts_export(session: Session, args: argparse.Namespace) -> int:
    providers = list(args.export_providers or [])
    if args.export_buyer:  # the chains the buyer's receipts belong to
        mine = session.pages(
            "energy.getReceipts",
            {"buyer": args.export_buyer},
            "receipts",
            limit=MAX_PAGE,
            every=True,
        )
        providers.extend(r["chain"] for r in mine["receipts"])
    if not providers:
        if args.export_buyer:
            raise CliError(f"{args.export_buyer} has no receipts to export")
        raise CliError("give --provider ID (repeat for more) or --buyer NAME", USAGE)
    try:
        export = receipts_tool.export_receipts(session.client, providers)
    except receipts_tool.ExportError as exc:
        raise CliError(f"the export failed: {exc}") from exc
    text = dumps(export) + "\n"
    if args.output:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise CliError(f"cannot write {args.output}: {exc.strerror}") from exc
    else:
        sys.stdout.write(text)
    print(
        f"exported {len(export['receipts'])} receipts of {len(export['heads'])} chains"
        + (f" to {args.output}" if args.output else ""),
        file=sys.stderr,
    )
    return OK
