"""Where the sun is: its elevation at a place and time, and how long it is up in an interval.

The fraud detectors ask one physical question of a solar meter: could the sun
have produced this energy in this interval? That needs the sun's elevation at
the provider's location, computed here rather than looked up, so that the
check costs no I/O and works for any place on Earth.

**Algorithm.** The low-precision solar coordinates of Jean Meeus,
*Astronomical Algorithms* (2nd ed., Willmann-Bell, 1998), chapter 25
("Solar coordinates", the method of Example 25.a), with the equation of time
of chapter 28 (Smart's formula, Example 28.b); the same formulas drive NOAA's
Solar Calculator and its spreadsheet (NOAA Global Monitoring Laboratory,
"General Solar Position Calculations"). The declination is good to about
0.01° and the equation of time to a few seconds between 1950 and 2050, far
finer than the few degrees of margin the detectors keep. The elevation is
geometric (no atmospheric refraction, which lifts the sun's image by about
0.6° at the horizon) and the difference between Terrestrial and Universal
Time (about a minute) is ignored: both are inside that margin.

Inputs are UTC Unix milliseconds and locations in integer micro-degrees
(:class:`chalicelib.domain.providers.Location`). Floats are used inside; they
never reach storage. Standard library ``math`` only.
"""

from __future__ import annotations

import math
from typing import Final

MICRO_DEG_PER_DEG: Final = 1_000_000
MS_PER_DAY: Final = 86_400_000
_UNIX_EPOCH_JULIAN_DAY: Final = 2_440_587.5  # 1970-01-01 00:00 UTC
_J2000_JULIAN_DAY: Final = 2_451_545.0  # 2000-01-01 12:00 TT
_DAYS_PER_JULIAN_CENTURY: Final = 36_525.0

# The sun's elevation changes by at most 15° an hour (the Earth turns 15° an
# hour; the elevation changes fastest, at exactly that rate, for an observer on
# the equator with the sun on the celestial equator). daylight_ms relies on it
# to settle whole stretches of an interval from one elevation.
MAX_ELEVATION_RATE_DEG_PER_MS: Final = 15.0 / 3_600_000
# daylight_ms stops splitting below this length and counts the piece as lit:
# at most this much of a sunrise or sunset is over-counted, never under-counted.
DAYLIGHT_RESOLUTION_MS: Final = 60_000


def julian_centuries(at_ms: int) -> float:
    """Julian centuries from J2000.0 at a UTC Unix time (Meeus eq. 25.1)."""
    julian_day = at_ms / MS_PER_DAY + _UNIX_EPOCH_JULIAN_DAY
    return (julian_day - _J2000_JULIAN_DAY) / _DAYS_PER_JULIAN_CENTURY


def _sun(at_ms: int) -> tuple[float, float]:
    """The sun's apparent declination and the equation of time, in radians."""
    t = julian_centuries(at_ms)
    mean_longitude = math.radians((280.46646 + t * (36_000.76983 + t * 0.0003032)) % 360)
    mean_anomaly = math.radians(357.52911 + t * (35_999.05029 - t * 0.0001537))
    eccentricity = 0.016708634 - t * (0.000042037 + t * 0.0000001267)
    centre = (
        math.sin(mean_anomaly) * (1.914602 - t * (0.004817 + t * 0.000014))
        + math.sin(2 * mean_anomaly) * (0.019993 - t * 0.000101)
        + math.sin(3 * mean_anomaly) * 0.000289
    )
    node = math.radians(125.04 - 1_934.136 * t)  # the Moon's ascending node, for nutation
    apparent_longitude = math.radians(
        math.degrees(mean_longitude) + centre - 0.00569 - 0.00478 * math.sin(node)
    )
    mean_obliquity = 23 + (26 + (21.448 - t * (46.815 + t * (0.00059 - t * 0.001813))) / 60) / 60
    obliquity = math.radians(mean_obliquity + 0.00256 * math.cos(node))
    declination = math.asin(math.sin(obliquity) * math.sin(apparent_longitude))
    y = math.tan(obliquity / 2) ** 2
    equation_of_time = (
        y * math.sin(2 * mean_longitude)
        - 2 * eccentricity * math.sin(mean_anomaly)
        + 4 * eccentricity * y * math.sin(mean_anomaly) * math.cos(2 * mean_longitude)
        - 0.5 * y * y * math.sin(4 * mean_longitude)
        - 1.25 * eccentricity * eccentricity * math.sin(2 * mean_anomaly)
    )
    return declination, equation_of_time


def declination_deg(at_ms: int) -> float:
    """The sun's apparent declination, in degrees (north positive)."""
    return math.degrees(_sun(at_ms)[0])


def equation_of_time_minutes(at_ms: int) -> float:
    """Apparent minus mean solar time, in minutes (+16 in early November)."""
    return 4 * math.degrees(_sun(at_ms)[1])


def elevation_deg(latitude_micro_deg: int, longitude_micro_deg: int, at_ms: int) -> float:
    """The sun's geometric elevation above the horizon, in degrees (negative below it)."""
    declination, equation_of_time = _sun(at_ms)
    latitude = math.radians(latitude_micro_deg / MICRO_DEG_PER_DEG)
    # True solar time, as an angle: the Earth turns 360° a day, so a millisecond
    # of UTC is 360 / 86,400,000 degrees; east longitude adds, the equation of
    # time adds (it is in radians of the same angle).
    minutes_of_day = (at_ms % MS_PER_DAY) / 60_000
    hour_angle = math.radians(
        minutes_of_day / 4 + longitude_micro_deg / MICRO_DEG_PER_DEG - 180
    ) + (equation_of_time)
    sine = math.sin(latitude) * math.sin(declination) + math.cos(latitude) * math.cos(
        declination
    ) * math.cos(hour_angle)
    return math.degrees(math.asin(max(-1.0, min(1.0, sine))))


def daylight_ms(
    latitude_micro_deg: int,
    longitude_micro_deg: int,
    start_ms: int,
    end_ms: int,
    min_elevation_deg: float,
) -> int:
    """How much of ``[start_ms, end_ms)`` the sun spends at or above ``min_elevation_deg``.

    Never less than the truth: a stretch is counted dark only when the sun's
    elevation at one of its ends, less the most it can rise in the stretch
    (15° an hour), stays below the limit. Stretches that cannot be settled
    that way are halved, down to ``DAYLIGHT_RESOLUTION_MS``, and then counted
    lit. A night of twelve hours costs a few dozen elevations; an interval
    deep in the night or in full day, one.
    """
    if end_ms <= start_ms:
        return 0
    lit = 0
    stack = [(start_ms, end_ms)]
    while stack:
        start, end = stack.pop()
        swing = (end - start) * MAX_ELEVATION_RATE_DEG_PER_MS
        elevation = elevation_deg(latitude_micro_deg, longitude_micro_deg, start)
        if elevation + swing < min_elevation_deg:
            continue
        if elevation - swing >= min_elevation_deg or end - start <= DAYLIGHT_RESOLUTION_MS:
            lit += end - start
            continue
        middle = (start + end) // 2
        stack.append((start, middle))
        stack.append((middle, end))
    return lit


def mean_sine_elevation(
    latitude_micro_deg: int, longitude_micro_deg: int, start_ms: int, end_ms: int, samples: int = 4
) -> float:
    """The mean of ``max(0, sin(elevation))`` over ``[start_ms, end_ms)``, from midpoint samples.

    Irradiance on open ground under a clear sky is roughly proportional to the
    sine of the sun's elevation, so this is the shape of a clear day: the
    detectors divide a solar meter's hourly energy by it to compare days of
    different seasons.
    """
    if end_ms <= start_ms or samples < 1:
        return 0.0
    step = (end_ms - start_ms) / samples
    total = 0.0
    for n in range(samples):
        at = start_ms + round((n + 0.5) * step)
        total += max(
            0.0, math.sin(math.radians(elevation_deg(latitude_micro_deg, longitude_micro_deg, at)))
        )
    return total / samples
