"""How the CLI shows things: exact BLOCK and kWh, UTC times, plain-text tables."""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

import simplejson

from chalicelib.domain import units


def plain(number: Decimal) -> str:
    return format(number, "f")


def block(micro_block: Any) -> str:
    """Integer micro-BLOCK -> exact BLOCK: ``900000`` -> ``0.9``."""
    return plain(units.block_from_micro(int(micro_block)))


def kwh(wh: Any) -> str:
    """Integer Wh -> exact kWh: ``27750`` -> ``27.75``."""
    return plain(units.kwh_from_wh(int(wh)))


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
