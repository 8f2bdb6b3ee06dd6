"""The marketplace from the command line: keys, accounts, trading, receipts.

::

    python -m chalicelib.cli.market keys new alice.theblock
    python -m chalicelib.cli.market account create alice.theblock
    python -m chalicelib.cli.market offers --energy-type solar --max-price 0.10
    python -m chalicelib.cli.market buy energy-0x9c1ffbe03db22a35 10 --max-price 0.10 \\
        --as bob.theblock

Every command is one or a few JSON-RPC calls (chalicelib.client signs them
with a key kept in the keys directory); lists print as plain-text tables,
``--json`` prints the JSON-RPC result instead. Amounts are typed and shown
in BLOCK and kWh, exactly: the micro-BLOCK and Wh of the API, as decimals.

Exit status: 0 done; 1 the marketplace refused the call (the reason is on
stderr) or an operation failed; 2 bad usage, an unknown key, or the
marketplace could not be reached. See docs/cli.md.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import os
import secrets
import stat
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import simplejson
from nacl.signing import SigningKey

from chalicelib.cli import receipts as receipts_cli
from chalicelib.domain import signing, units
from chalicelib.domain.accounts import is_valid_account_name
from chalicelib.domain.readings import signed_payload
from energy_client.rpc_client import MarketplaceClient, RpcError, Signer, http_transport

PROG: Final = "python -m chalicelib.cli.market"
DEFAULT_URL: Final = "http://127.0.0.1:8000/rpc"
DEFAULT_KEYS: Final = "~/.energy-market/keys"
URL_ENV: Final = "ENERGY_MARKET_URL"
KEYS_ENV: Final = "ENERGY_MARKET_KEYS"
KEY_SUFFIX: Final = ".key"
ENERGY_TYPES: Final = ("solar", "wind", "hydro", "battery")
MAX_PAGE: Final = 100  # the largest page any listing method gives

OK, FAILED, USAGE = 0, 1, 2

ClientFactory = Callable[[str], MarketplaceClient]


# -- errors -------------------------------------------------------------------------


class CliError(Exception):
    """An expected failure: printed as ``error: <message>`` (and hints), no traceback."""

    def __init__(self, message: str, status: int = FAILED, hints: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.hints = list(hints)


class Unreachable(CliError):
    """The marketplace did not answer (refused, timed out, not JSON-RPC)."""

    def __init__(self, url: str, problem: object, *, sent: bool) -> None:
        hints = [
            f"is the marketplace running? `make run` serves it at {DEFAULT_URL}",
            f"elsewhere: pass --url (or set {URL_ENV}) to its JSON-RPC endpoint",
        ]
        super().__init__(f"cannot reach the marketplace at {url}: {problem}", USAGE, hints)
        self.sent = sent  # the request may have arrived even though no answer did


# -- units: what the user types, what the tables show ----------------------------------------


def _plain(number: Decimal) -> str:
    return format(number, "f")


def block(micro_block: Any) -> str:
    """Integer micro-BLOCK -> exact BLOCK: ``900000`` -> ``0.9``."""
    return _plain(units.block_from_micro(int(micro_block)))


def kwh(wh: Any) -> str:
    """Integer Wh -> exact kWh: ``27750`` -> ``27.75``."""
    return _plain(units.kwh_from_wh(int(wh)))


def signed_block(micro_block: int, kind: str) -> str:
    """A ledger amount with the direction its kind gives it."""
    sign = {"deposit": "+", "unstake": "+", "sale": "+"}.get(
        kind, "-" if kind in {"withdrawal", "stake", "purchase"} else ""
    )
    return sign + block(micro_block)


def when(ms: Any) -> str:
    """Unix milliseconds -> ``2026-01-01T00:30:00Z``."""
    if ms is None:
        return "-"
    moment = datetime.fromtimestamp(int(ms) // 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def when_seconds(seconds: Any) -> str:
    return "-" if seconds is None else when(int(seconds) * 1000)


def interval(start_ms: Any, end_ms: Any) -> str:
    start, end = when(start_ms), when(end_ms)
    if start[:11] == end[:11]:  # the same day: the end's time is enough
        return f"{start} - {end[11:]}"
    return f"{start} - {end}"


AGE_UNITS: Final = (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1))


def age(seconds: Any) -> str:
    """A duration in its largest unit and the next: ``5400`` -> ``1h 30m``, ``45`` -> ``45s``."""
    left = max(0, int(seconds))
    for (unit, size), (next_unit, next_size) in itertools.pairwise(AGE_UNITS):
        if left >= size:
            return f"{left // size}{unit} {left % size // next_size}{next_unit}"
    return f"{left}s"


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


def _wire_kwh(wh: int) -> str:
    return kwh(wh)


def _wire_price(micro_block_per_kwh: int) -> str:
    return block(micro_block_per_kwh)


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


# -- tables ---------------------------------------------------------------------------

LEFT, RIGHT = False, True


def table(columns: Sequence[tuple[str, bool]], rows: Iterable[Sequence[object]]) -> str:
    """Plain-text columns, one header line and a rule; numbers right-aligned."""
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [len(header) for header, _ in columns]
    for row in cells:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]

    def line(values: Sequence[str]) -> str:
        padded = (
            value.rjust(width) if right else value.ljust(width)
            for value, width, (_, right) in zip(values, widths, columns, strict=True)
        )
        return "  ".join(padded).rstrip()

    lines = [line([header for header, _ in columns]), line(["-" * width for width in widths])]
    lines.extend(line(row) for row in cells)
    return "\n".join(lines)


def details(pairs: Sequence[tuple[str, object]]) -> str:
    """``label  value`` lines with the values in one column."""
    width = max(len(label) for label, _ in pairs)
    return "\n".join(f"{label.ljust(width)}  {value}".rstrip() for label, value in pairs)


def emit(text: str = "") -> None:
    print(text)


def note(text: str) -> None:
    print(f"note: {text}", file=sys.stderr)


def dumps(value: Any) -> str:
    return simplejson.dumps(value, use_decimal=True, indent=2)


# -- keys ---------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyStore:
    """Ed25519 keys as files ``<directory>/<name>.key``: the 32-byte seed in hex, mode 0600.

    The format of ``.local/operator.key`` (written by ``make run``) and of the
    owner key file ``python -m iot.provision`` reads.
    """

    directory: Path

    def path(self, name: str) -> Path:
        return self.directory / f"{name}{KEY_SUFFIX}"

    def names(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return sorted(p.name[: -len(KEY_SUFFIX)] for p in self.directory.glob(f"*{KEY_SUFFIX}"))

    def create(self, name: str, key: SigningKey) -> Path:
        path = self.path(name)
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError as exc:
            raise CliError(
                f"a key named {name!r} already exists ({path}); not overwriting it",
                hints=["pick another name, or move the old key away first"],
            ) from exc
        except OSError as exc:
            raise CliError(f"cannot write {path}: {exc.strerror}") from exc
        with os.fdopen(descriptor, "w", encoding="ascii") as key_file:
            key_file.write(bytes(key).hex() + "\n")
        return path

    def load(self, name: str) -> SigningKey:
        path = self.path(name)
        try:
            text = path.read_text(encoding="ascii")
            mode = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError as exc:
            if name == "operator":
                make = "import the marketplace's operator key: with `make run`, "
                first = f"{make}`keys import operator --seed-file .local/operator.key`"
            else:
                first = (
                    f"create one with `keys new {name}`, or bring one with "
                    f"`keys import {name} --seed-file FILE`"
                )
            raise CliError(
                f"no key named {name!r} in {self.directory}",
                USAGE,
                [
                    first,
                    f"`keys list` shows the keys in {self.directory} "
                    f"(elsewhere: --keys DIR or {KEYS_ENV})",
                ],
            ) from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise CliError(f"cannot read the key {path}: {exc}", USAGE) from exc
        if mode & 0o077:
            note(f"{path} can be read by other users (mode {mode:04o}); chmod 600 it")
        return SigningKey(parse_seed(text, str(path)))

    def signer(self, name: str) -> Signer:
        return Signer(name, self.load(name))


def parse_seed(text: str, where: str) -> bytes:
    """A 32-byte Ed25519 seed written as 64 hex digits (optional 0x, surrounding space)."""
    seed_hex = text.strip()
    if signing.is_public_key_hex(seed_hex):  # the same shape: 64 hex digits
        return bytes.fromhex(signing.normalise_hex(seed_hex))
    raise CliError(f"{where} does not hold an Ed25519 seed (64 hex digits)", USAGE)


# -- the session: one client, one key store ---------------------------------------------------


def http_client(url: str) -> MarketplaceClient:
    """The client over HTTP; the marketplace id is fetched before the first signed call."""
    try:
        send = http_transport(url)
    except ValueError as exc:
        raise CliError(f"--url: {exc}", USAGE) from exc

    def guarded(body: bytes) -> bytes | None:
        try:
            return send(body)
        except (OSError, http.client.HTTPException) as exc:
            problem = getattr(exc, "reason", None) or exc
            refused = isinstance(problem, ConnectionRefusedError)
            raise Unreachable(url, problem, sent=not refused) from exc

    return MarketplaceClient(guarded, marketplace_id="")


@dataclass
class Session:
    url: str
    keys: KeyStore
    json: bool
    factory: ClientFactory
    _client: MarketplaceClient | None = field(default=None, repr=False)

    @property
    def client(self) -> MarketplaceClient:
        if self._client is None:
            self._client = self.factory(self.url)
        return self._client

    def call(
        self, method: str, params: Mapping[str, Any] | None = None, signer: Signer | None = None
    ) -> Any:
        client = self.client
        if signer is not None and not client.marketplace_id:
            client.marketplace_id = self._call(client, "energy.getMarketInfo", None, None)[
                "marketplace_id"
            ]
        return self._call(client, method, params, signer)

    def _call(
        self,
        client: MarketplaceClient,
        method: str,
        params: Mapping[str, Any] | None,
        signer: Signer | None,
    ) -> Any:
        try:
            return client.call(method, params, signer)
        except Unreachable as exc:
            if signer is not None and exc.sent:
                exc.hints.append(
                    f"{method} may have reached the marketplace: check before repeating it"
                )
            raise
        except (ValueError, KeyError, TypeError) as exc:  # not JSON, or not JSON-RPC
            raise CliError(
                f"{self.url} did not answer {method} with a JSON-RPC response",
                USAGE,
                [f"is {self.url} the marketplace's JSON-RPC endpoint (it ends in /rpc)?"],
            ) from exc

    def signer(self, name: str) -> Signer:
        return self.keys.signer(name)

    def pages(
        self,
        method: str,
        params: Mapping[str, Any],
        items: str,
        *,
        limit: int,
        every: bool,
    ) -> dict[str, Any]:
        """Pages of a listing merged into one result: ``limit`` items, or with
        ``every`` all of them, ``limit`` a page.

        A page may be short while the listing goes on (selective filters), so
        it keeps reading until it has ``limit`` items or the cursor ends.
        """
        first: dict[str, Any] = dict(self.call(method, {**params, "limit": limit}))
        found = list(first[items])
        cursor = first["next_cursor"]
        while cursor is not None and (every or len(found) < limit):
            size = limit if every else limit - len(found)
            page = self.call(method, {**params, "limit": size, "cursor": cursor})
            found.extend(page[items])
            cursor = page["next_cursor"]
        return first | {items: found, "next_cursor": cursor}

    def print_json(self, result: Any) -> None:
        emit(dumps(result))

    def show(self, result: Any, as_text: Callable[[Any], str]) -> int:
        """Print a result: its JSON with --json, else ``as_text`` of it."""
        if self.json:
            self.print_json(result)
        else:
            emit(as_text(result))
        return OK


def _more(what: str, cursor: str | None) -> None:
    if cursor is not None:
        note(f"there are more {what}: --all lists them all")


# -- keys commands ---------------------------------------------------------------------


def cmd_keys_new(session: Session, args: argparse.Namespace) -> int:
    key = SigningKey.generate()
    path = session.keys.create(args.name, key)
    public_key = bytes(key.verify_key).hex()
    if session.json:
        session.print_json({"name": args.name, "public_key": public_key, "path": str(path)})
        return OK
    emit(details([("key", args.name), ("public key", public_key), ("file", f"{path} (0600)")]))
    note(f"keep {path} safe and backed up: it is the only key that signs as {args.name}")
    return OK


def cmd_keys_import(session: Session, args: argparse.Namespace) -> int:
    source = args.seed_file
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read {source}: {getattr(exc, 'strerror', None) or exc}") from exc
    key = SigningKey(parse_seed(text, "standard input" if source == "-" else source))
    path = session.keys.create(args.name, key)
    public_key = bytes(key.verify_key).hex()
    if session.json:
        session.print_json({"name": args.name, "public_key": public_key, "path": str(path)})
        return OK
    emit(details([("key", args.name), ("public key", public_key), ("file", f"{path} (0600)")]))
    return OK


def cmd_keys_list(session: Session, args: argparse.Namespace) -> int:
    rows: list[dict[str, str]] = []
    for name in session.keys.names():
        path = session.keys.path(name)
        try:
            public_key = bytes(SigningKey(parse_seed(path.read_text("ascii"), "")).verify_key).hex()
        except (CliError, OSError, UnicodeDecodeError):
            public_key = "(unreadable: not a hex Ed25519 seed)"
        rows.append({"name": name, "public_key": public_key, "path": str(path)})
    if session.json:
        session.print_json(rows)
        return OK
    if not rows:
        emit(f"no keys in {session.keys.directory} (create one with `keys new NAME`)")
        return OK
    emit(table([("KEY", LEFT), ("PUBLIC KEY", LEFT)], ((r["name"], r["public_key"]) for r in rows)))
    return OK


def cmd_keys_show(session: Session, args: argparse.Namespace) -> int:
    public_key = bytes(session.keys.load(args.name).verify_key).hex()
    if session.json:
        path = str(session.keys.path(args.name))
        session.print_json({"name": args.name, "public_key": public_key, "path": path})
    else:
        emit(public_key)  # alone, so that $(... keys show NAME) is the key
    return OK


# -- market and accounts ------------------------------------------------------------------


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
    _more("entries", result["next_cursor"])
    return OK


def cmd_deposit(session: Session, args: argparse.Namespace) -> int:
    operator = session.signer(args.signer)
    params = {
        "account": args.account,
        "amount_micro_block": args.amount,
        "chain_tx": args.chain_tx,
    }
    result = session.call("energy.deposit", params, operator)
    if session.json:
        session.print_json(result)
        return OK
    emit(f"deposited {block(args.amount)} BLOCK to {args.account} (chain tx {args.chain_tx})")
    emit(f"balance of {result['account']}: {block(result['balance'])} BLOCK")
    return OK


def cmd_withdraw(session: Session, args: argparse.Namespace) -> int:
    signer = session.signer(args.signer)
    params = {"amount_micro_block": args.amount, "destination": args.to}
    result = session.call("energy.withdraw", params, signer)
    if session.json:
        session.print_json(result)
        return OK
    emit(f"withdrew {block(args.amount)} BLOCK from {args.signer} to {args.to}")
    emit(f"balance of {result['account']}: {block(result['balance'])} BLOCK")
    return OK


# -- providers, meters and offers ---------------------------------------------------------------


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
        "capacity_kwh": _wire_kwh(args.capacity_kwh),
        "price_per_kwh": _wire_price(args.price),
        "stake": args.stake,
        "meter_address": args.meter_address,
        "meter_public_key": meter_public_key,
    }
    provider = session.call("energy.registerProvider", params, owner)
    return session.show(provider, _provider_details)


def cmd_provider_show(session: Session, args: argparse.Namespace) -> int:
    provider = session.call("energy.getProvider", {"provider_id": args.provider_id})
    return session.show(provider, _provider_details)


def _filters(args: argparse.Namespace, *, min_field: str, min_value: int | None) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if args.energy_type is not None:
        params["energy_type"] = args.energy_type
    if args.jurisdiction is not None:
        params["jurisdiction"] = args.jurisdiction
    if args.max_price is not None:
        params["max_price"] = _wire_price(args.max_price)
    if min_value is not None:
        params[min_field] = _wire_kwh(min_value)
    return params


def cmd_providers(session: Session, args: argparse.Namespace) -> int:
    params = _filters(args, min_field="min_capacity", min_value=args.min_capacity)
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
        ("PROVIDER", LEFT),
        ("NAME", LEFT),
        ("TYPE", LEFT),
        ("JURISDICTION", LEFT),
        ("PRICE BLOCK/kWh", RIGHT),
        ("CAPACITY kW", RIGHT),
        ("ON SALE kWh", RIGHT),
        ("STATUS", LEFT),
    ]
    rows = (
        (
            p["provider_id"],
            p["display_name"],
            p["energy_type"],
            p["jurisdiction"],
            block(p["price_micro_block_per_kwh"]),
            kwh(p["capacity_wh"]),
            kwh(p["available_wh"]),
            p["status"],
        )
        for p in providers
    )
    emit(table(columns, rows))
    _more("providers", result["next_cursor"])
    return OK


def cmd_offers(session: Session, args: argparse.Namespace) -> int:
    params = _filters(args, min_field="min_kwh", min_value=args.min_kwh)
    result = session.pages("energy.getOffers", params, "offers", limit=args.limit, every=args.all)
    if session.json:
        session.print_json(result)
        return OK
    offers = result["offers"]
    if not offers:
        emit("no energy on sale matches")
        _more("providers to look through", result["next_cursor"])
        return OK
    columns = [
        ("PROVIDER", LEFT),
        ("NAME", LEFT),
        ("TYPE", LEFT),
        ("JURISDICTION", LEFT),
        ("PRICE BLOCK/kWh", RIGHT),
        ("AVAILABLE kWh", RIGHT),
        ("OLDEST CREDIT", RIGHT),
    ]
    rows = (
        (
            o["provider_id"],
            o["display_name"],
            o["energy_type"],
            o["jurisdiction"],
            block(o["price_micro_block_per_kwh"]),
            kwh(o["available_wh"]),
            age(o["oldest_credit_age_seconds"]),
        )
        for o in offers
    )
    emit(table(columns, rows))
    _more("offers", result["next_cursor"])
    return OK


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


# -- trading ------------------------------------------------------------------------------


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
        "kwh_amount": _wire_kwh(args.kwh),
        "max_price_per_kwh": _wire_price(args.max_price),
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


def cmd_purchase(session: Session, args: argparse.Namespace) -> int:
    purchase = session.call("energy.getPurchase", {"transaction_id": args.transaction_id})
    return session.show(purchase, lambda p: details(_purchase_details(p)))


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
                    f"{_plain(Decimal(str(carbon['total_kg_co2'])))} kg CO2 "
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
        _more("holdings", p["holdings_next_cursor"])
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
        _more("settled purchases", p["purchase_history_next_cursor"])
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


# -- receipts -----------------------------------------------------------------------------


def cmd_receipts(session: Session, args: argparse.Namespace) -> int:
    if args.receipts_command == "export":
        return cmd_receipts_export(session, args)
    if args.receipts_command == "verify":
        return receipts_cli.run_verify(
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
    _more("receipts", result["next_cursor"])
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
        export = receipts_cli.export_receipts(session.client, providers)
    except receipts_cli.ExportError as exc:
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


# -- errors from the marketplace ---------------------------------------------------------------

# What to try next, by data.reason.
HINTS: Final[Mapping[str, str]] = {
    "not_authenticated": (
        "the key does not match the account's key on this marketplace: was the account "
        "created with this key (`account create NAME`)? For the operator, import the "
        "marketplace's operator key (make run writes .local/operator.key)"
    ),
    "not_authorised": "this account may not do this (not the owner, buyer or operator)",
    "stale_request": "this computer's clock is off: set it right (NTP) and try again",
    "replayed_request": "this exact request was sent before; nothing was changed now",
    "concurrent_update": "other requests changed the same records; trying again is safe",
    "insufficient_balance": "deposit more BLOCK, or ask for less",
    "price_above_limit": "raise --max-price, or pick a cheaper provider (`offers`)",
    "insufficient_energy": "ask for less, or pick a provider with more on sale (`offers`)",
    "purchase_too_large": "buy less in one purchase (at most 90 credits): split it",
}


def describe_data(key: str, value: Any) -> tuple[str, str]:
    """A ``data`` field for people: micro-BLOCK in BLOCK, Wh in kWh, ms as a time."""
    if isinstance(value, int) and not isinstance(value, bool):
        for suffix, show, unit in (
            ("_micro_block_per_kwh", block, "BLOCK/kWh"),
            ("_micro_block", block, "BLOCK"),
            ("_wh", kwh, "kWh"),
        ):
            if key.endswith(suffix):
                return key[: -len(suffix)], f"{show(value)} {unit}"
        if key.endswith("_ms"):
            return key[:-3], when(value)
        if key == "server_time":
            return key, f"{when_seconds(value)} (this computer: {when_seconds(time.time())})"
    return key, value if isinstance(value, str) else simplejson.dumps(value, use_decimal=True)


def report_rpc_error(exc: RpcError) -> None:
    label = exc.reason or str(exc.code)
    print(f"error: {label}: {exc.message}", file=sys.stderr)
    for key, value in exc.data.items():
        if key == "reason":
            continue
        if key == "errors" and isinstance(value, list):
            for problem in value:
                if isinstance(problem, Mapping):
                    print(f"  {problem.get('field')}: {problem.get('message')}", file=sys.stderr)
            continue
        label, shown = describe_data(key, value)
        print(f"  {label}: {shown}", file=sys.stderr)
    hint = HINTS.get(exc.reason or "")
    if hint:
        print(f"hint: {hint}", file=sys.stderr)


def report_error(exc: CliError) -> None:
    print(f"error: {exc}", file=sys.stderr)
    for hint in exc.hints:
        print(f"hint: {hint}", file=sys.stderr)


# -- the command line ---------------------------------------------------------------------


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
        description="Use the energy marketplace: keys, accounts, offers, purchases, receipts.",
        parents=[_options(for_subcommand=False)],
        epilog="Exit status: 0 done, 1 refused or failed, 2 bad usage, unknown key or "
        "marketplace unreachable. docs/cli.md has a walkthrough.",
    )
    commands = main_parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        group: Any, name: str, handler: Callable[[Session, argparse.Namespace], int], help: str
    ) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = group.add_parser(
            name, help=help, description=help, parents=[common]
        )
        sub.set_defaults(handler=handler)
        return sub

    def signer_option(sub: argparse.ArgumentParser, default: str | None = None) -> None:
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

    # keys
    keys = commands.add_parser("keys", help="Ed25519 keys in the keys directory")
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")
    sub = command(key_commands, "new", cmd_keys_new, "generate a key (saved with mode 0600)")
    sub.add_argument("name", type=key_name, metavar="NAME", help="the account it will sign for")
    sub = command(key_commands, "import", cmd_keys_import, "save an existing seed as a key")
    sub.add_argument("name", type=key_name, metavar="NAME")
    sub.add_argument(
        "--seed-file",
        required=True,
        metavar="FILE",
        help="a file holding the 32-byte seed in hex, e.g. .local/operator.key (- for stdin)",
    )
    command(key_commands, "list", cmd_keys_list, "the keys and their public keys")
    sub = command(key_commands, "show", cmd_keys_show, "print a key's public key")
    sub.add_argument("name", type=key_name, metavar="NAME")

    command(commands, "info", cmd_info, "the marketplace: id, keys, minimum stake, fee")

    # accounts and money
    account = commands.add_parser("account", help="create and look at accounts")
    account_commands = account.add_subparsers(
        dest="account_command", required=True, metavar="COMMAND"
    )
    sub = command(account_commands, "create", cmd_account_create, "open an account with its key")
    sub.add_argument("name", type=key_name, metavar="NAME", help="the account, and its key's name")
    sub = command(account_commands, "show", cmd_account_show, "an account's balance and roles")
    sub.add_argument("name", type=account_name, metavar="NAME")
    sub = command(account_commands, "history", cmd_account_history, "an account's ledger")
    sub.add_argument("name", type=account_name, metavar="NAME")
    _paging(sub, "entries")

    sub = command(commands, "deposit", cmd_deposit, "credit BLOCK that arrived on chain (operator)")
    sub.add_argument("account", type=account_name, metavar="ACCOUNT")
    sub.add_argument("amount", type=BLOCK_AMOUNT, metavar="AMOUNT", help="BLOCK, e.g. 12000.5")
    sub.add_argument("--chain-tx", required=True, metavar="TX", help="the chain transaction")
    signer_option(sub, default="operator")

    sub = command(commands, "withdraw", cmd_withdraw, "take BLOCK out to a chain address")
    sub.add_argument("amount", type=BLOCK_AMOUNT, metavar="AMOUNT", help="BLOCK")
    sub.add_argument("--to", required=True, metavar="ADDRESS", help="the chain address to pay")
    signer_option(sub)

    # providers and meters
    provider = commands.add_parser("provider", help="register and look at a provider")
    provider_commands = provider.add_subparsers(
        dest="provider_command", required=True, metavar="COMMAND"
    )
    sub = command(provider_commands, "register", cmd_provider_register, "register and stake")
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
    meter_key.add_argument("--meter-public-key", metavar="HEX", type=_public_key)
    meter_key.add_argument("--meter-key", metavar="KEY", type=key_name, help="a key in DIR")
    sub = command(provider_commands, "show", cmd_provider_show, "one provider")
    sub.add_argument("provider_id", metavar="PROVIDER_ID")

    meter = commands.add_parser("meter", help="a meter's readings")
    meter_commands = meter.add_subparsers(dest="meter_command", required=True, metavar="COMMAND")
    sub = command(
        meter_commands, "submit", cmd_meter_submit, "sign a cumulative reading with a meter key"
    )
    sub.add_argument("provider_id", metavar="PROVIDER_ID")
    sub.add_argument("meter_address", metavar="METER_ADDRESS")
    sub.add_argument("kwh", type=KWH_FILTER, metavar="KWH", help="the meter's cumulative counter")
    sub.add_argument("--meter-key", required=True, type=key_name, metavar="KEY")
    sub.add_argument(
        "--at", type=unix_seconds, metavar="SECONDS", help="when it was read (default: now)"
    )
    sub = command(meter_commands, "show", cmd_meter_show, "a meter's state and refusals")
    sub.add_argument("meter_address", metavar="METER_ADDRESS")

    sub = command(commands, "providers", cmd_providers, "providers, cheapest first")
    _market_filters(sub)
    sub.add_argument("--min-capacity", type=KWH_FILTER, metavar="KW")
    sub.add_argument(
        "--include-inactive", action="store_true", help="also paused and suspended ones"
    )
    _paging(sub, "providers")

    sub = command(commands, "offers", cmd_offers, "energy on sale now, cheapest first")
    _market_filters(sub)
    sub.add_argument("--min-kwh", type=KWH_FILTER, metavar="KWH", help="at least this on sale")
    _paging(sub, "offers")

    # trading
    sub = command(commands, "buy", cmd_buy, "buy energy: paid into escrow until settled")
    sub.add_argument("provider_id", metavar="PROVIDER_ID")
    sub.add_argument("kwh", type=KWH_AMOUNT, metavar="KWH")
    sub.add_argument("--max-price", required=True, type=PRICE, metavar="BLOCK_PER_KWH")
    sub.add_argument(
        "--idempotency-key",
        metavar="K",
        help="8-64 of A-Z a-z 0-9 _ -: the same key never buys twice (default: a new one)",
    )
    signer_option(sub)

    sub = command(commands, "settle", cmd_settle, "settle a purchase now (the buyer)")
    sub.add_argument("transaction_id", metavar="TRANSACTION_ID")
    signer_option(sub)

    sub = command(commands, "purchase", cmd_purchase, "one purchase")
    sub.add_argument("transaction_id", metavar="TRANSACTION_ID")

    sub = command(commands, "portfolio", cmd_portfolio, "balance, purchases, holdings, carbon")
    sub.add_argument("name", type=account_name, metavar="NAME")

    sub = command(commands, "retire", cmd_retire, "retire held credits for a beneficiary")
    sub.add_argument("credit_ids", nargs="+", metavar="CREDIT_ID")
    sub.add_argument("--beneficiary", required=True, metavar="B")
    sub.add_argument("--period-start", required=True, type=day, metavar="YYYY-MM-DD")
    sub.add_argument("--period-end", required=True, type=day, metavar="YYYY-MM-DD", help="included")
    signer_option(sub)

    # receipts: a listing, or export / verify
    sub = command(commands, "receipts", cmd_receipts, "settlement receipts; export, verify")
    whose = sub.add_mutually_exclusive_group()
    whose.add_argument("--provider", metavar="PROVIDER_ID", help="a provider's chain")
    whose.add_argument("--buyer", type=account_name, metavar="NAME", help="a buyer's receipts")
    _paging(sub, "receipts")
    receipt_commands = sub.add_subparsers(dest="receipts_command", metavar="[export|verify]")
    export = receipt_commands.add_parser(
        "export", parents=[common], help="write chains to an export file (receipts.py format)"
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
        "verify", parents=[common], help="check an export offline (exit 1 when broken)"
    )
    verify.add_argument("file", metavar="FILE")
    verify.add_argument(
        "--public-key",
        metavar="HEX",
        help="the marketplace's receipt key (`info` shows it; default: the export's own)",
    )
    return main_parser


def _public_key(text: str) -> str:
    if not signing.is_public_key_hex(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not an Ed25519 public key (64 hex digits)")
    return signing.normalise_hex(text)


def _market_filters(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--energy-type", choices=ENERGY_TYPES)
    sub.add_argument("--jurisdiction", metavar="J", help="exactly this one: US_CA, DE_BY, ...")
    sub.add_argument("--max-price", type=PRICE, metavar="BLOCK_PER_KWH", help="at most this")


def _paging(sub: argparse.ArgumentParser, what: str) -> None:
    sub.add_argument(
        "--limit",
        type=page_limit,
        default=50,
        metavar="N",
        help=f"{what} to show, 1-100 (default 50; with --all, {what} a page)",
    )
    sub.add_argument("--all", action="store_true", help="read every page (follow the cursors)")


def main(argv: Sequence[str] | None = None, client_factory: ClientFactory | None = None) -> int:
    """Run one command; its exit status. ``client_factory(url)`` replaces the HTTP client."""
    args = parser().parse_args(argv)  # bad usage: SystemExit(2), as argparse does
    url = args.url or os.environ.get(URL_ENV) or DEFAULT_URL
    keys = Path(args.keys or os.environ.get(KEYS_ENV) or DEFAULT_KEYS).expanduser()
    session = Session(url, KeyStore(keys), bool(args.json), client_factory or http_client)
    handler: Callable[[Session, argparse.Namespace], int] = args.handler
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


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # the reader went away (| head): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(FAILED)
