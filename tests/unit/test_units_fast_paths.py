"""The short paths for int and Decimal amounts agree with the general one.

``units._scaled`` takes a plain ``int`` and a finite plain ``Decimal`` (what a
JSON parser yields) without the chain of type tests; a subclass of either
goes the general way through ``_to_decimal``. Each conversion must answer the
same for both: the same amount, or the same refusal with the same message.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from chalicelib.domain import units


class _Int(int):
    """An int the short path does not take."""


class _Decimal(Decimal):
    """A Decimal the short path does not take."""


CONVERSIONS: list[Callable[[object], int]] = [
    units.wh_from_kwh,
    units.milliseconds_from_seconds,
    units.micro_block_from_block,
    units.micro_block_exact,
    units.price_from_block_per_kwh,
    lambda value: units.micro_degrees(value, 180),
]


def outcome(convert: Callable[[object], int], value: object) -> tuple[str, object]:
    try:
        return ("amount", convert(value))
    except units.InvalidAmount as refused:
        return ("refused", str(refused))


integers = st.one_of(
    st.integers(min_value=-(10**40), max_value=10**40),
    st.integers(min_value=-(10**16), max_value=10**16),
    st.sampled_from([0, -1, 10**9, 10**12, 10**14, 10**15, 10**15 + 1, 10**31, 10**38]),
)
decimals = st.one_of(
    st.decimals(allow_nan=True, allow_infinity=True),
    st.builds(
        lambda digits, exponent: Decimal(digits).scaleb(exponent),
        st.integers(min_value=-(10**40), max_value=10**40),
        st.integers(min_value=-45, max_value=12),
    ),
    st.sampled_from([Decimal("-0"), Decimal("-0.000"), Decimal("1e31"), Decimal("sNaN")]),
)


@given(integers)
def test_an_int_converts_as_the_general_path_converts_it(value: int) -> None:
    for convert in CONVERSIONS:
        assert outcome(convert, value) == outcome(convert, _Int(value))


@given(decimals)
def test_a_decimal_converts_as_the_general_path_converts_it(value: Decimal) -> None:
    for convert in CONVERSIONS:
        assert outcome(convert, value) == outcome(convert, _Decimal(value))
