"""The sun's position, checked against published figures.

Sources:

* Jean Meeus, *Astronomical Algorithms*, 2nd ed. (1998), Example 25.a: on
  1992 October 13.0 TD the sun's apparent declination is -7°47'06"
  (-7.78507°); Example 28.b: the equation of time that day is +13m42.6s.
* The solstices and the equinox of 2024 (US Naval Observatory, "Earth's
  Seasons"): March equinox 20 March 03:06 UTC, June solstice 20 June
  20:51 UTC, December solstice 21 December 09:20 UTC. At a solstice the
  declination equals the obliquity of the ecliptic, 23.44° (IAU 2006); at an
  equinox it is 0. So the noon elevation at latitude φ is 90° - φ ± 23.44°.
* The equation of time peaks near +16.4 minutes about 3 November (Meeus,
  chapter 28, figure; any almanac), so the sun crosses the Greenwich
  meridian near 11:43:35 UTC that day.
* Polar night and midnight sun at Longyearbyen, Svalbard (78.22° N): the sun
  stays below the horizon from late October to mid-February and above it
  from mid-April to late August (Norwegian Polar Institute). At the
  solstices its elevation at noon and midnight is ±(23.44° - 11.78°).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.domain import solar

GREENWICH = (51_476_900, 0)  # the Royal Observatory's meridian
LONGYEARBYEN = (78_220_000, 15_650_000)
GREENSBORO = (36_100_000, -79_950_000)


def utc_ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp() * 1000)


def test_declination_matches_meeus_example_25a() -> None:
    # Given 1992 October 13.0 (Julian day 2448908.5)
    at = utc_ms(1992, 10, 13)
    # Then the apparent declination is -7.78507° (Meeus: -7°47'06")
    assert solar.declination_deg(at) == pytest.approx(-7.78507, abs=0.001)


def test_equation_of_time_matches_meeus_example_28b() -> None:
    minutes = solar.equation_of_time_minutes(utc_ms(1992, 10, 13))
    assert minutes == pytest.approx(13 + 42.6 / 60, abs=0.05)


def test_equation_of_time_peaks_near_sixteen_minutes_in_early_november() -> None:
    assert solar.equation_of_time_minutes(utc_ms(2024, 11, 3, 12)) == pytest.approx(16.4, abs=0.1)
    # ...and is near -14.2 minutes in mid-February.
    assert solar.equation_of_time_minutes(utc_ms(2024, 2, 11, 12)) == pytest.approx(-14.2, abs=0.1)


def test_the_sun_crosses_the_greenwich_meridian_before_noon_in_november() -> None:
    # The highest elevation of 3 November 2024 at Greenwich, to the minute.
    noon = max(
        range(utc_ms(2024, 11, 3, 11, 30), utc_ms(2024, 11, 3, 12), 60_000),
        key=lambda at: solar.elevation_deg(*GREENWICH, at),
    )
    assert abs(noon - utc_ms(2024, 11, 3, 11, 43, 35)) <= 60_000


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (utc_ms(2024, 6, 20, 12, 2), 90 - 51.4769 + 23.44),  # June solstice
        (utc_ms(2024, 12, 21, 11, 58), 90 - 51.4769 - 23.44),  # December solstice
    ],
    ids=["june", "december"],
)
def test_noon_elevation_at_greenwich_on_the_solstices(at: int, expected: float) -> None:
    assert solar.elevation_deg(*GREENWICH, at) == pytest.approx(expected, abs=0.1)


def test_sun_overhead_at_the_equator_at_noon_on_the_equinox() -> None:
    # Solar noon on the prime meridian on 20 March 2024 is 12:07 UTC (equation of time -7.5 min).
    assert solar.elevation_deg(0, 0, utc_ms(2024, 3, 20, 12, 7)) == pytest.approx(90, abs=0.5)


def test_night_at_local_midnight() -> None:
    # Greensboro, NC: local solar midnight is about 05:20 UTC.
    assert solar.elevation_deg(*GREENSBORO, utc_ms(2024, 6, 21, 5, 20)) < -25
    assert solar.daylight_ms(*GREENSBORO, utc_ms(2024, 6, 21, 3), utc_ms(2024, 6, 21, 7), -6) == 0


def test_midnight_sun_and_polar_night_at_longyearbyen() -> None:
    midnight_in_june = utc_ms(2024, 6, 21, 23)  # local solar midnight: 15.65° E is 1 h 03 min
    noon_in_december = utc_ms(2024, 12, 21, 11)
    assert solar.elevation_deg(*LONGYEARBYEN, midnight_in_june) == pytest.approx(11.66, abs=0.1)
    assert solar.elevation_deg(*LONGYEARBYEN, noon_in_december) == pytest.approx(-11.66, abs=0.1)
    day = 24 * 3_600_000
    june_21 = utc_ms(2024, 6, 21)
    december_21 = utc_ms(2024, 12, 21)
    assert solar.daylight_ms(*LONGYEARBYEN, june_21, june_21 + day, 0.0) == day
    assert solar.daylight_ms(*LONGYEARBYEN, december_21, december_21 + day, 0.0) == 0


def test_daylight_at_the_equinox_is_about_twelve_hours() -> None:
    # Sunrise to sunset with the geometric horizon: 12 hours, to a few minutes.
    start = utc_ms(2024, 3, 20)
    lit = solar.daylight_ms(0, 0, start, start + 24 * 3_600_000, 0.0)
    assert abs(lit - 12 * 3_600_000) <= 5 * 60_000


@given(
    start=st.integers(min_value=utc_ms(2000, 1, 1), max_value=utc_ms(2049, 12, 31)),
    length=st.integers(min_value=0, max_value=30 * 3_600_000),
    latitude=st.integers(min_value=-89_000_000, max_value=89_000_000),
    longitude=st.integers(min_value=-180_000_000, max_value=180_000_000),
)
def test_daylight_never_counts_less_than_sampled_daylight(
    start: int, length: int, latitude: int, longitude: int
) -> None:
    # Every minute sampled with the sun up lies in a lit minute that daylight_ms counted.
    end = start + length
    lit = solar.daylight_ms(latitude, longitude, start, end, -6.0)
    assert 0 <= lit <= length
    step = 600_000
    sampled_lit = sum(
        min(step, end - at)
        for at in range(start, end, step)
        if solar.elevation_deg(latitude, longitude, at) >= -6.0 + step * 15 / 3_600_000
    )
    assert lit >= sampled_lit


def test_mean_sine_is_zero_at_night_and_follows_the_sun_by_day() -> None:
    night = utc_ms(2024, 6, 21, 5)
    assert solar.mean_sine_elevation(*GREENSBORO, night, night + 3_600_000) == 0.0
    noon = utc_ms(2024, 6, 21, 17)  # about 12:20 local solar time
    sine = solar.mean_sine_elevation(*GREENSBORO, noon - 1_800_000, noon + 1_800_000)
    assert sine == pytest.approx(0.97, abs=0.02)  # 90 - 36.1 + 23.44 = 77.3°
