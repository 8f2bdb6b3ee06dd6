"""What the user types: argparse types that turn text into exact wire values, and
the helpers the command groups add their commands with."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Final

from chalicelib.domain import signing, units
from chalicelib.domain.accounts import is_valid_account_name
from energy_client.cli import display
from energy_client.cli.session import Handler

ENERGY_TYPES: Final = ("solar", "wind", "hydro", "battery")
MAX_PAGE: Final = 100  # the largest page any listing method gives


def _amount(parse: Callable[[object, str], int], what: str, *, positive: bool) -> Any:
    """An argparse type: an exact decimal -> integer micro-units, or a usage error."""

    def convert(text: str) -> int:
        try:
            value = parse(text, what)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from exc
        if positive and value == 0:
            raise argparse.ArgumentTypeError(f"{text!r}: {what} must be more than 0")
        return value

    convert.__name__ = what  # argparse names the type in its messages
    return convert


BLOCK_AMOUNT = _amount(units.micro_block_from_block, "BLOCK amount", positive=True)
KWH_AMOUNT = _amount(units.wh_from_kwh, "kWh", positive=True)
KWH_FILTER = _amount(units.wh_from_kwh, "kWh", positive=False)
PRICE = _amount(units.price_from_block_per_kwh, "price in BLOCK/kWh", positive=False)
POSITIVE_PRICE = _amount(units.price_from_block_per_kwh, "price in BLOCK/kWh", positive=True)


def wire_kwh(wh: int) -> str:
    """Wh as the API's kWh string: exact, as typed."""
    return display.kwh(wh)


def wire_price(micro_block_per_kwh: int) -> str:
    """micro-BLOCK per kWh as the API's BLOCK/kWh string."""
    return display.block(micro_block_per_kwh)


def coordinate(limit: int, what: str) -> Any:
    def convert(text: str) -> str:
        try:
            units.micro_degrees(text, limit, what)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from exc
        return text.strip()

    convert.__name__ = what
    return convert


def page_limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_PAGE:
        raise argparse.ArgumentTypeError(f"{text!r}: the limit is a whole number from 1 to 100")
    return value


def account_name(text: str) -> str:
    if not is_valid_account_name(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an account name: 3-64 characters of a-z 0-9 . _ -, "
            "starting and ending with a letter or digit, no '..'"
        )
    return text


def key_name(text: str) -> str:
    """Keys are named after the account they sign for (``operator`` included)."""
    if not is_valid_account_name(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a key name: keys are named after their account "
            "(3-64 characters of a-z 0-9 . _ -, e.g. alice.theblock or operator)"
        )
    return text


def day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from exc


def unix_seconds(text: str) -> int:
    try:
        return units.milliseconds_from_seconds(text, "--at")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from exc


def day_start_ms(value: date) -> int:
    return int(datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp()) * 1000


def public_key(text: str) -> str:
    if not signing.is_public_key_hex(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not an Ed25519 public key (64 hex digits)")
    return signing.normalise_hex(text)


def market_filters(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--energy-type", choices=ENERGY_TYPES)
    sub.add_argument("--jurisdiction", metavar="J", help="exactly this one: US_CA, DE_BY, ...")
    sub.add_argument("--max-price", type=PRICE, metavar="BLOCK_PER_KWH", help="at most this")


def paging(sub: argparse.ArgumentParser, what: str) -> None:
    sub.add_argument(
        "--limit",
        type=page_limit,
        default=50,
        metavar="N",
        help=f"{what} to show, 1-100 (default 50; with --all, {what} a page)",
    )
    sub.add_argument("--all", action="store_true", help="read every page (follow the cursors)")


def filters(args: argparse.Namespace, *, min_field: str, min_value: int | None) -> dict[str, Any]:
    """The params of a market listing from --energy-type, --jurisdiction, --max-price."""
    params: dict[str, Any] = {}
    if args.energy_type is not None:
        params["energy_type"] = args.energy_type
    if args.jurisdiction is not None:
        params["jurisdiction"] = args.jurisdiction
    if args.max_price is not None:
        params["max_price"] = wire_price(args.max_price)
    if min_value is not None:
        params[min_field] = wire_kwh(min_value)
    return params


def signer_option(sub: argparse.ArgumentParser, default: str | None = None) -> None:
    """--as KEY: the account that signs the call."""
    sub.add_argument(
        "--as",
        dest="signer",
        metavar="KEY",
        type=key_name,
        required=default is None,
        default=default,
        help="the account that signs, by the name of its key"
        + (f" (default: {default})" if default else ""),
    )


@dataclass(frozen=True)
class Commands:
    """Where a command group adds its commands: argparse's subparsers, and the
    parent parser that gives every command --url, --keys and --json."""

    subparsers: Any  # argparse._SubParsersAction, private in typeshed
    common: argparse.ArgumentParser

    def add(self, name: str, handler: Handler, help: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = self.subparsers.add_parser(
            name, help=help, description=help, parents=[self.common]
        )
        sub.set_defaults(handler=handler)
        return sub

    def group(self, name: str, help: str) -> Commands:
        """``NAME COMMAND ...``: a command that has commands of its own."""
        parser = self.subparsers.add_parser(name, help=help)
        nested = parser.add_subparsers(dest=f"{name}_command", required=True, metavar="COMMAND")
        return Commands(nested, self.common)
