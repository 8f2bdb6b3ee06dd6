"""The CLI's failures: the exit statuses, and errors printed for people, with hints."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

import simplejson

from energy_client.cli.display import block, kwh, when, when_seconds
from energy_client.rpc_client import RpcError

OK, FAILED, USAGE = 0, 1, 2


class CliError(Exception):
    """An expected failure: printed as ``error: <message>`` (and hints), no traceback."""

    def __init__(self, message: str, status: int = FAILED, hints: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.hints = list(hints)


# What to try next, by data.reason.
HINTS: Final[Mapping[str, str]] = {
    "not_authenticated": (
        "the key does not match the account's key on this marketplace: was the account "
        "created with this key (`account create NAME`)? For the operator, import the "
        "marketplace's operator key (make run writes .local/operator.key)"
    ),
    "not_authorised": "this account may not do this: the message above says why",
    "stale_request": "this computer's clock is off: set it right (NTP) and try again",
    "replayed_request": "this nonce was used before by another request; nothing was changed now",
    "concurrent_update": "other requests changed the same records; trying again is safe",
    "insufficient_balance": "deposit more BLOCK, or ask for less",
    "price_above_limit": "raise --max-price, or pick a cheaper provider (`offers`)",
    "insufficient_energy": "ask for less, or pick a provider with more on sale (`offers`)",
    "purchase_too_large": "buy less in one purchase (at most 90 credits): split it",
    "credits_disputed": (
        "an open dispute holds these credits: `dispute DISPUTE_ID` shows it; try again "
        "once it is resolved"
    ),
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
