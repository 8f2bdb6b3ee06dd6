"""Fraud detectors: each catches a constructed cheat and stays quiet on a matching honest series.

Honest series come from the demo fleet's generation profiles
(``iot.demo.profiles``: measured TMY3 weather), read every 15 minutes the way
``iot.meter`` publishes them: a whole-Wh counter, sent only when it moved.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.domain import fraud
from chalicelib.domain.credits import Credit
from chalicelib.domain.disputes import MAX_DETECTOR_NAME
from chalicelib.domain.fraud import (
    DayCurve,
    MeterContext,
    MintedReading,
    Observation,
    PeerHistogram,
    Suspicion,
    WatchState,
)
from chalicelib.domain.providers import EnergyType, Location, Provider
from iot.demo.profiles import (
    BatteryDischarge,
    HydroRunOfRiver,
    SolarFromIrradiance,
    WindFromSpeed,
    default_weather,
)

HOUR = 3_600_000
DAY = 24 * HOUR
STEP = 15 * 60_000
WMS_PER_WH = 3_600_000
GREENSBORO = Location(36_100_000, -79_950_000)  # the solar weather station
SAND_POINT = Location(55_317_000, -160_517_000)  # the wind weather station
BERGEN = Location(60_391_000, 5_322_000)
JUNE = int(datetime(2026, 6, 1, tzinfo=UTC).timestamp() * 1000)
MARCH = int(datetime(2026, 3, 1, tzinfo=UTC).timestamp() * 1000)

Power = Callable[[int, int], int]  # energy in W·ms over [start, end)


def context(
    energy_type: EnergyType,
    capacity_w: int,
    location: Location = GREENSBORO,
    meter: str = "meter_one",
    storage_wh: int | None = None,
) -> MeterContext:
    return MeterContext(meter, energy_type, capacity_w, location, storage_wh)


def minted(power: Power, start_ms: int, days: float, phase_ms: int = 0) -> list[MintedReading]:
    """What a meter reading every 15 minutes mints: a baseline, then each move of its counter."""
    first = start_ms + phase_ms
    readings = [MintedReading(first, first, 0)]
    total = published_wh = 0
    published_at = first
    for step in range(1, int(days * 96) + 1):
        at = first + step * STEP
        total += power(at - STEP, at)
        counter = total // WMS_PER_WH
        if counter > published_wh:
            readings.append(MintedReading(published_at, at, counter - published_wh))
            published_wh, published_at = counter, at
    return readings


def constant(watts: float) -> Power:
    return lambda start, end: int(watts * (end - start))


def switched(before: Power, after: Power, at_ms: int) -> Power:
    """``before`` until ``at_ms``, then ``after`` (a meter that starts to cheat)."""
    return lambda start, end: before(start, end) if end <= at_ms else after(start, end)


def scaled(power: Power, factor: float, capacity_w: int) -> Power:
    """A cheat that multiplies, kept under the ingest's limit (capacity + 5 %)."""
    return lambda start, end: min(int(power(start, end) * factor), capacity_w * (end - start))


class Run:
    """Every reading observed in order, as the services layer would."""

    def __init__(self, meter: MeterContext, state: WatchState | None = None) -> None:
        self.context = meter
        self.state = state or WatchState()
        self.suspicions: list[Suspicion] = []
        self.hours: list[fraud.HourBucket] = []
        self.days: list[DayCurve] = []
        self.first_ms: int | None = None

    def feed(self, readings: Iterable[MintedReading]) -> Run:
        for reading in readings:
            if self.first_ms is None:
                self.first_ms = reading.interval_start_ms
            observation: Observation = fraud.observe(self.state, reading, self.context)
            self.state = observation.state
            self.suspicions.extend(observation.suspicions)
            self.hours.extend(observation.closed_hours)
            self.days.extend(observation.closed_days)
        return self

    def detectors(self) -> set[str]:
        return {s.detector for s in self.suspicions}


def solar_profile(capacity_w: int = 8_000) -> SolarFromIrradiance:
    return SolarFromIrradiance(capacity_w, default_weather("solar"))


# -- inputs and outputs ----------------------------------------------------------------------


def test_inputs_come_from_a_credit_and_a_provider() -> None:
    provider = Provider(
        provider_id="energy-0x0123456789abcdef",
        owner="alice",
        display_name="Roof",
        energy_type=EnergyType.SOLAR,
        jurisdiction="US_NC",
        location=GREENSBORO,
        capacity_wh=8_000,
        price_micro_block_per_kwh=80_000,
        stake_micro_block=1_500_000_000,
        meter_address="meter_one",
        meter_public_key="00" * 32,
    )
    credit = Credit(
        credit_id="ab" * 32,
        provider_id=provider.provider_id,
        meter_address="meter_one",
        energy_type=EnergyType.SOLAR,
        jurisdiction="US_NC",
        interval_start_ms=JUNE,
        interval_end_ms=JUNE + STEP,
        wh=1_234,
        counter_wh=99_999,
        signature="cd" * 64,
        minted_at_ms=JUNE + STEP,
        expires_at_ms=JUNE + 30 * DAY,
    )
    assert MintedReading.of(credit) == MintedReading(JUNE, JUNE + STEP, 1_234)
    assert MeterContext.of(provider) == context(EnergyType.SOLAR, 8_000)
    assert MeterContext.of(provider).day_shift_hours == -5  # 79.95° W


@pytest.mark.parametrize("name", fraud.DETECTORS)
def test_every_detector_name_is_a_valid_flag_detector(name: str) -> None:
    assert MAX_DETECTOR_NAME.match(name)


def test_a_suspicion_becomes_an_automatic_flag_on_a_meter_window() -> None:
    suspicion = Suspicion(
        detector=fraud.OVER_CAPACITY,
        meter_address="meter_one",
        score_bps=7_000,
        window_start_ms=JUNE,
        window_end_ms=JUNE + HOUR,
        reason="A meter reported more than its capacity over 1 hours.",
        evidence=("1 Wh",),
    )
    flag = suspicion.flag(JUNE + 2 * HOUR)
    assert (flag.detector, flag.flagger, flag.bond_micro_block) == (fraud.OVER_CAPACITY, None, 0)
    subject = suspicion.subject()
    # The readings taken in (start, end]: those that reported the hour's energy.
    assert (subject.meter_address, subject.window_start_ms, subject.window_end_ms) == (
        "meter_one",
        JUNE + 1,
        JUNE + HOUR + 1,
    )
    assert suspicion.flags


def test_scores_run_from_the_threshold_to_twice_it() -> None:
    assert fraud.score_bps(100, 100) == fraud.FLAG_THRESHOLD_BPS
    assert fraud.score_bps(150, 100) == 7_500
    assert fraud.score_bps(500, 100) == 10_000


# -- physics ---------------------------------------------------------------------------------


def test_honest_solar_days_raise_nothing() -> None:
    meter = context(EnergyType.SOLAR, 8_000)
    run = Run(meter).feed(minted(solar_profile().watt_milliseconds, JUNE, 20, phase_ms=123_000))
    assert run.suspicions == []
    assert run.days, "the meter's days closed"


def test_solar_energy_at_night_is_flagged() -> None:
    meter = context(EnergyType.SOLAR, 8_000)
    profile = solar_profile()
    # Given an honest week, then a generator behind the meter: 1.6 kW from 02:00 to 04:00 local.
    cheat_start = JUNE + 7 * DAY + 7 * HOUR  # 02:00 EST
    night = constant(1_600)

    def generator(start: int, end: int) -> int:
        inside = cheat_start <= start and end <= cheat_start + 2 * HOUR
        return profile.watt_milliseconds(start, end) + (night(start, end) if inside else 0)

    run = Run(meter).feed(minted(generator, JUNE, 8))
    night_flags = [s for s in run.suspicions if s.detector == fraud.SOLAR_AT_NIGHT]
    # Then one suspicion, on the first cheating reading, and only one that day.
    assert len(night_flags) == 1
    assert cheat_start <= night_flags[0].window_start_ms < cheat_start + HOUR
    assert night_flags[0].score_bps == 10_000
    night_flags[0].flag(cheat_start + HOUR).check()


def test_solar_dawn_and_dusk_are_not_night() -> None:
    # Greensboro, March: the profile's hourly knots ramp up before sunrise; civil twilight covers it.
    meter = context(EnergyType.SOLAR, 20_000)
    run = Run(meter).feed(minted(solar_profile(20_000).watt_milliseconds, MARCH, 14))
    assert fraud.SOLAR_AT_NIGHT not in run.detectors()


def test_an_hour_above_capacity_is_flagged_and_an_hour_at_capacity_is_not() -> None:
    meter = context(EnergyType.HYDRO, 100_000, BERGEN)
    honest = Run(meter).feed(minted(constant(100_000), JUNE, 1))
    assert fraud.OVER_CAPACITY not in honest.detectors()
    # 104 %: every reading passes the ingest's 5 % tolerance, the hour does not.
    cheat = Run(meter).feed(minted(constant(104_000), JUNE, 1))
    flags = [s for s in cheat.suspicions if s.detector == fraud.OVER_CAPACITY]
    assert len(flags) == 1  # one a day
    assert flags[0].window_end_ms - flags[0].window_start_ms == HOUR


def test_a_battery_that_exports_more_than_it_stores_is_flagged() -> None:
    meter = context(EnergyType.BATTERY, 10_000)  # no declared storage: 4 h assumed
    battery = BatteryDischarge(10_000, energy_wh=20_000, weather=default_weather("battery"))
    honest = Run(meter).feed(minted(battery.watt_milliseconds, JUNE, 14))
    assert honest.suspicions == []
    # Five hours at full power without a rest: 50 kWh from a battery of at most 40 kWh.
    evening = JUNE + 22 * HOUR
    endless = switched(constant(0), constant(10_000), evening)
    run = Run(meter).feed(minted(switched(endless, constant(0), evening + 5 * HOUR), JUNE, 1.5))
    assert fraud.BATTERY_OVER_STORAGE in run.detectors()
    # With its storage declared (20 kWh), 2.5 hours is already too much.
    declared = context(EnergyType.BATTERY, 10_000, storage_wh=20_000)
    short = switched(endless, constant(0), evening + 150 * 60_000)
    assert fraud.BATTERY_OVER_STORAGE in Run(declared).feed(minted(short, JUNE, 1.5)).detectors()
    longer_honest = switched(endless, constant(0), evening + 2 * HOUR)
    assert Run(declared).feed(minted(longer_honest, JUNE, 1.5)).suspicions == []


# -- history ---------------------------------------------------------------------------------


def test_a_hydro_plant_far_above_its_own_history_is_flagged() -> None:
    meter = context(EnergyType.HYDRO, 100_000, BERGEN)
    river = HydroRunOfRiver(100_000, base_fraction=0.5, seed=3)
    honest = Run(meter).feed(minted(river.watt_milliseconds, JUNE, 20))
    assert honest.suspicions == []
    jump_at = JUNE + 12 * DAY + 9 * HOUR
    cheat = switched(
        river.watt_milliseconds, scaled(river.watt_milliseconds, 1.5, 100_000), jump_at
    )
    run = Run(meter).feed(minted(cheat, JUNE, 14))
    flags = [s for s in run.suspicions if s.detector == fraud.ABOVE_PROFILE]
    assert flags
    assert jump_at < flags[0].window_end_ms <= jump_at + 12 * HOUR


def test_a_battery_exporting_longer_than_usual_is_above_its_profile() -> None:
    meter = context(EnergyType.BATTERY, 10_000)
    battery = BatteryDischarge(10_000, utc_offset_hours=-5, seed=4)  # charged from the grid
    cheat_at = JUNE + 10 * DAY
    inflated = switched(
        battery.watt_milliseconds,
        lambda start, end: (
            battery.watt_milliseconds(start - HOUR, end - HOUR)
            + battery.watt_milliseconds(start, end)
        ),
        cheat_at,
    )
    assert Run(meter).feed(minted(battery.watt_milliseconds, JUNE, 14)).suspicions == []
    run = Run(meter).feed(minted(inflated, JUNE, 12))
    assert fraud.ABOVE_PROFILE in run.detectors()


@pytest.mark.parametrize(
    ("energy_type", "location", "capacity_w", "profile", "flat_w"),
    [
        (
            EnergyType.WIND,
            SAND_POINT,
            300_000,
            WindFromSpeed(300_000, default_weather("wind")),
            120_000,
        ),
        (EnergyType.HYDRO, BERGEN, 500_000, HydroRunOfRiver(500_000, seed=5), 425_000),
    ],
    ids=["wind", "hydro"],
)
def test_a_flat_line_where_the_source_varies_is_flagged(
    energy_type: EnergyType,
    location: Location,
    capacity_w: int,
    profile: WindFromSpeed | HydroRunOfRiver,
    flat_w: int,
) -> None:
    meter = context(energy_type, capacity_w, location)
    honest = Run(meter).feed(minted(profile.watt_milliseconds, MARCH, 20))
    assert fraud.FLAT_LINE not in honest.detectors()
    cheat_at = MARCH + 10 * DAY
    run = Run(meter).feed(
        minted(switched(profile.watt_milliseconds, constant(flat_w), cheat_at), MARCH, 12)
    )
    flags = [s for s in run.suspicions if s.detector == fraud.FLAT_LINE]
    assert flags
    assert flags[0].window_start_ms >= cheat_at
    assert flags[0].window_end_ms - flags[0].window_start_ms >= (
        fraud.FLAT_RULES[energy_type].min_ms
    )


def test_a_solar_meter_flat_while_the_sun_climbs_is_flagged() -> None:
    meter = context(EnergyType.SOLAR, 8_000)
    profile = solar_profile()

    def flat_by_day(start: int, end: int) -> int:
        # 2.8 kW whenever the honest array produces anything: the sun's hours, flat.
        return 2_800 * (end - start) if profile.watt_milliseconds(start, end) else 0

    cheat_at = JUNE + 5 * DAY
    run = Run(meter).feed(
        minted(switched(profile.watt_milliseconds, flat_by_day, cheat_at), JUNE, 7)
    )
    assert fraud.FLAT_LINE in run.detectors()


def test_a_replayed_day_of_the_same_meter_is_found() -> None:
    meter = context(EnergyType.SOLAR, 8_000)
    profile = solar_profile()
    sunny_day = JUNE + 2 * DAY

    def replay(start: int, end: int) -> int:
        back = (start - sunny_day) // DAY * DAY
        return profile.watt_milliseconds(start - back, end - back)

    honest = Run(meter).feed(minted(profile.watt_milliseconds, JUNE, 10))
    assert len(honest.days) >= 8
    index = ReplayIndex()
    assert [s for curve in honest.days if (s := index.add(curve))] == []
    run = Run(meter).feed(
        minted(switched(profile.watt_milliseconds, replay, JUNE + 5 * DAY), JUNE, 8)
    )
    index = ReplayIndex()
    found = [s for curve in run.days if (s := index.add(curve))]
    assert found
    assert all(s.detector == fraud.REPLAYED_CURVE for s in found)
    assert found[0].window_start_ms >= JUNE + 5 * DAY
    # Equal to the counter's rounding: a Wh here and there, well inside the tolerance.
    assert found[0].score_bps > 6_000
    assert "its own earlier day" in found[0].reason


def test_another_meters_curve_scaled_and_shifted_is_found() -> None:
    # Given an honest meter at Greensboro and, 5 hours later, a copy scaled to 5 kW.
    profile = solar_profile(8_000)
    original = Run(context(EnergyType.SOLAR, 8_000, meter="honest")).feed(
        minted(profile.watt_milliseconds, JUNE, 6, phase_ms=77_000)
    )
    shift = 5 * HOUR

    def copy(start: int, end: int) -> int:
        return profile.watt_milliseconds(start - shift, end - shift) * 5 // 8

    copier = Run(context(EnergyType.SOLAR, 5_000, SAND_POINT, meter="copier")).feed(
        minted(copy, JUNE + shift, 6, phase_ms=77_000)
    )
    index = ReplayIndex()
    for curve in original.days:
        assert index.add(curve) is None
    found = [s for curve in copier.days if (s := index.add(curve))]
    assert len(found) >= 4
    assert all(s.meter_address == "copier" for s in found)
    assert "honest" in found[0].evidence[1]


def test_replay_index_entries_stay_bounded() -> None:
    curves = [DayCurve("m", day, day * 24 + 10, (10, 20, 30, 40, 30, 20, day)) for day in range(40)]
    entry: tuple[DayCurve, ...] = ()
    for curve in curves:
        entry = fraud.remember(entry, curve)
    assert len(entry) == fraud.REPLAY_CANDIDATES_PER_KEY
    assert entry[0] == curves[-1]
    assert fraud.remember((curves[0],), DayCurve("m", 200, 0, (1,))) == (
        DayCurve("m", 200, 0, (1,)),
    )  # two months later, the old curve is gone


class ReplayIndex:
    """The replay index as the services layer keeps it: key -> the latest curves."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[DayCurve, ...]] = {}

    def add(self, curve: DayCurve) -> Suspicion | None:
        keys = curve.keys()
        candidates = {(c.meter_address, c.day): c for k in keys for c in self.entries.get(k, ())}
        found = fraud.replay_check(curve, candidates.values())
        for key in keys:
            self.entries[key] = fraud.remember(self.entries.get(key, ()), curve)
        return found


# -- peers -----------------------------------------------------------------------------------


def test_geohash_matches_the_published_examples() -> None:
    # Wikipedia, "Geohash": ezs42 is about 42.6, -5.6; u4pruydqqvj is 57.64911, 10.40744.
    assert fraud.geohash(42_600_000, -5_600_000, 5) == "ezs42"
    assert fraud.geohash(57_649_110, 10_407_440, 8) == "u4pruydq"


def test_peer_cells_group_meters_by_type_and_place() -> None:
    near = context(EnergyType.SOLAR, 5_000, Location(36_150_000, -79_900_000))
    here = context(EnergyType.SOLAR, 5_000)
    assert fraud.peer_cell(here) == fraud.peer_cell(near) == "solar#dnr"
    assert fraud.peer_cell(context(EnergyType.WIND, 5_000)) == "wind#dnr"
    assert fraud.peer_cell(context(EnergyType.SOLAR, 5_000, SAND_POINT)) != "solar#dnr"
    assert fraud.peer_key("solar#dnr", 493_000) == "solar#dnr#493000"


def test_peer_histogram_median_and_mad() -> None:
    histogram = PeerHistogram()
    for cf in (4_000, 4_100, 4_200, 4_300, 9_000):
        histogram = histogram.adding(cf)
    assert histogram.total == 5
    median = histogram.median_bps()
    assert median == 4_225  # the bin of 42 %, at its centre
    assert histogram.mad_bps(median) == 100
    assert PeerHistogram.from_dict(json.loads(json.dumps(histogram.to_dict()))) == histogram
    assert fraud.peer_bin(12_000) == fraud.PEER_BINS - 1


def peers_at(capacity_factors: Sequence[int]) -> PeerHistogram:
    histogram = PeerHistogram()
    for cf in capacity_factors:
        histogram = histogram.adding(cf)
    return histogram


def review_hours(run: Run, peers: PeerHistogram, includes_self: bool = False) -> list[Suspicion]:
    found: list[Suspicion] = []
    state = run.state
    for bucket in run.hours:
        state, suspicions = fraud.peer_review(
            state, run.context, bucket.hour, peers, includes_self=includes_self
        )
        found.extend(suspicions)
    run.state = state
    return found


def test_a_sunny_meter_among_cloudy_peers_stands_out() -> None:
    # Given peers at 28-34 % of capacity through the middle of the day
    peers = peers_at([2_800, 2_900, 3_000, 3_100, 3_200, 3_300, 3_400])
    meter = context(EnergyType.SOLAR, 10_000)
    noon = JUNE + 15 * HOUR  # 10:00 EST
    readings = [MintedReading(noon, noon, 0)]
    readings += [MintedReading(noon + n * STEP, noon + (n + 1) * STEP, 1_500) for n in range(20)]
    # When the meter reports 60 % for five hours
    run = Run(meter).feed(readings)
    found = review_hours(run, peers)
    # Then it is flagged once, after the rule's minimum of hours
    assert [s.detector for s in found] == [fraud.PEER_OUTLIER]
    assert found[0].window_end_ms - found[0].window_start_ms == 3 * HOUR
    assert "peer cell solar#dnr" in found[0].evidence[2]


def test_a_meter_a_little_above_its_peers_is_not_flagged() -> None:
    peers = peers_at([2_800, 2_900, 3_000, 3_100, 3_200, 3_300, 3_400])
    meter = context(EnergyType.SOLAR, 10_000)
    noon = JUNE + 15 * HOUR
    readings = [MintedReading(noon, noon, 0)]
    readings += [MintedReading(noon + n * STEP, noon + (n + 1) * STEP, 900) for n in range(20)]
    run = Run(meter).feed(readings)  # 36 %: above the median, not by a quarter
    assert review_hours(run, peers) == []


def test_peers_say_nothing_when_too_few_or_at_night() -> None:
    meter = context(EnergyType.SOLAR, 10_000)
    noon = JUNE + 15 * HOUR
    readings = [MintedReading(noon, noon, 0)]
    readings += [MintedReading(noon + n * STEP, noon + (n + 1) * STEP, 1_500) for n in range(20)]
    few = peers_at([3_000, 3_000, 3_000, 3_000])
    dark = peers_at([0, 0, 0, 100, 200, 200, 300])
    assert review_hours(Run(meter).feed(readings), few) == []
    assert review_hours(Run(meter).feed(readings), dark) == []


def test_a_peer_hour_is_reviewed_once_and_the_meters_own_value_is_taken_out() -> None:
    meter = context(EnergyType.SOLAR, 10_000)
    noon = JUNE + 15 * HOUR
    readings = [MintedReading(noon, noon, 0)]
    readings += [MintedReading(noon + n * STEP, noon + (n + 1) * STEP, 1_500) for n in range(8)]
    run = Run(meter).feed(readings)
    hour = run.hours[0].hour
    peers = peers_at([6_000, 2_900, 3_000, 3_100, 3_200, 3_300])  # with the meter's own 60 %
    state, _ = fraud.peer_review(run.state, meter, hour, peers)
    # Five peers once its own 60 % is taken out; their median is the 31 % bin.
    assert (state.peer_hours, state.peer_count, state.peer_median_bps) == (1, 5, 3_125)
    again, _ = fraud.peer_review(state, meter, hour, peers)
    assert again == state


def test_hydro_and_batteries_have_no_peers() -> None:
    state = WatchState()
    meter = context(EnergyType.HYDRO, 10_000, BERGEN)
    assert fraud.peer_review(state, meter, 5, peers_at([1] * 10)) == (state, ())


# -- channel ---------------------------------------------------------------------------------


def test_three_bad_signatures_in_a_day_are_flagged_once() -> None:
    state = WatchState()
    found: list[Suspicion] = []
    for n in range(6):
        state, suspicions = fraud.observe_bad_signature(state, "meter_one", JUNE + n * HOUR)
        found.extend(suspicions)
    assert [s.detector for s in found] == [fraud.BAD_SIGNATURES]
    assert found[0].window_start_ms == JUNE
    assert len(state.bad_signatures_ms) == fraud.CHANNEL_BAD_SIGNATURES


def test_a_stale_signature_now_and_then_is_not_flagged() -> None:
    state = WatchState()
    for n in range(10):
        state, suspicions = fraud.observe_bad_signature(state, "meter_one", JUNE + n * 13 * HOUR)
        assert suspicions == ()
    assert fraud.channel_check("meter_one", JUNE, JUNE + DAY, 2) is None
    assert fraud.channel_check("meter_one", JUNE, JUNE + DAY, 6).score_bps == 10_000  # type: ignore[union-attr]


# -- state -----------------------------------------------------------------------------------


def plain(value: Any) -> bool:
    """Only ints, strs, lists and dicts of them: what DynamoDB stores without floats."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(plain(v) for v in value)
    return isinstance(value, int | str) and not isinstance(value, bool)


def test_state_round_trips_through_plain_values_and_decimals() -> None:
    meter = context(EnergyType.SOLAR, 8_000)
    run = Run(meter).feed(minted(solar_profile().watt_milliseconds, JUNE, 9))
    state, _ = fraud.observe_bad_signature(run.state, "meter_one", JUNE + 8 * DAY)
    item = state.to_dict()
    assert plain(item)
    assert WatchState.from_dict(item) == state
    # DynamoDB hands numbers back as Decimal.
    from_dynamodb = json.loads(json.dumps(item), parse_int=Decimal)
    assert WatchState.from_dict(from_dynamodb) == state


@pytest.mark.parametrize(
    "damage",
    [
        lambda item: item.update(v=2),
        lambda item: item.update(day_wh=Decimal("1.5")),
        lambda item: item.update(ring_wh=[1, 2, 3]),
        lambda item: item["envelope"].__setitem__(0, "12"),
        lambda item: item.pop("open_hour"),
    ],
    ids=["version", "fraction", "short ring", "string", "missing"],
)
def test_a_damaged_state_item_is_refused(damage: Callable[[dict[str, Any]], object]) -> None:
    item = WatchState().to_dict()
    damage(item)
    with pytest.raises(ValueError, match="watch state"):
        WatchState.from_dict(item)


def test_state_size_stays_bounded_over_many_days() -> None:
    meter = context(EnergyType.SOLAR, 20_000)
    run = Run(meter).feed(minted(solar_profile(20_000).watt_milliseconds, JUNE, 60))
    sizes = len(json.dumps(run.state.to_dict(), separators=(",", ":")))
    assert sizes <= 1_500
    assert len(run.state.ring_wh) == fraud.RING_HOURS
    assert len(run.state.flagged_days) <= len(fraud.DETECTORS)


def test_a_redelivered_reading_changes_nothing() -> None:
    meter = context(EnergyType.SOLAR, 8_000)
    readings = minted(solar_profile().watt_milliseconds, JUNE, 2)
    run = Run(meter).feed(readings)
    again = fraud.observe(run.state, readings[-1], meter)
    assert again == Observation(run.state, (), (), ())


def test_an_impossible_reading_is_refused() -> None:
    meter = context(EnergyType.SOLAR, 8_000)
    with pytest.raises(ValueError, match="minted reading"):
        fraud.observe(WatchState(), MintedReading(JUNE, JUNE + STEP, -1), meter)
    with pytest.raises(ValueError, match="minted reading"):
        fraud.observe(WatchState(), MintedReading(JUNE + STEP, JUNE, 1), meter)


energy_types = st.sampled_from(list(EnergyType))


@st.composite
def reading_sequences(draw: st.DrawFn) -> tuple[MeterContext, list[MintedReading]]:
    energy_type = draw(energy_types)
    capacity = draw(st.integers(min_value=1, max_value=2_000_000))
    location = Location(
        draw(st.integers(min_value=-90_000_000, max_value=90_000_000)),
        draw(st.integers(min_value=-180_000_000, max_value=180_000_000)),
    )
    storage = draw(st.none() | st.integers(min_value=0, max_value=10 * capacity))
    at = draw(st.integers(min_value=0, max_value=4_000_000_000_000))
    readings = [MintedReading(at, at, 0)]
    for _ in range(draw(st.integers(min_value=0, max_value=60))):
        gap = draw(st.sampled_from([1, 60_000, STEP, STEP, STEP, HOUR, 3 * HOUR, 30 * HOUR]))
        # Within the ingest's plausibility limit, or anything (the detectors must cope).
        limit = capacity * gap * 105 // (100 * HOUR) + 1
        wh = draw(
            st.integers(min_value=0, max_value=limit) | st.integers(min_value=0, max_value=10**9)
        )
        readings.append(MintedReading(at, at + gap, wh))
        at += gap
    return MeterContext("meter_one", energy_type, capacity, location, storage), readings


@given(reading_sequences())
def test_observe_never_raises_and_suspicions_lie_within_the_observed_data(
    case: tuple[MeterContext, list[MintedReading]],
) -> None:
    meter, readings = case
    run = Run(meter).feed(readings)
    first, last = readings[0].interval_start_ms, readings[-1].interval_end_ms
    for suspicion in run.suspicions:
        assert first <= suspicion.window_start_ms < suspicion.window_end_ms <= last
        assert fraud.FLAG_THRESHOLD_BPS <= suspicion.score_bps <= fraud.BPS
        suspicion.flag(last).check()
        suspicion.subject()
    per_day = [(s.detector, s.window_end_ms // DAY) for s in run.suspicions]
    assert len(per_day) == len(set(per_day)), "one suspicion per detector per day"
    assert WatchState.from_dict(run.state.to_dict()) == run.state
    assert len(run.state.ring_wh) == fraud.RING_HOURS


def test_energy_in_hours_whose_envelope_is_empty_scores_as_far_beyond_as_a_score_goes() -> None:
    """A 1 W plant that made its watt-hour at noon for ten days, read every hour,
    then makes it at dawn: the dawn hour's envelope allows nothing, so that one
    Wh is beyond every ratio. (Hypothesis found it scored 4,166, below the flag
    threshold: the measure was taken against 1 Wh allowed.)"""
    meter = context(EnergyType.HYDRO, 1, BERGEN)
    dawn = JUNE + 10 * DAY + 6 * HOUR
    readings = [MintedReading(JUNE, JUNE, 0)]
    for hour in range(10 * 24 + 8):
        start = JUNE + hour * HOUR
        producing = start == dawn if start >= JUNE + 10 * DAY else hour % 24 == 12
        readings.append(MintedReading(start, start + HOUR, 1 if producing else 0))
    run = Run(meter).feed(readings)
    [flag] = [s for s in run.suspicions if s.detector == fraud.ABOVE_PROFILE]
    assert flag.score_bps == fraud.BPS
    assert flag.window_end_ms == dawn + HOUR
