"""Exact value types: energy in integer Wh, money in integer micro-BLOCK.

Every amount that enters the marketplace passes through one of the parsers
here, which accept the decimal numbers the original client sends
(``price_per_kwh: 0.08``, ``kwh_amount: 500``) and convert them *exactly*.
A value that would need rounding, or is negative, NaN, infinite, a boolean or
absurdly large, is refused with :class:`InvalidAmount`. Floats never reach
storage: a Python ``float`` is accepted only when its shortest decimal
representation converts exactly (so ``0.08`` works, ``0.1 + 0.2`` does not).
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Final

MICRO_BLOCK_PER_BLOCK: Final = 1_000_000
WH_PER_KWH: Final = 1_000

# Upper bounds that no honest request comes near; they keep every amount far
# inside DynamoDB's 38-digit numbers and every product of two amounts exact.
MAX_MICRO_BLOCK: Final = 10**15  # one billion BLOCK
MAX_WH: Final = 10**12  # one TWh
MAX_PRICE_MICRO_BLOCK_PER_KWH: Final = 10**9  # 1,000 BLOCK per kWh
MAX_TIMESTAMP_MS: Final = 10**14  # the year 5138


# The one grammar for a number sent as a string (docs/api.md "Units",
# docs/meter-protocol.md "Payload"): what a JSON number looks like without an
# exponent -- an optional '-', ASCII digits without leading zeros, optionally
# '.' and ASCII digits. Python's Decimal() accepts far more ('1e3', ' 5',
# '+5', '5.', '.5', 'NaN', '1_000', Arabic-Indic digits); a client library in
# another language would parse some of those differently or not at all, so a
# string either reads the same everywhere or is refused. [0-9] rather than \d:
# \d matches every Unicode digit.
DECIMAL_STRING: Final = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?")
MAX_DECIMAL_STRING_LENGTH: Final = 40


class InvalidAmount(ValueError):
    """A number that cannot be taken as an exact, bounded, non-negative amount."""


def _to_decimal(value: object, what: str) -> Decimal:
    # bool is an int subclass; True must never mean "1 BLOCK".
    if isinstance(value, bool) or value is None:
        raise InvalidAmount(f"{what} must be a number")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        # repr() is the shortest decimal that round-trips: what the sender wrote.
        # It may be '1e-07' or 'inf': a float is a number already, so the string
        # grammar does not apply to it; the finiteness check below does.
        number = Decimal(repr(value))
    elif isinstance(value, Decimal):
        number = value
    elif isinstance(value, str):
        if len(value) > MAX_DECIMAL_STRING_LENGTH or not DECIMAL_STRING.fullmatch(value):
            raise InvalidAmount(
                f"{what} must be a decimal number: digits, optionally '-' before and "
                "'.' and digits after (no exponent, '+', spaces or leading zeros)"
            )
        number = Decimal(value)  # the grammar is a subset of what Decimal() reads
    else:
        raise InvalidAmount(f"{what} must be a number")
    if not number.is_finite():
        raise InvalidAmount(f"{what} must be finite")
    return number


def _scaled(value: object, scale: int, maximum: int, what: str, unit: str) -> int:
    if type(value) is int:
        # Exact already: the Decimal steps below would refuse the same values
        # with the same messages (anything they round is far above every maximum).
        if value < 0:
            raise InvalidAmount(f"{what} must not be negative")
        exact = value * scale
        if exact > maximum:
            raise InvalidAmount(f"{what} is too large")
        return exact
    # A finite Decimal (what a JSON parser with parse_float=Decimal yields) skips
    # _to_decimal's chain of type tests: ingest converts two per reading.
    number = value if type(value) is Decimal and value.is_finite() else _to_decimal(value, what)
    if number < 0:
        raise InvalidAmount(f"{what} must not be negative")
    if number.adjusted() > 30:
        raise InvalidAmount(f"{what} is too large")
    scaled = number * scale
    if scaled != scaled.to_integral_value():
        raise InvalidAmount(f"{what} has more precision than one {unit}")
    result = int(scaled)
    if result > maximum:
        raise InvalidAmount(f"{what} is too large")
    return result


def micro_block_from_block(value: object, what: str = "amount") -> int:
    """BLOCK as a decimal number (``12.5``) -> integer micro-BLOCK (``12500000``)."""
    return _scaled(value, MICRO_BLOCK_PER_BLOCK, MAX_MICRO_BLOCK, what, "micro-BLOCK")


def micro_block_exact(value: object, what: str = "amount") -> int:
    """An amount already in micro-BLOCK; it must be a whole number."""
    return _scaled(value, 1, MAX_MICRO_BLOCK, what, "micro-BLOCK")


def price_from_block_per_kwh(value: object, what: str = "price_per_kwh") -> int:
    """A price in BLOCK per kWh (``0.08``) -> micro-BLOCK per kWh (``80000``)."""
    return _scaled(value, MICRO_BLOCK_PER_BLOCK, MAX_PRICE_MICRO_BLOCK_PER_KWH, what, "micro-BLOCK")


def wh_from_kwh(value: object, what: str = "kwh") -> int:
    """Energy in kWh as a decimal number (``1.5``) -> integer Wh (``1500``)."""
    return _scaled(value, WH_PER_KWH, MAX_WH, what, "Wh")


def milliseconds_from_seconds(value: object, what: str = "timestamp") -> int:
    """Unix seconds, at most 3 decimals (``1767225600.25``) -> integer milliseconds."""
    return _scaled(value, 1_000, MAX_TIMESTAMP_MS, what, "millisecond")


def micro_degrees(value: object, limit_degrees: int, what: str = "coordinate") -> int:
    """A signed coordinate in degrees (``-122.419416``) -> integer micro-degrees."""
    number = _to_decimal(value, what)
    magnitude = _scaled(abs(number), 1_000_000, limit_degrees * 1_000_000, what, "micro-degree")
    return -magnitude if number < 0 else magnitude


def block_from_micro(micro_block: int) -> Decimal:
    """The exact BLOCK value of an integer micro-BLOCK amount, for responses."""
    return _normalised(Decimal(micro_block) / MICRO_BLOCK_PER_BLOCK)


def kwh_from_wh(wh: int) -> Decimal:
    """The exact kWh value of an integer Wh amount, for responses."""
    return _normalised(Decimal(wh) / WH_PER_KWH)


def _normalised(number: Decimal) -> Decimal:
    # 15000.000 -> 15000 and 0.080000 -> 0.08, without scientific notation.
    if number == number.to_integral_value():
        return number.quantize(Decimal(1))
    return number.normalize()


def cost_micro_block(wh: int, price_micro_block_per_kwh: int) -> int:
    """What ``wh`` costs at a price per kWh, in micro-BLOCK.

    The one rounding rule of the marketplace: price x energy is rounded *up* to
    the next whole micro-BLOCK, so a provider is never paid less than its
    price; the buyer pays at most one micro-BLOCK more than the exact product.
    """
    if wh < 0 or price_micro_block_per_kwh < 0:
        raise InvalidAmount("energy and price must not be negative")
    return -(-(wh * price_micro_block_per_kwh) // WH_PER_KWH)
