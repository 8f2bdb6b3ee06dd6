"""The demo fleet: honest meters stay honest under the fraud detectors at the demo's speeds,
each meter varies in its own way (``Varied``), and the cheaters cheat where the detectors look."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from chalicelib.domain import fraud, solar
from chalicelib.domain.fraud import (
    DayCurve,
    MeterContext,
    MintedReading,
    PeerHistogram,
    Suspicion,
    WatchState,
)
from chalicelib.domain.providers import EnergyType, Location
from chalicelib.domain.readings import plausible_increase_wh
from infra.local.options import DemoOptions, demo_options, parse_args
from iot.demo import cheaters
from iot.demo.cheaters import NightGenerator, OverCapacity, night_sites
from iot.demo.fleet import (
    BATTERY_MAX_SPEEDUP,
    Accelerated,
    ProviderPlan,
    honest_source,
    plan_cheaters,
    plan_fleet,
    speedup_for,
)
from iot.demo.fleet import parse_args as fleet_args
from iot.demo.profiles import (
    GREENSBORO_NC,
    SAND_POINT_AK,
    SolarFromIrradiance,
    Variation,
    Varied,
    bundled_weather,
    source_for,
)
from iot.meter import GenerationSource

HOUR = 3_600_000
DAY = 24 * HOUR
WMS_PER_WH = 3_600_000
JUNE = int(datetime(2026, 6, 1, tzinfo=UTC).timestamp() * 1000)
DECEMBER = int(datetime(2026, 12, 1, 6, tzinfo=UTC).timestamp() * 1000)


# -- a meter, and the detectors as the services layer runs them --------------------------------


def minted(
    source: GenerationSource, start_ms: int, end_ms: int, step_ms: int
) -> list[MintedReading]:
    """What ``iot.meter`` publishes every ``step_ms``: a baseline, then each move of its counter."""
    readings = [MintedReading(start_ms, start_ms, 0)]
    counter = remainder = published = 0
    published_at = at = start_ms
    while at + step_ms <= end_ms:
        energy = remainder + source.watt_milliseconds(at, at + step_ms)
        counter += energy // WMS_PER_WH
        remainder = energy % WMS_PER_WH
        at += step_ms
        if counter > published:
            readings.append(MintedReading(published_at, at, counter - published))
            published, published_at = counter, at
    return readings


def context_of(plan: ProviderPlan) -> MeterContext:
    latitude, longitude = plan.micro_degrees
    return MeterContext(
        plan.meter_address,
        EnergyType(plan.energy_type),
        plan.capacity_w,
        Location(latitude, longitude),
    )


def detect(series: dict[str, tuple[MeterContext, list[MintedReading]]]) -> list[Suspicion]:
    """Every detector over every meter's readings, in time order, with shared peers and replays."""
    states: dict[str, WatchState] = {}
    cells: dict[str, PeerHistogram] = {}
    replays: dict[str, tuple[DayCurve, ...]] = {}
    found: list[Suspicion] = []
    events = sorted(
        (reading.interval_end_ms, meter, reading)
        for meter, (_, readings) in series.items()
        for reading in readings
    )
    for _, meter, reading in events:
        context = series[meter][0]
        observation = fraud.observe(states.get(meter, WatchState()), reading, context)
        state = observation.state
        found.extend(observation.suspicions)
        if context.energy_type in fraud.PEER_RULES:
            cell = fraud.peer_cell(context)
            for bucket in observation.closed_hours:
                key = fraud.peer_key(cell, bucket.hour)
                cells[key] = cells.get(key, PeerHistogram()).adding(bucket.capacity_factor_bps)
                before = cells.get(fraud.peer_key(cell, bucket.hour - 1))
                if before is not None:
                    state, suspicions = fraud.peer_review(state, context, bucket.hour - 1, before)
                    found.extend(suspicions)
        for curve in observation.closed_days:
            keys = curve.keys()  # the replay index's keys, not a mapping's
            candidates = {(c.meter_address, c.day): c for k in keys for c in replays.get(k, ())}
            suspicion = fraud.replay_check(curve, candidates.values())
            if suspicion is not None:
                found.append(suspicion)
            for key in keys:
                replays[key] = fraud.remember(replays.get(key, ()), curve)
        states[meter] = state
    return [s for s in found if s.flags]


# -- honest meters ------------------------------------------------------------------------------


def test_solar_meters_stand_at_the_weather_station_that_drives_them() -> None:
    for plan in plan_fleet(16):
        if plan.energy_type != "solar":
            continue
        assert plan.weather is not None
        station = bundled_weather(plan.weather)
        assert plan.jurisdiction == f"US_{station.state}"
        here = plan.micro_degrees
        there = (round(station.latitude * 1e6), round(station.longitude * 1e6))
        precision = fraud.PEER_CELL_PRECISION
        assert fraud.geohash(*here, precision) == fraud.geohash(*there, precision)
        assert abs(here[0] - there[0]) <= 150_000 and abs(here[1] - there[1]) <= 150_000


def test_solar_runs_in_real_time_batteries_at_most_twelve_times_faster() -> None:
    assert speedup_for("solar", 60) == 1
    assert speedup_for("battery", 60) == BATTERY_MAX_SPEEDUP == 12
    assert speedup_for("battery", 5) == 5
    assert (speedup_for("wind", 60), speedup_for("hydro", 60)) == (60, 60)


def test_honest_solar_neighbours_are_not_flagged_and_without_variation_they_would_be() -> None:
    """Six solar meters at Greensboro, one weather station, three June days: their own
    variation keeps them apart; as plain copies of the station, replayed_curve flags them."""
    plans = [p for p in plan_fleet(48) if p.energy_type == "solar" and p.jurisdiction == "US_NC"]
    assert len(plans) == 6
    start, end = JUNE, JUNE + 3 * DAY

    def series(varied: bool) -> dict[str, tuple[MeterContext, list[MintedReading]]]:
        made = {}
        for plan in plans:
            source = honest_source(plan, 60, start, start)
            if not varied:
                source = Varied(
                    source_for(
                        "solar",
                        plan.capacity_w,
                        seed=plan.seed,
                        weather=bundled_weather(GREENSBORO_NC),
                    ),
                    Variation(),
                )
            made[plan.meter_address] = (
                context_of(plan),
                minted(source, start + plan.seed * 37_000, end, 15 * 60_000),
            )
        return made

    assert detect(series(varied=True)) == []
    assert {s.detector for s in detect(series(varied=False))} >= {fraud.REPLAYED_CURVE}


def test_accelerated_wind_hydro_and_battery_stay_honest_for_three_days() -> None:
    """The demo's speeds: wind and hydro 60x, the battery 12x; readings every 30 s."""
    plans = [p for p in plan_fleet(8) if p.energy_type in ("wind", "hydro", "battery")]
    start = DECEMBER
    weather_epoch = start - start % DAY + 11 * HOUR
    series = {
        plan.meter_address: (
            context_of(plan),
            minted(honest_source(plan, 60, start, weather_epoch), start, start + 3 * DAY, 30_000),
        )
        for plan in plans
    }
    assert len(series) == 6

    assert detect(series) == []


def test_a_battery_at_sixty_times_would_export_days_of_energy_without_a_rest() -> None:
    """Why batteries are held to 12x: their idle hours shrink below the detector's hour of rest."""
    battery = next(p for p in plan_fleet(8) if p.energy_type == "battery")
    start = DECEMBER
    profile = source_for("battery", battery.capacity_w, seed=battery.seed)
    fast = Accelerated(profile, 60, start, start - start % DAY + 11 * HOUR)

    flagged = detect(
        {battery.meter_address: (context_of(battery), minted(fast, start, start + 4 * DAY, 30_000))}
    )

    assert {s.detector for s in flagged} == {fraud.BATTERY_OVER_STORAGE}


@given(
    start=st.integers(JUNE, JUNE + 365 * DAY),
    first=st.integers(0, 3 * HOUR),
    second=st.integers(0, 30 * HOUR),
    seed=st.integers(0, 1000),
)
def test_a_varied_source_is_additive_and_never_above_its_source(
    start: int, first: int, second: int, seed: int
) -> None:
    profile = SolarFromIrradiance(10_000, bundled_weather(SAND_POINT_AK))
    varied = Varied(profile, Variation.for_meter("solar", seed, -160.5))
    middle, end = start + first, start + first + second

    whole = varied.watt_milliseconds(start, end)

    assert whole == varied.watt_milliseconds(start, middle) + varied.watt_milliseconds(middle, end)
    assert 0 <= whole <= profile.watt_milliseconds(start, end)
    assert Varied(profile, Variation()).watt_milliseconds(start, end) == profile.watt_milliseconds(
        start, end
    )


def test_each_meter_varies_in_its_own_way() -> None:
    one, two = Variation.for_meter("solar", 1, -79.9), Variation.for_meter("solar", 2, -79.9)
    hours = range(400_000, 400_024)
    assert [one.factor_ppm(h) for h in hours] != [two.factor_ppm(h) for h in hours]
    assert all(0 < one.factor_ppm(h) <= 1_000_000 for h in hours)
    hydro = Variation.for_meter("hydro", 3)
    assert hydro.lean == hydro.local_weather == 0 and 0.9 <= hydro.derate <= 1


# -- cheaters -------------------------------------------------------------------------------------


def test_the_night_side_cheater_stands_where_the_sun_is_down_and_stays_down() -> None:
    now = int(time.time() * 1000)
    sites = night_sites(now)
    assert sites
    darkest = sites[0]
    latitude, longitude = darkest.micro_degrees
    for ahead in range(0, 3 * HOUR, 15 * 60_000):
        assert solar.elevation_deg(latitude, longitude, now + ahead) < cheaters.NIGHT_ELEVATION_DEG
    plans = plan_cheaters(3, now, first=13)
    assert [p.strategy for p in plans] == ["solar_at_night", "over_capacity", "solar_at_night"]
    assert (plans[0].latitude, plans[0].longitude) == (darkest.latitude, darkest.longitude)
    assert plans[0].jurisdiction == darkest.jurisdiction
    assert plans[2].latitude != plans[0].latitude  # a second one at the next dark place
    assert [p.owner for p in plans] == ["prosumer13.demo", "prosumer14.demo", "prosumer15.demo"]


def test_the_night_side_cheater_is_flagged_on_its_first_reading_with_energy() -> None:
    plan = plan_cheaters(1, DECEMBER, first=13)[0]
    source = NightGenerator(plan.capacity_w, *plan.micro_degrees, share=cheaters.NIGHT_SHARE)
    readings = minted(source, DECEMBER, DECEMBER + 10 * 60_000, 30_000)

    flagged = detect({plan.meter_address: (context_of(plan), readings)})

    assert [s.detector for s in flagged] == [fraud.SOLAR_AT_NIGHT]
    assert flagged[0].window_end_ms == readings[1].interval_end_ms


def test_the_over_capacity_cheater_passes_ingest_and_is_flagged_when_an_hour_closes() -> None:
    plan = plan_cheaters(2, DECEMBER, first=13)[1]
    source = OverCapacity(plan.capacity_w)
    start = DECEMBER + 20 * 60_000  # mid-hour, like a demo started at any time
    readings = minted(source, start, start + 2 * HOUR, 30_000)
    assert all(
        r.wh <= plausible_increase_wh(plan.capacity_w, r.interval_end_ms - r.interval_start_ms)
        for r in readings
    )

    flagged = detect({plan.meter_address: (context_of(plan), readings)})

    assert [s.detector for s in flagged] == [fraud.OVER_CAPACITY]
    first_whole_hour = (start // HOUR + 1) * HOUR
    assert flagged[0].window_start_ms == first_whole_hour


def test_the_stacks_demo_options_are_the_fleets_command_line() -> None:
    options = demo_options(
        parse_args(["--demo-meters", "5", "--demo-cheaters", "3", "--demo-validators", "7"])
    )
    assert options is not None

    args = fleet_args(
        ["--rpc-url", "http://x/rpc", "--state-dir", ".", "--mqtt-port", "1", *options.arguments()]
    )

    assert (args.meters, args.cheaters, args.validators) == (5, 3, 7)
    assert DemoOptions().cheaters == 2 and DemoOptions().validators == 5
