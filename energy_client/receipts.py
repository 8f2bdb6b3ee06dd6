"""Export a marketplace's settlement receipts, and verify an export offline.

::

    python -m energy_client.receipts export --url http://127.0.0.1:8000/rpc \\
        --provider energy-0x9c1ffbe03db22a35 -o receipts.json
    python -m energy_client.receipts verify receipts.json --public-key <hex>

``verify`` needs no network and trusts nothing but the public key it is
given. Its exit status is 0 when every chain is intact, 1 when one is broken
and 2 when the file is not a readable export. The CLI's ``receipts export``
and ``receipts verify`` (``python -m energy_client receipts ...``) are these
too. See docs/receipts.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

import simplejson

from chalicelib.domain import signing
from chalicelib.domain.receipts import ChainReport, MalformedReceipt, verify_export
from energy_client.rpc_client import MarketplaceClient, RpcError, http_transport

# v2: every head is signed by the marketplace (v1 heads were not, so a v1
# export cannot prove that its chains were not cut short; export again).
EXPORT_FORMAT: Final = "energy-marketplace/receipts-export/v2"
OLD_EXPORT_FORMAT: Final = "energy-marketplace/receipts-export/v1"
PAGE_SIZE: Final = 100  # the largest page energy.getReceipts gives

INTACT, BROKEN, UNREADABLE = 0, 1, 2


class ExportError(Exception):
    pass


# -- export ---------------------------------------------------------------------


def export_receipts(
    client: MarketplaceClient,
    provider_ids: Sequence[str],
    *,
    page_size: int = PAGE_SIZE,
    attempts: int = 3,
    pause_seconds: float = 1.0,
) -> dict[str, Any]:
    """An export of each provider's receipt chain, oldest first, with its head."""
    info = client.call("energy.getMarketInfo")
    heads: list[dict[str, Any]] = []
    receipts: list[dict[str, Any]] = []
    for provider_id in dict.fromkeys(provider_ids):
        head, chain = read_chain(
            client,
            provider_id,
            page_size=page_size,
            attempts=attempts,
            pause_seconds=pause_seconds,
        )
        if head is not None:
            heads.append(head)
            receipts.extend(chain)
    return {
        "format": EXPORT_FORMAT,
        "marketplace_id": info["marketplace_id"],
        "receipt_public_key": info["receipt_public_key"],
        "heads": heads,
        "receipts": receipts,
    }


def read_chain(
    client: MarketplaceClient,
    provider_id: str,
    *,
    page_size: int = PAGE_SIZE,
    attempts: int = 3,
    pause_seconds: float = 1.0,
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """A provider's head and its chain up to that head, as the service gave them.

    The head is the one reported with the first page; receipts settled while
    paging come after it and are left for the next export. The pages may lag
    the head (an eventually consistent read), so a chain that does not reach
    it yet is read again.
    """
    for attempt in range(attempts):
        if attempt:
            time.sleep(pause_seconds)
        head, chain = _read_pages(client, provider_id, page_size)
        if head is None:
            return None, []
        hashes = [receipt["receipt_hash"] for receipt in chain]
        if head["receipt_hash"] in hashes:
            return head, chain[: hashes.index(head["receipt_hash"]) + 1]
    raise ExportError(f"the receipts of {provider_id} do not reach its head; try again")


def _read_pages(
    client: MarketplaceClient, provider_id: str, page_size: int
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """Every page of a provider's chain, and the head given with the first."""
    params: dict[str, Any] = {"provider_id": provider_id, "limit": page_size}
    page = client.call("energy.getReceipts", params)
    head, chain = page["head"], list(page["receipts"])
    while page["next_cursor"] is not None:
        page = client.call("energy.getReceipts", params | {"cursor": page["next_cursor"]})
        chain.extend(page["receipts"])
    return head, chain


def run_export(args: argparse.Namespace) -> int:
    try:
        client = MarketplaceClient(http_transport(args.url), marketplace_id="")
        export = export_receipts(client, args.providers)
    except (RpcError, ExportError, OSError, ValueError) as exc:
        print(f"error: the export failed: {exc}", file=sys.stderr)
        return 1
    except (KeyError, TypeError) as exc:
        print(f"error: the service answered something unexpected ({exc!r})", file=sys.stderr)
        return 1
    text = simplejson.dumps(export, use_decimal=True, indent=2) + "\n"
    if args.output:
        try:
            with open(args.output, "w", encoding="utf-8") as out:
                out.write(text)
        except OSError as exc:
            print(f"error: cannot write {args.output}: {exc.strerror}", file=sys.stderr)
            return 1
    else:
        sys.stdout.write(text)
    exported = {head["chain"] for head in export["heads"]}
    for provider_id in dict.fromkeys(args.providers):
        if provider_id not in exported:
            print(f"note: {provider_id} has no receipts", file=sys.stderr)
    print(
        f"exported {len(export['receipts'])} receipts of {len(export['heads'])} chains"
        + (f" to {args.output}" if args.output else ""),
        file=sys.stderr,
    )
    return 0


# -- verify ---------------------------------------------------------------------


def load_export(path: str) -> dict[str, Any]:
    """The export in ``path``; MalformedReceipt when it cannot be one."""
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as exc:
        raise MalformedReceipt(f"cannot read {path}: {exc.strerror}") from exc
    try:
        export = simplejson.loads(data, use_decimal=True)
    except (ValueError, RecursionError) as exc:
        raise MalformedReceipt(f"{path} is not JSON: {exc}") from exc
    if isinstance(export, dict) and export.get("format") == OLD_EXPORT_FORMAT:
        raise MalformedReceipt(
            f"{path} is a {OLD_EXPORT_FORMAT} export, whose chain heads are not signed: "
            "export again to get heads the verifier can check"
        )
    if not isinstance(export, dict) or export.get("format") != EXPORT_FORMAT:
        raise MalformedReceipt(f"{path} is not a receipts export ({EXPORT_FORMAT})")
    if not isinstance(export.get("marketplace_id"), str):
        raise MalformedReceipt("the export does not name its marketplace_id")
    return export


def describe(report: ChainReport, receipts: Sequence[Any]) -> str:
    """One line: the chain, how many receipts verified, OK or the first broken link."""
    if report.intact:
        head = f"head: sequence {report.head.sequence}" if report.head else "no receipts"
        if report.head_signed_at_ms is not None:
            # The chain is proven complete up to then, not beyond: say when.
            head += f", signed {_utc(report.head_signed_at_ms)}"
        return f"{report.chain}: {_n_receipts(report.receipts)} verified, OK ({head})"
    at = report.broken_at
    if at is not None and at < len(receipts) and receipts[at]["chain"] == report.chain:
        where = f"position {at} (sequence {receipts[at]['sequence']})"
    else:  # nothing there: the chain ends before its head
        missing = report.head.sequence + 1 if report.head else 1
        where = f"position {at} (sequence {missing}, missing)"
    verified = _n_receipts(report.receipts)
    return f"{report.chain}: {verified} verified, BROKEN at {where}: {report.problem}"


def _utc(at_ms: int) -> str:
    moment = datetime.fromtimestamp(at_ms // 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at_ms % 1000:03d}Z"


def _n_receipts(count: int) -> str:
    return f"{count} receipt" + ("" if count == 1 else "s")


def run_verify(args: argparse.Namespace) -> int:
    key: str | None = args.public_key
    if key is not None and not signing.is_public_key_hex(key):
        print("error: --public-key is not a hex Ed25519 public key (64 digits)", file=sys.stderr)
        return UNREADABLE
    try:
        export = load_export(args.file)
        reports = verify_export(export, key)
    except ValueError as exc:  # MalformedReceipt, or text no receipt can hold
        print(f"error: {exc}", file=sys.stderr)
        return UNREADABLE
    written = export.get("receipt_public_key")
    if key is None:
        print(
            f"note: verifying against the key written in the export ({written}): this shows "
            "the export is intact, not that the marketplace issued it; pass --public-key "
            "(receipt_public_key from energy.getMarketInfo) to check that too",
            file=sys.stderr,
        )
    elif signing.normalise_hex(str(written)) != signing.normalise_hex(key):
        print(f"note: the export names another receipt key ({written})", file=sys.stderr)

    for report in reports:
        print(describe(report, export["receipts"]))
    broken = [r for r in reports if not r.intact]
    verified = sum(r.receipts for r in reports)
    if not reports:
        print("no chains in the export: nothing to verify")
    elif broken:
        print(f"{len(broken)} of {len(reports)} chains BROKEN ({_n_receipts(verified)} verified)")
    else:
        print(f"all {len(reports)} chains intact ({_n_receipts(verified)} verified)")
    return BROKEN if broken else INTACT


# -- the command line -------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    main_parser = argparse.ArgumentParser(
        prog="python -m energy_client.receipts",
        description="Export settlement receipts from the marketplace, or verify an export.",
    )
    commands = main_parser.add_subparsers(dest="command", required=True)

    export = commands.add_parser("export", help="page energy.getReceipts into an export file")
    export.add_argument("--url", required=True, help="the JSON-RPC endpoint, e.g. .../rpc")
    export.add_argument(
        "--provider",
        dest="providers",
        action="append",
        required=True,
        metavar="PROVIDER_ID",
        help="a provider whose chain to export (repeat for more)",
    )
    export.add_argument("-o", "--output", metavar="FILE", help="write here, not to stdout")

    verify = commands.add_parser("verify", help="check every chain of an export, offline")
    verify.add_argument("file", metavar="FILE")
    verify.add_argument(
        "--public-key",
        metavar="HEX",
        help="the marketplace's receipt key (default: the key in the export, integrity only)",
    )
    return main_parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return run_export(args) if args.command == "export" else run_verify(args)


if __name__ == "__main__":
    sys.exit(main())
