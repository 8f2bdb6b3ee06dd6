"""The command line put together: the options, every command group's commands, main()."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from energy_client.cli import (
    accounts,
    analytics,
    disputes,
    keys,
    live,
    meters,
    portfolio,
    providers,
    settlement,
    trading,
)
from energy_client.cli.arguments import Commands
from energy_client.cli.errors import FAILED, CliError, report_error, report_rpc_error
from energy_client.cli.session import (
    DEFAULT_KEYS,
    DEFAULT_URL,
    KEYS_ENV,
    URL_ENV,
    ClientFactory,
    Handler,
    KeyStore,
    Session,
    http_client,
)
from energy_client.rpc_client import RpcError

PROG: Final = "python -m energy_client"

# In this order in --help.
GROUPS: Final = (
    keys,
    accounts,
    providers,
    meters,
    trading,
    settlement,
    portfolio,
    disputes,
    analytics,
    live,
)


def _options(for_subcommand: bool) -> argparse.ArgumentParser:
    """--url, --keys and --json: before the command, or after it."""
    options = argparse.ArgumentParser(add_help=False)
    # After a command they must not reset what was given before it.
    default: dict[str, Any] = {"default": argparse.SUPPRESS} if for_subcommand else {}
    options.add_argument(
        "--url",
        metavar="URL",
        help=f"the JSON-RPC endpoint (default: ${URL_ENV} or {DEFAULT_URL})",
        **default,
    )
    options.add_argument(
        "--keys",
        metavar="DIR",
        help=f"the keys directory (default: ${KEYS_ENV} or {DEFAULT_KEYS})",
        **default,
    )
    options.add_argument(
        "--json",
        action="store_true",
        help="print the JSON-RPC result instead of tables",
        **default,
    )
    return options


def parser() -> argparse.ArgumentParser:
    common = _options(for_subcommand=True)
    main_parser = argparse.ArgumentParser(
        prog=PROG,
        description="Use the energy marketplace: keys, accounts, offers, purchases, receipts, "
        "disputes, the market's figures.",
        parents=[_options(for_subcommand=False)],
        epilog="Exit status: 0 done, 1 refused or failed, 2 bad usage, unknown key or "
        "marketplace unreachable. docs/cli.md has a walkthrough.",
    )
    commands = main_parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.add_commands(Commands(commands, common))
    return main_parser


def main(argv: Sequence[str] | None = None, client_factory: ClientFactory | None = None) -> int:
    """Run one command; its exit status. ``client_factory(url)`` replaces the HTTP client."""
    args = parser().parse_args(argv)  # bad usage: SystemExit(2), as argparse does
    url = args.url or os.environ.get(URL_ENV) or DEFAULT_URL
    keys = Path(args.keys or os.environ.get(KEYS_ENV) or DEFAULT_KEYS).expanduser()
    session = Session(url, KeyStore(keys), bool(args.json), client_factory or http_client)
    handler: Handler = args.handler
    try:
        return handler(session, args)
    except RpcError as exc:
        report_rpc_error(exc)
        return FAILED
    except CliError as exc:
        report_error(exc)
        return exc.status
    except (KeyError, TypeError, ValueError) as exc:
        print(f"error: the marketplace answered something unexpected ({exc!r})", file=sys.stderr)
        return FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
