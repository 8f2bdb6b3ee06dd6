"""Generation profiles for the demo fleet: what a solar, wind, hydro or battery meter measures.

Every profile is a ``GenerationSource`` for :class:`iot.meter.MeterClient`:
``watt_milliseconds(start_ms, end_ms)`` is the energy produced in ``[start_ms, end_ms)``
(Unix ms, UTC) in W·ms, 1 Wh = 3,600,000 W·ms. An accelerated :class:`iot.meter.MeterClock`
simply asks for longer simulated intervals; nothing here depends on wall-clock time.

Guarantees, for every profile and every ``start_ms <= mid_ms <= end_ms``:

* integer and exactly additive: ``E(start, end) == E(start, mid) + E(mid, end)``. Each profile
  defines a cumulative energy ``F(t)`` (the floor of the exact integral of its power, in
  W·ms) and returns ``F(end) - F(start)``; the sum telescopes, so a meter that reads every
  second and one that reads every hour count the same Wh;
* never negative, and never above ``capacity_w * (end - start)``: power never exceeds
  the nameplate capacity, which is what the marketplace's plausibility check
  (``chalicelib.domain.readings.plausible_increase_wh``) demands;
* deterministic: a function of the arguments and the constructor's parameters only
  (the pseudo-random variation is a hash of ``seed``, not a random generator's state).

Solar and wind follow measured weather: one typical year (NREL TMY3) of hourly
irradiance, wind speed and air temperature (``iot/demo/data/``, see its README), repeated
every year. Power is given at hourly *knots* and is linear in between, integrated exactly
by :func:`integrate_piecewise_linear`. TMY3 labels each hour by its *end* in local standard
time: the row for 13:00 holds the mean irradiance of 12:00-13:00 and the wind and temperature
observed at 13:00. Irradiance knots therefore sit at the hour's midpoint (12:30 for that row),
wind knots at the labelled time (13:00). A Unix time is mapped to the typical year by the
station's local standard time (its fixed UTC offset, no daylight saving) and calendar day;
TMY has no 29 February, so leap years repeat 28 February.

Standard library only: no numpy, pandas or pvlib at run time.
"""

from __future__ import annotations

import csv
import hashlib
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Final, Protocol

HOUR_MS: Final = 3_600_000
DAY_MS: Final = 24 * HOUR_MS
WATT_MS_PER_WH: Final = 3_600_000  # 1 Wh = 1 W for 3,600,000 ms
HOURS_PER_YEAR: Final = 8760  # a typical meteorological year has 365 days

DATA_DIR: Final = Path(__file__).resolve().parent / "data"
GREENSBORO_NC: Final = DATA_DIR / "tmy3_723170.csv"  # sunny: 1,566 kWh/m² a year
SAND_POINT_AK: Final = DATA_DIR / "tmy3_703165.csv"  # windy: 5.1 m/s mean at 10 m

ENERGY_TYPES: Final = ("solar", "wind", "hydro", "battery")

_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
_MONTH_START: Final = (0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334)  # not a leap year
_FEBRUARY_28: Final = 31 + 27  # day of year, from 0
_TROPICAL_YEAR_DAYS: Final = 365.2425


# -- exact integration ---------------------------------------------------------------------


def integrate_piecewise_linear(
    start_ms: int,
    end_ms: int,
    knot_power_w: Callable[[int], int],
    *,
    period_ms: int = HOUR_MS,
    phase_ms: int = 0,
) -> int:
    """Energy in W·ms, in ``[start_ms, end_ms)``, of power linear between knots.

    Knot ``k`` sits at ``phase_ms + k * period_ms`` with power ``knot_power_w(k)`` W (an
    integer, at least 0). The result is ``F(end_ms) - F(start_ms)`` where ``F(t)`` is the
    floor of the exact integral from a fixed origin; a whole segment integrates to the
    integer ``period_ms * (P_k + P_k+1) / 2`` (``period_ms`` is even), so ``F`` needs no
    origin and the result is exactly additive over adjacent intervals. It is never negative
    and never above ``max power * (end_ms - start_ms)``.
    """
    if period_ms <= 0 or period_ms % 2:
        raise ValueError("period_ms must be positive and even")
    if end_ms <= start_ms:
        return 0
    first, into_first = divmod(start_ms - phase_ms, period_ms)
    last, into_last = divmod(end_ms - phase_ms, period_ms)
    power, next_power = knot_power_w(first), knot_power_w(first + 1)
    if first == last:
        return _partial(power, next_power, into_last, period_ms) - _partial(
            power, next_power, into_first, period_ms
        )
    energy = period_ms * (power + next_power) // 2 - _partial(
        power, next_power, into_first, period_ms
    )
    for knot in range(first + 1, last):
        power, next_power = next_power, knot_power_w(knot + 1)
        energy += period_ms * (power + next_power) // 2
    power, next_power = next_power, knot_power_w(last + 1)
    return energy + _partial(power, next_power, into_last, period_ms)


def _partial(power: int, next_power: int, offset_ms: int, period_ms: int) -> int:
    """Floor of the integral over ``[0, offset_ms)`` of the line from ``power`` to ``next_power``."""
    # ∫₀ᵗ p0 + (p1 - p0)·s/L ds = (2L·p0·t + (p1 - p0)·t²) / 2L, computed in integers.
    numerator = 2 * period_ms * power * offset_ms + (next_power - power) * offset_ms * offset_ms
    return numerator // (2 * period_ms)


# -- the typical year ------------------------------------------------------------------------


@lru_cache(maxsize=8192)
def _tmy_day(local_day: int) -> int:
    """The typical year's day (0-364) for a local calendar day counted from 1970-01-01."""
    day = date.fromordinal(_EPOCH_ORDINAL + local_day)
    if day.month == 2 and day.day == 29:
        return _FEBRUARY_28
    return _MONTH_START[day.month - 1] + day.day - 1


def tmy_hour(local_ms: int) -> int:
    """The typical year's hour (0-8759) that a local standard time falls in.

    ``local_ms`` is local standard time in ms since 1970-01-01 00:00 *local*
    (Unix ms + the UTC offset). Hour ``i`` is ``[i h, (i + 1) h)`` after 1 January
    00:00: TMY3's row ``i``, labelled with its end. 29 February maps to 28 February.
    """
    day, into_day = divmod(local_ms, DAY_MS)
    return _tmy_day(day) * 24 + into_day // HOUR_MS


@dataclass(frozen=True, eq=False)
class Weather:
    """One station's typical year: 8,760 hours of irradiance, wind speed and temperature.

    Hour ``i`` is the hour ending ``i + 1`` hours after 1 January 00:00 local standard time.
    """

    station_id: str
    name: str
    latitude: float
    longitude: float
    utc_offset_hours: float  # local standard time - UTC
    ghi_w_m2: tuple[int, ...]  # global horizontal irradiance, hour mean
    wind_speed_m_s: tuple[float, ...]  # at 10 m, observed at the hour's end
    temp_air_c: tuple[float, ...]  # dry bulb, observed at the hour's end
    state: str = ""
    elevation_m: float = 0.0

    def __post_init__(self) -> None:
        for column in (self.ghi_w_m2, self.wind_speed_m_s, self.temp_air_c):
            if len(column) != HOURS_PER_YEAR:
                raise ValueError(f"{self.name}: {len(column)} hours, expected {HOURS_PER_YEAR}")
        if min(self.ghi_w_m2) < 0 or min(self.wind_speed_m_s) < 0:
            raise ValueError(f"{self.name}: negative irradiance or wind speed")
        if not -14 <= self.utc_offset_hours <= 14:
            raise ValueError(f"{self.name}: UTC offset {self.utc_offset_hours} h")

    @property
    def utc_offset_ms(self) -> int:
        return round(self.utc_offset_hours * HOUR_MS)

    @property
    def annual_ghi_kwh_m2(self) -> float:
        return sum(self.ghi_w_m2) / 1000


def load_weather(path: Path | str) -> Weather:
    """Read a weather file written by ``iot.demo.extract_tmy3`` (format: data/README.md)."""
    path = Path(path)
    metadata: dict[str, str] = {}
    ghi: list[int] = []
    wind: list[float] = []
    temperature: list[float] = []
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            lines = iter(handle)
            for line in lines:
                if not line.startswith("#"):
                    header = line.strip().split(",")
                    break
                key, colon, value = line[1:].partition(":")
                if colon and key.strip().isidentifier():  # "# key: value"
                    metadata[key.strip()] = value.strip()
            else:
                raise ValueError("no header line")
            columns = [header.index(name) for name in ("ghi_w_m2", "wind_m_s", "temp_c")]
            for row in csv.reader(lines):
                ghi.append(int(row[columns[0]]))
                wind.append(float(row[columns[1]]))
                temperature.append(float(row[columns[2]]))
        return Weather(
            station_id=metadata["station_id"],
            name=metadata["name"],
            latitude=float(metadata["latitude"]),
            longitude=float(metadata["longitude"]),
            utc_offset_hours=float(metadata["utc_offset_hours"]),
            ghi_w_m2=tuple(ghi),
            wind_speed_m_s=tuple(wind),
            temp_air_c=tuple(temperature),
            state=metadata.get("state", ""),
            elevation_m=float(metadata.get("elevation_m", "0")),
        )
    except (OSError, ValueError, KeyError, IndexError) as exc:
        raise ValueError(f"{path} is not a weather file: {exc!r}") from exc


@lru_cache(maxsize=8)
def _load_bundled(path: Path) -> Weather:
    return load_weather(path)


def bundled_weather(path: Path) -> Weather:
    """A weather file, read once per process (``GREENSBORO_NC``, ``SAND_POINT_AK``)."""
    return _load_bundled(Path(path))


def default_weather(energy_type: str) -> Weather:
    """The bundled station for an energy type: Sand Point, AK for wind, Greensboro, NC otherwise."""
    return _load_bundled(SAND_POINT_AK if str(energy_type).lower() == "wind" else GREENSBORO_NC)


# -- profiles ----------------------------------------------------------------------------------


class GenerationProfile(ABC):
    """A generation source of a given nameplate capacity (a ``iot.meter.GenerationSource``)."""

    capacity_w: int

    def __init__(self, capacity_w: int) -> None:
        if capacity_w < 0:
            raise ValueError("capacity_w must be at least 0")
        self.capacity_w = int(capacity_w)

    @abstractmethod
    def watt_milliseconds(self, start_ms: int, end_ms: int) -> int:
        """Energy produced in ``[start_ms, end_ms)``, in W·ms (1 Wh = 3,600,000 W·ms)."""

    @abstractmethod
    def power_w(self, at_ms: int) -> float:
        """Instantaneous power at ``at_ms``, in W (for plots and tests; meters integrate)."""


class HourlyKnotProfile(GenerationProfile):
    """Power linear between hourly knots at ``phase_ms + k h`` (Unix ms), integrated exactly."""

    phase_ms: int = 0

    @abstractmethod
    def knot_power_w(self, knot: int) -> int:
        """Power at knot ``knot``, in whole W, between 0 and ``capacity_w``."""

    def knot_time_ms(self, knot: int) -> int:
        return self.phase_ms + knot * HOUR_MS

    def watt_milliseconds(self, start_ms: int, end_ms: int) -> int:
        return integrate_piecewise_linear(
            start_ms, end_ms, self.knot_power_w, period_ms=HOUR_MS, phase_ms=self.phase_ms
        )

    def power_w(self, at_ms: int) -> float:
        knot, into = divmod(at_ms - self.phase_ms, HOUR_MS)
        power = self.knot_power_w(knot)
        return power + (self.knot_power_w(knot + 1) - power) * into / HOUR_MS


class _TypicalYearProfile(HourlyKnotProfile):
    """Knots from a typical year's hourly table, placed ``anchor_ms`` after each hour's start."""

    def __init__(self, capacity_w: int, weather: Weather, anchor_ms: int) -> None:
        super().__init__(capacity_w)
        self.weather = weather
        self._anchor_ms = anchor_ms
        self._offset_ms = weather.utc_offset_ms
        self.phase_ms = (anchor_ms - self._offset_ms) % HOUR_MS
        self._by_hour: tuple[int, ...] = ()

    def _set_table(self, by_hour: Iterable[int]) -> None:
        table = tuple(by_hour)
        if len(table) != HOURS_PER_YEAR or not all(0 <= p <= self.capacity_w for p in table):
            raise ValueError("hourly powers must be 8760 values within [0, capacity]")
        self._by_hour = table

    def knot_power_w(self, knot: int) -> int:
        local_hour_start = self.knot_time_ms(knot) + self._offset_ms - self._anchor_ms
        return self._by_hour[tmy_hour(local_hour_start)]

    def hourly_power_w(self) -> tuple[int, ...]:
        """The knot power for each hour of the typical year, in W."""
        return self._by_hour


class SolarFromIrradiance(_TypicalYearProfile):
    """A PV array on the horizontal, driven by measured global horizontal irradiance.

    ``P = capacity * GHI / 1000 W/m² * performance_ratio * (1 + temperature_coefficient *
    (T_cell - 25 °C))``, clipped to ``[0, capacity]``, with the NOCT cell temperature
    ``T_cell = T_air + (noct_c - 20) / 800 W/m² * GHI``. Knots at each hour's midpoint
    (local standard time), where the hour's mean irradiance belongs.
    """

    def __init__(
        self,
        capacity_w: int,
        weather: Weather,
        *,
        performance_ratio: float = 0.8,
        temperature_coefficient: float = -0.004,  # per °C of cell temperature above 25 °C
        noct_c: float = 45.0,
    ) -> None:
        if not 0 <= performance_ratio <= 1:
            raise ValueError("performance_ratio must be within [0, 1]")
        super().__init__(capacity_w, weather, anchor_ms=HOUR_MS // 2)
        self.performance_ratio = performance_ratio
        self.temperature_coefficient = temperature_coefficient
        self.noct_c = noct_c
        self._set_table(
            self.power_from(ghi, temperature)
            for ghi, temperature in zip(weather.ghi_w_m2, weather.temp_air_c, strict=True)
        )

    def cell_temperature_c(self, ghi_w_m2: float, temp_air_c: float) -> float:
        return temp_air_c + (self.noct_c - 20) / 800 * ghi_w_m2

    def power_from(self, ghi_w_m2: float, temp_air_c: float) -> int:
        """Whole W for an irradiance and an air temperature."""
        cell = self.cell_temperature_c(ghi_w_m2, temp_air_c)
        factor = max(0.0, 1 + self.temperature_coefficient * (cell - 25))
        watts = self.capacity_w * ghi_w_m2 / 1000 * self.performance_ratio * factor
        return min(self.capacity_w, max(0, math.floor(watts)))

    def __repr__(self) -> str:
        return (
            f"SolarFromIrradiance({self.capacity_w} W, {self.weather.name}, "
            f"PR {self.performance_ratio:.2f})"
        )


class WindFromSpeed(_TypicalYearProfile):
    """A wind turbine driven by measured wind speed through a power curve.

    The 10 m speed is extrapolated to hub height with the power law
    ``v_hub = v * (hub_height_m / measurement_height_m) ** shear_exponent``; the curve is
    0 below ``cut_in``, ``(v³ - cut_in³) / (rated³ - cut_in³)`` of capacity up to ``rated``,
    full capacity up to ``cut_out`` and 0 above it (the turbine stops in a storm). Speeds in
    m/s. Knots at the observation time (the end of each TMY hour); power is interpolated
    between them, so an hour between a calm and a windy observation ramps.
    """

    def __init__(
        self,
        capacity_w: int,
        weather: Weather,
        *,
        hub_height_m: float = 80.0,
        measurement_height_m: float = 10.0,
        shear_exponent: float = 1 / 7,
        cut_in: float = 3.0,
        rated: float = 12.0,
        cut_out: float = 25.0,
    ) -> None:
        if not 0 <= cut_in < rated <= cut_out:
            raise ValueError("wind speeds must satisfy 0 <= cut_in < rated <= cut_out")
        if hub_height_m <= 0 or measurement_height_m <= 0:
            raise ValueError("heights must be positive")
        super().__init__(capacity_w, weather, anchor_ms=HOUR_MS)
        self.hub_height_m = hub_height_m
        self.measurement_height_m = measurement_height_m
        self.shear_exponent = shear_exponent
        self.cut_in = cut_in
        self.rated = rated
        self.cut_out = cut_out
        self._set_table(self.power_at_speed(speed) for speed in weather.wind_speed_m_s)

    def hub_speed(self, measured_m_s: float) -> float:
        ratio = self.hub_height_m / self.measurement_height_m
        return measured_m_s * math.pow(ratio, self.shear_exponent)

    def curve_fraction(self, hub_m_s: float) -> float:
        """The power curve: the fraction of capacity produced at a hub-height speed."""
        if hub_m_s < self.cut_in or hub_m_s > self.cut_out:
            return 0.0
        if hub_m_s >= self.rated:
            return 1.0
        return (hub_m_s**3 - self.cut_in**3) / (self.rated**3 - self.cut_in**3)

    def power_at_speed(self, measured_m_s: float) -> int:
        """Whole W for a speed measured at ``measurement_height_m``."""
        fraction = self.curve_fraction(self.hub_speed(measured_m_s))
        return min(self.capacity_w, max(0, math.floor(self.capacity_w * fraction)))

    def __repr__(self) -> str:
        return (
            f"WindFromSpeed({self.capacity_w} W, {self.weather.name}, hub {self.hub_height_m:g} m)"
        )


class HydroRunOfRiver(HourlyKnotProfile):
    """A run-of-river plant: near-constant, a slow seasonal swing and a little noise.

    At hourly knots (UTC) the output is ``base_fraction + seasonal_amplitude *
    cos(2π (day - peak_day_of_year) / 365.2425) + noise`` of capacity, clipped to
    ``[0, 1]``. The noise, at most ``variation``, is a day-to-day wander (interpolated
    between days) plus an hourly flicker, both hashed from ``seed``.
    """

    def __init__(
        self,
        capacity_w: int,
        *,
        base_fraction: float = 0.85,
        seasonal_amplitude: float = 0.1,
        variation: float = 0.02,
        peak_day_of_year: int = 135,  # mid-May: snowmelt
        seed: int = 0,
    ) -> None:
        if min(base_fraction, seasonal_amplitude, variation) < 0:
            raise ValueError("fractions must be at least 0")
        super().__init__(capacity_w)
        self.base_fraction = base_fraction
        self.seasonal_amplitude = seasonal_amplitude
        self.variation = variation
        self.peak_day_of_year = peak_day_of_year
        self.seed = seed
        self._knot_power = lru_cache(maxsize=4096)(self._compute_knot_power)

    @property
    def band_fraction(self) -> tuple[float, float]:
        """The lowest and highest fraction of capacity the plant can produce."""
        swing = self.seasonal_amplitude + self.variation
        return max(0.0, self.base_fraction - swing), min(1.0, self.base_fraction + swing)

    def fraction_at_knot(self, knot: int) -> float:
        day, hour = divmod(knot, 24)
        season = math.cos(
            2 * math.pi * (knot / 24 - (self.peak_day_of_year - 1)) / _TROPICAL_YEAR_DAYS
        )
        wander = _unit(self.seed, "day", day) + (
            _unit(self.seed, "day", day + 1) - _unit(self.seed, "day", day)
        ) * (hour / 24)
        noise = self.variation * (0.75 * wander + 0.25 * _unit(self.seed, "hour", knot))
        fraction = self.base_fraction + self.seasonal_amplitude * season + noise
        return min(1.0, max(0.0, fraction))

    def knot_power_w(self, knot: int) -> int:
        return self._knot_power(knot)

    def _compute_knot_power(self, knot: int) -> int:
        return min(self.capacity_w, math.floor(self.capacity_w * self.fraction_at_knot(knot)))

    def __repr__(self) -> str:
        return f"HydroRunOfRiver({self.capacity_w} W, seed {self.seed})"


class BatteryDischarge(GenerationProfile):
    """A battery's export meter: charges by day (exports nothing), discharges in the evening peak.

    The meter counts energy *exported*, so its counter only rises while discharging. Every
    local day (standard time) the battery starts empty, charges during
    ``charge_start_hour`` + ``charge_hours`` and exports at its full power rating
    (``capacity_w``) from ``discharge_start_hour`` until it is empty or the
    ``discharge_hours`` window ends. What it holds is at most ``energy_wh``:

    * with ``weather``, it charges from a co-located PV array of ``pv_ratio * capacity_w``,
      so a dull day leaves it partly charged;
    * without, the grid tops it up to 85-100 % (hashed from ``seed`` per day).

    ``round_trip_efficiency`` of what was stored comes back out. Each day's export
    is never above ``energy_wh`` and lies entirely within the discharge window.
    """

    def __init__(
        self,
        capacity_w: int,
        *,
        energy_wh: int | None = None,  # default: a two-hour battery
        discharge_start_hour: int = 17,
        discharge_hours: int = 4,
        charge_start_hour: int = 10,
        charge_hours: int = 5,
        round_trip_efficiency: float = 0.9,
        weather: Weather | None = None,
        pv_ratio: float = 1.5,
        utc_offset_hours: float | None = None,  # default: the weather's, else UTC
        seed: int = 0,
    ) -> None:
        super().__init__(capacity_w)
        self.energy_wh = 2 * self.capacity_w if energy_wh is None else int(energy_wh)
        if self.energy_wh < 0:
            raise ValueError("energy_wh must be at least 0")
        if not 0 <= charge_start_hour < charge_start_hour + charge_hours <= discharge_start_hour:
            raise ValueError("the battery charges before it discharges, within the day")
        if discharge_hours <= 0 or discharge_start_hour + discharge_hours > 24:
            raise ValueError("the discharge window must lie within the day")
        if not 0 < round_trip_efficiency <= 1:
            raise ValueError("round_trip_efficiency must be within (0, 1]")
        self.discharge_start_hour = discharge_start_hour
        self.discharge_hours = discharge_hours
        self.charge_start_hour = charge_start_hour
        self.charge_hours = charge_hours
        self.round_trip_efficiency = round_trip_efficiency
        self.weather = weather
        self.pv_ratio = pv_ratio
        if utc_offset_hours is None:
            utc_offset_hours = weather.utc_offset_hours if weather is not None else 0.0
        self.utc_offset_ms = round(utc_offset_hours * HOUR_MS)
        self.seed = seed
        self._window = lru_cache(maxsize=1024)(self._compute_window)

    def stored_wh(self, local_day: int) -> float:
        """Energy held at the end of the charge window of a local day (from 1970-01-01)."""
        if self.weather is None:
            return self.energy_wh * (0.925 + 0.075 * _unit(self.seed, "charge", local_day))
        pv_w = self.pv_ratio * self.capacity_w
        charged = 0.0
        for hour in range(self.charge_start_hour, self.charge_start_hour + self.charge_hours):
            ghi = self.weather.ghi_w_m2[tmy_hour(local_day * DAY_MS + hour * HOUR_MS)]
            charged += min(float(self.capacity_w), pv_w * ghi / 1000)  # Wh in this hour
        return min(float(self.energy_wh), charged)

    def discharge_window_ms(self, local_day: int) -> tuple[int, int]:
        """``[start, end)`` in Unix ms of a local day's discharge (empty if nothing is stored)."""
        return self._window(local_day)

    def _compute_window(self, local_day: int) -> tuple[int, int]:
        start = local_day * DAY_MS - self.utc_offset_ms + self.discharge_start_hour * HOUR_MS
        if self.capacity_w == 0:
            return start, start
        exported_watt_ms = math.floor(
            self.stored_wh(local_day) * self.round_trip_efficiency * WATT_MS_PER_WH
        )
        duration = min(exported_watt_ms // self.capacity_w, self.discharge_hours * HOUR_MS)
        return start, start + max(0, duration)

    def watt_milliseconds(self, start_ms: int, end_ms: int) -> int:
        if end_ms <= start_ms:
            return 0
        first_day = (start_ms + self.utc_offset_ms) // DAY_MS
        last_day = (end_ms - 1 + self.utc_offset_ms) // DAY_MS
        discharging_ms = 0
        for day in range(first_day, last_day + 1):
            window_start, window_end = self.discharge_window_ms(day)
            discharging_ms += max(0, min(end_ms, window_end) - max(start_ms, window_start))
        return self.capacity_w * discharging_ms

    def power_w(self, at_ms: int) -> float:
        window_start, window_end = self.discharge_window_ms((at_ms + self.utc_offset_ms) // DAY_MS)
        return float(self.capacity_w) if window_start <= at_ms < window_end else 0.0

    def __repr__(self) -> str:
        return f"BatteryDischarge({self.capacity_w} W, {self.energy_wh} Wh)"


def _unit(seed: int, stream: str, index: int) -> float:
    """A deterministic pseudo-random number in [-1, 1] for (seed, stream, index)."""
    digest = hashlib.blake2b(f"{seed}:{stream}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**63 - 1


# -- the registry -----------------------------------------------------------------------------


def source_for(
    energy_type: str, capacity_w: int, *, seed: int, weather: Weather | None = None
) -> GenerationProfile:
    """The demo fleet's profile for a meter of ``energy_type`` (solar, wind, hydro, battery).

    ``weather`` defaults to the bundled station for the type (:func:`default_weather`).
    ``seed`` makes meters of one type differ, deterministically: the solar performance
    ratio (0.76-0.84), the wind turbine's hub height (60, 80 or 100 m), the hydro noise and
    the battery's discharge start (17:00 or 18:00). Hydro ignores the weather.
    """
    kind = str(energy_type).lower()
    if kind not in ENERGY_TYPES:
        raise ValueError(f"unknown energy type {energy_type!r}; expected one of {ENERGY_TYPES}")
    if kind == "hydro":
        return HydroRunOfRiver(capacity_w, seed=seed)
    weather = weather if weather is not None else default_weather(kind)
    if kind == "solar":
        ratio = 0.8 + 0.04 * _unit(seed, "performance_ratio", 0)
        return SolarFromIrradiance(capacity_w, weather, performance_ratio=ratio)
    if kind == "wind":
        hub_height = (60.0, 80.0, 100.0)[_index(seed, "hub_height", 3)]
        return WindFromSpeed(capacity_w, weather, hub_height_m=hub_height)
    start_hour = 17 + _index(seed, "discharge_start", 2)
    return BatteryDischarge(capacity_w, weather=weather, discharge_start_hour=start_hour, seed=seed)


# -- each meter its own -----------------------------------------------------------------------

# The most a derating takes off (soiling, shade, wiring losses), an east or
# west lean takes off the other half of the day, and a passing cloud or a
# missed gust takes off one hour at a meter's own site.
MAX_DERATE: Final = 0.10
MAX_LEAN: Final = 0.10
MAX_LOCAL_WEATHER: Final = 0.10
_PPM: Final = 1_000_000


class GenerationSource(Protocol):
    """What a meter measures (``iot.meter.GenerationSource``, repeated to keep this module
    free of the MQTT client): energy in W·ms over ``[start_ms, end_ms)``."""

    def watt_milliseconds(self, start_ms: int, end_ms: int) -> int: ...


@dataclass(frozen=True)
class Variation:
    """How one honest meter differs from the others its weather station drives.

    One station drives every meter of a type, so without this, neighbours'
    curves would be exact scaled copies of each other (and the fraud
    detectors' ``replayed_curve`` and ``peer_outlier`` would rightly say so).
    Real neighbours differ: ``derate`` (a fixed share of the output, 0.90-1.00),
    for solar a ``lean`` of the panels (east, negative: the afternoon is lower
    by up to ``|lean|``; west, positive: the morning is), and ``local_weather``
    (each hour up to that share below the station's, hashed from ``seed`` and
    the UTC hour). Every factor is at most 1, so a varied source never
    produces more than the source it varies, nor above capacity.
    """

    derate: float = 1.0
    lean: float = 0.0
    local_weather: float = 0.0
    longitude: float = 0.0  # degrees east, for the lean: the meter's solar hour
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.derate <= 1 or not 0 <= self.local_weather <= 1 or abs(self.lean) > 1:
            raise ValueError("a variation only takes away: derate, |lean|, local_weather in [0, 1]")

    @classmethod
    def for_meter(cls, energy_type: str, seed: int, longitude: float = 0.0) -> Variation:
        """A meter's own variation, from its seed: derating for every type, a lean
        for solar, local weather for solar and wind (hydro and batteries are
        varied by their own profiles' seed)."""
        kind = str(energy_type).lower()
        return cls(
            derate=1 - MAX_DERATE * _fraction(seed, "derate"),
            lean=MAX_LEAN * (2 * _fraction(seed, "lean") - 1) if kind == "solar" else 0.0,
            local_weather=MAX_LOCAL_WEATHER if kind in ("solar", "wind") else 0.0,
            longitude=longitude,
            seed=seed,
        )

    def factor_ppm(self, hour: int) -> int:
        """The share of the station's output this meter produces in UTC hour ``hour``, in ppm."""
        factor = self.derate
        if self.lean:
            solar_hour = (hour + 0.5 + self.longitude / 15) % 24
            side = (solar_hour - 12) / 6 if self.lean < 0 else (12 - solar_hour) / 6
            factor *= 1 - abs(self.lean) * max(0.0, min(1.0, side))
        if self.local_weather:
            factor *= 1 - self.local_weather * _fraction(self.seed, "local", hour)
        return math.floor(factor * _PPM)


class Varied:
    """A generation source with a meter's own :class:`Variation` (a ``GenerationSource``).

    The factor is constant within each UTC hour. Energy stays exactly additive:
    within an hour ``H`` it is ``G(x) = floor(factor * E(H, x))`` of the
    source's energy since the hour began, and an interval's energy is the
    difference of ``G`` at its ends, hour by hour, so the sums telescope.
    """

    def __init__(self, source: GenerationSource, variation: Variation) -> None:
        self.source = source
        self.variation = variation
        self._factors: dict[int, int] = {}

    def _factor(self, hour: int) -> int:
        factor = self._factors.get(hour)
        if factor is None:
            if len(self._factors) > 4096:
                self._factors.clear()
            factor = self._factors[hour] = self.variation.factor_ppm(hour)
        return factor

    def _within_hour(self, hour: int, at_ms: int) -> int:
        """``G(at_ms)`` for the hour: the varied energy from the hour's start to ``at_ms``."""
        hour_start = hour * HOUR_MS
        if at_ms <= hour_start:
            return 0
        return self._factor(hour) * self.source.watt_milliseconds(hour_start, at_ms) // _PPM

    def watt_milliseconds(self, start_ms: int, end_ms: int) -> int:
        if end_ms <= start_ms:
            return 0
        first, last = start_ms // HOUR_MS, (end_ms - 1) // HOUR_MS
        energy = 0
        for hour in range(first, last + 1):
            energy += self._within_hour(hour, min(end_ms, (hour + 1) * HOUR_MS))
            energy -= self._within_hour(hour, max(start_ms, hour * HOUR_MS))
        return energy

    def __repr__(self) -> str:
        return f"Varied({self.source!r}, {self.variation})"


def _fraction(seed: int, stream: str, index: int = 0) -> float:
    """A deterministic number in [0, 1) for (seed, stream, index)."""
    digest = hashlib.blake2b(f"{seed}:{stream}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _index(seed: int, stream: str, choices: int) -> int:
    digest = hashlib.blake2b(f"{seed}:{stream}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % choices
