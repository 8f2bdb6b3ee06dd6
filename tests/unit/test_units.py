"""Amounts convert exactly or are refused; cost has one rounding rule."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.domain import units
from chalicelib.domain.units import InvalidAmount


@pytest.mark.parametrize(
    ("given_value", "expected_wh"),
    [
        (15000, 15_000_000),
        (Decimal("1.5"), 1_500),
        ("0.001", 1),
        (0.5, 500),
        ("500", 500_000),
        (Decimal("15000.000"), 15_000_000),
        (0, 0),
    ],
)
def test_kwh_converts_exactly_to_wh(given_value: object, expected_wh: int) -> None:
    assert units.wh_from_kwh(given_value) == expected_wh


@pytest.mark.parametrize(
    ("given_value", "expected_micro"),
    [(Decimal("0.08"), 80_000), (0.08, 80_000), ("0.000001", 1), (1, 1_000_000)],
)
def test_price_converts_exactly_to_micro_block(given_value: object, expected_micro: int) -> None:
    assert units.price_from_block_per_kwh(given_value) == expected_micro


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        (Decimal("0.0005"), "precision"),  # half a Wh
        (0.1 + 0.2, "precision"),  # 0.30000000000000004 kWh
        (-1, "negative"),
        (Decimal("-0.001"), "negative"),
        (Decimal("NaN"), "finite"),
        (Decimal("Infinity"), "finite"),
        (float("inf"), "finite"),
        (float("nan"), "finite"),
        (True, "number"),
        (None, "number"),
        ("abc", "decimal"),
        ("", "decimal"),
        ([1], "number"),
        (Decimal("1e40"), "large"),
        (10**10, "large"),  # 10^13 Wh
    ],
)
def test_unrepresentable_energy_is_refused(bad: object, why: str) -> None:
    with pytest.raises(InvalidAmount, match=why):
        units.wh_from_kwh(bad)


def test_micro_block_amounts_must_be_whole() -> None:
    assert units.micro_block_exact(10_000 * 10**6) == 10_000_000_000
    assert units.micro_block_exact(Decimal("10000000000.0")) == 10_000_000_000
    with pytest.raises(InvalidAmount, match="precision"):
        units.micro_block_exact(Decimal("1.5"))
    with pytest.raises(InvalidAmount, match="large"):
        units.micro_block_exact(units.MAX_MICRO_BLOCK + 1)


def test_signed_coordinates_convert_to_micro_degrees() -> None:
    assert units.micro_degrees("-122.419416", 180) == -122_419_416
    assert units.micro_degrees(37.7749, 90) == 37_774_900
    with pytest.raises(InvalidAmount, match="large"):
        units.micro_degrees(91, 90)
    with pytest.raises(InvalidAmount, match="precision"):
        units.micro_degrees("1.0000001", 90)


def test_cost_rounds_up_to_the_next_micro_block() -> None:
    # 1 Wh at 0.08 BLOCK/kWh is 80 micro-BLOCK exactly.
    assert units.cost_micro_block(1, 80_000) == 80
    # 1 Wh at 1 micro-BLOCK/kWh is 0.001 micro-BLOCK: the buyer pays 1.
    assert units.cost_micro_block(1, 1) == 1
    assert units.cost_micro_block(0, 80_000) == 0
    assert units.cost_micro_block(500_000, 80_000) == 40_000_000  # 500 kWh at 0.08 = 40 BLOCK


@given(st.integers(0, units.MAX_WH), st.integers(0, units.MAX_PRICE_MICRO_BLOCK_PER_KWH))
def test_cost_is_the_exact_product_rounded_up_by_less_than_one(wh: int, price: int) -> None:
    cost = units.cost_micro_block(wh, price)
    exact = Decimal(wh) * price / 1000
    assert exact <= cost < exact + 1


@given(st.integers(0, units.MAX_WH))
def test_wh_round_trips_through_kwh(wh: int) -> None:
    assert units.wh_from_kwh(units.kwh_from_wh(wh)) == wh
    assert units.wh_from_kwh(str(units.kwh_from_wh(wh))) == wh


@given(st.integers(0, units.MAX_MICRO_BLOCK))
def test_micro_block_round_trips_through_block(micro: int) -> None:
    assert units.micro_block_from_block(units.block_from_micro(micro)) == micro


@pytest.mark.parametrize(
    "text",
    ["0", "-0", "7", "12.5", "0.001", "-122.419416", "1000000.000000"],
)
def test_strings_in_the_grammar_are_read_exactly(text: str) -> None:
    assert units.micro_degrees(text, 10**7) == int(Decimal(text) * 1_000_000)


@pytest.mark.parametrize(
    "text",
    [
        "1e3",
        "1E-3",
        " 5",
        "5 ",
        "\t5",
        "+5",
        "5.",
        ".5",
        "05",
        "-05",
        "00",
        "1_000",
        "0x10",
        "NaN",
        "nan",
        "Infinity",
        "inf",
        "-Infinity",
        "sNaN",
        "\u0661\u0662",
        "\uff15",
        "--5",
        "5-",
        "1.2.3",
        "-",
        "",
        "1" * 41,
    ],
)
def test_strings_outside_the_grammar_are_refused(text: str) -> None:
    # Each is refused before Decimal() sees it, whatever Decimal() would make of it.
    with pytest.raises(InvalidAmount, match="must be a decimal number"):
        units.micro_degrees(text, 10**7)
    with pytest.raises(InvalidAmount, match="must be a decimal number"):
        units.wh_from_kwh(text)


def test_floats_are_numbers_not_strings() -> None:
    # repr(1e-07) is '1e-07'; the float is refused for its precision, not its spelling.
    with pytest.raises(InvalidAmount, match="precision"):
        units.wh_from_kwh(1e-07)
    assert units.wh_from_kwh(1e3) == 1_000_000
