"""``info``, ``account``, ``deposit`` and ``withdraw``: the market, accounts and their money."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from energy_client.cli.arguments import (
    BLOCK_AMOUNT,
    Commands,
    account_name,
    key_name,
    paging,
    signer_option,
)
from energy_client.cli.display import (
    LEFT,
    RIGHT,
    age,
    block,
    details,
    emit,
    signed_block,
    table,
    when_seconds,
)
from energy_client.cli.errors import OK
from energy_client.cli.session import Session, more


def add_commands(commands: Commands) -> None:
    commands.add("info", cmd_info, "the marketplace: id, keys, minimum stake, fee")

    account = commands.group("account", "create and look at accounts")
    sub = account.add("create", cmd_account_create, "open an account with its key")
    sub.add_argument("name", type=key_name, metavar="NAME", help="the account, and its key's name")
    sub = account.add("show", cmd_account_show, "an account's balance and roles")
    sub.add_argument("name", type=account_name, metavar="NAME")
    sub = account.add("history", cmd_account_history, "an account's ledger")
    sub.add_argument("name", type=account_name, metavar="NAME")
    paging(sub, "entries")

    sub = commands.add("deposit", cmd_deposit, "credit BLOCK that arrived on chain (operator)")
    sub.add_argument("account", type=account_name, metavar="ACCOUNT")
    sub.add_argument("amount", type=BLOCK_AMOUNT, metavar="AMOUNT", help="BLOCK, e.g. 12000.5")
    sub.add_argument("--chain-tx", required=True, metavar="TX", help="the chain transaction")
    signer_option(sub, default="operator")

    sub = commands.add("withdraw", cmd_withdraw, "take BLOCK out to a chain address")
    sub.add_argument("amount", type=BLOCK_AMOUNT, metavar="AMOUNT", help="BLOCK")
    sub.add_argument("--to", required=True, metavar="ADDRESS", help="the chain address to pay")
    signer_option(sub)


def cmd_info(session: Session, args: argparse.Namespace) -> int:
    info = session.call("energy.getMarketInfo")
    if session.json:
        session.print_json(info)
        return OK
    emit(
        details(
            [
                ("marketplace", info["marketplace_id"]),
                ("url", session.url),
                ("api version", info["api_version"]),
                ("operator key", info["operator_public_key"] or "(none configured)"),
                ("receipt key", info["receipt_public_key"]),
                ("minimum stake", f"{block(info['min_stake'])} BLOCK"),
                ("market fee", f"{Decimal(info['market_fee_bps']) / 100}%"),
                ("dispute window", age(int(info["dispute_window_ms"]) // 1000)),
                ("energy types", ", ".join(info["energy_types"])),
                ("signing window", f"{info['auth_window_seconds']} s"),
            ]
        )
    )
    return OK


def _account_details(account: Mapping[str, Any]) -> str:
    return details(
        [
            ("account", account["name"]),
            ("public key", account["public_key"]),
            ("roles", ", ".join(account["roles"])),
            ("balance", f"{block(account['balance'])} BLOCK"),
            ("stake", f"{block(account['stake'])} BLOCK"),
            ("providers", ", ".join(account["providers"]) or "-"),
            ("created", when_seconds(account["created_at"])),
        ]
    )


def cmd_account_create(session: Session, args: argparse.Namespace) -> int:
    signer = session.signer(args.name)
    params = {"name": args.name, "public_key": signer.public_key}
    account = session.call("energy.createAccount", params, signer)
    return session.show(account, _account_details)


def cmd_account_show(session: Session, args: argparse.Namespace) -> int:
    account = session.call("energy.getAccount", {"name": args.name})
    return session.show(account, _account_details)


def cmd_account_history(session: Session, args: argparse.Namespace) -> int:
    result = session.pages(
        "energy.getLedgerEntries",
        {"account": args.name},
        "entries",
        limit=args.limit,
        every=args.all,
    )
    if session.json:
        session.print_json(result)
        return OK
    entries = result["entries"]
    if not entries:
        emit(f"no ledger entries for {args.name}")
        return OK
    columns = [
        ("AT", LEFT),
        ("KIND", LEFT),
        ("AMOUNT BLOCK", RIGHT),
        ("REFERENCE", LEFT),
        ("ENTRY", LEFT),
    ]
    rows = (
        (
            when_seconds(e["at"]),
            e["kind"],
            signed_block(int(e["amount_micro_block"]), e["kind"]),
            e["reference"],
            e["entry_id"],
        )
        for e in entries
    )
    emit(table(columns, rows))
    more("entries", result["next_cursor"])
    return OK


def cmd_deposit(session: Session, args: argparse.Namespace) -> int:
    operator = session.signer(args.signer)
    params = {
        "account": args.account,
        "amount_micro_block": args.amount,
        "chain_tx": args.chain_tx,
    }
    result = session.call("energy.deposit", params, operator)
    moved = f"deposited {block(args.amount)} BLOCK to {args.account} (chain tx {args.chain_tx})"
    return _show_balance_moved(session, result, moved)


def cmd_withdraw(session: Session, args: argparse.Namespace) -> int:
    signer = session.signer(args.signer)
    params = {"amount_micro_block": args.amount, "destination": args.to}
    result = session.call("energy.withdraw", params, signer)
    moved = f"withdrew {block(args.amount)} BLOCK from {args.signer} to {args.to}"
    return _show_balance_moved(session, result, moved)


def _show_balance_moved(session: Session, result: Mapping[str, Any], moved: str) -> int:
    """A deposit's or a withdrawal's result: what moved, then the balance it left."""
    return session.show(
        result, lambda r: f"{moved}\nbalance of {r['account']}: {block(r['balance'])} BLOCK"
    )
