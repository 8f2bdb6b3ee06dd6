"""Fraud detection benchmark: honest meters from the demo's profiles, cheaters, and what is caught.

Run from the repository root: ``.venv/bin/python -m bench.fraud`` (or
``.venv/bin/python bench/fraud.py``, or ``make bench``). Options: ``--days``
(default 30), ``--meters`` (honest meters, default 64; at least 6 a site),
``--start`` (default 2026-03-01), ``--seed``, and ``--plain-profiles`` (no
per-meter variation, see 1.).

1. **Fleet.** Honest meters of every type at seven sites, their generation
   from the demo fleet's profiles (``iot.demo.profiles``: NREL TMY3 weather
   for solar, wind and the PV-charged batteries):

   - solar at Greensboro, NC (sunny) and at Sand Point, AK (cloudy), each
     driven by its own station's irradiance;
   - wind at Sand Point (windy) and at Greensboro (light winds);
   - hydro (run of river) in western Norway and in Washington State;
   - batteries at Greensboro (charged by their own PV) and in Texas (charged
     from the grid).

   Meters of a site stand within its peer cell (a 3-character geohash).
   Capacities are drawn from the demo fleet's ranges; each meter reads every
   15 minutes at its own phase and, like ``iot.meter``, publishes only when
   its whole-Wh counter moved.

   One weather station drives every meter of a site, so the profiles alone
   would give neighbours identical curves. Real neighbours differ, so each
   honest meter gets, from its seed, the demo fleet's own variation
   (``iot.demo.profiles.Variation``, applied by ``Varied``): a derating
   (soiling, shade, wiring: 0.90-1.00), for solar an east/west lean of its
   panels (output up to 10 % lower in the afternoon or the morning), and for
   solar and wind its own local weather (each hour up to 10 % below the
   station's: a passing cloud, a gust missed). The same applies to the
   cheaters before they cheat.
2. **Cheaters**, who start cheating on day ``max(8, days // 3)`` (after the
   week of history the envelope needs) at an hour drawn from their seed, and who keep
   each reading under the ingest's plausibility limit (capacity + 5 %): what
   they cannot report now they report as soon as the limit allows. Strategies:
   inflate x1.3, solar at night (a generator behind the meter, 20 % of
   capacity while the sun is down), flat line (a constant in place of the
   source), replayed curve (a solar meter's own sunny day, a wind meter's
   own windy day, and a Sand Point meter copying a Greensboro meter's curve
   5 hours later, scaled to its capacity), a sudden jump (output x2), and bad
   signatures (a device with the meter's certificate but not its key, 4 forged
   readings a day). Honest meters, too, send one stale signature now and then
   (one in 30 meter-days, as after a key rotation).
3. **Detection**, as the services layer would run it: every reading in time
   order through ``observe`` (one state per meter); each closed exact hour
   into its peer cell's histogram, and ``peer_review`` of the hour before;
   each closed day's curve through the replay index (``replay_check`` on the
   candidates under its keys, then ``remember``); bad signatures through
   ``observe_bad_signature``.

Printed: per cheater and per strategy, caught or not and the hours from the
start of cheating to the first suspicion; false flags on honest meter-days
(every meter-day before a cheater starts counts as honest); the detectors'
CPU per 1,000 readings next to raw Ed25519 verification (pynacl) in the same
run; the sizes of the stored state.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as `python bench/fraud.py`: sys.path[0] is bench/

from nacl.signing import SigningKey

from bench._printing import print_table, say
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
from chalicelib.services.fraud_watch import MeterEvent, fold
from iot.demo.profiles import (
    GREENSBORO_NC,
    SAND_POINT_AK,
    BatteryDischarge,
    GenerationProfile,
    HydroRunOfRiver,
    SolarFromIrradiance,
    Variation,
    Varied,
    Weather,
    WindFromSpeed,
    load_weather,
)

HOUR_MS: Final = 3_600_000
DAY_MS: Final = 24 * HOUR_MS
STEP_MS: Final = 15 * 60_000
WMS_PER_WH: Final = 3_600_000
VERIFY_SAMPLES: Final = 3_000
HONEST_BAD_SIGNATURE_ODDS: Final = 30  # one stale signature in this many meter-days
FORGED_PER_DAY: Final = 4


# -- the fleet -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Site:
    name: str
    energy_type: EnergyType
    latitude: float
    longitude: float
    capacity_kw: tuple[int, int]
    share: int  # of the honest fleet, in parts
    weather: str | None  # "gso", "sdp" or None
    utc_offset_hours: float = 0.0


SITES: Final = (
    Site("solar Greensboro NC", EnergyType.SOLAR, 36.10, -79.95, (5, 20), 5, "gso"),
    Site("solar Sand Point AK", EnergyType.SOLAR, 55.317, -160.517, (5, 20), 5, "sdp"),
    Site("wind Sand Point AK", EnergyType.WIND, 55.317, -160.517, (150, 500), 3, "sdp"),
    Site("wind Greensboro NC", EnergyType.WIND, 36.10, -79.95, (150, 500), 2, "gso"),
    Site("hydro Bergen NO", EnergyType.HYDRO, 60.39, 5.32, (300, 800), 1, None),
    Site("hydro Seattle WA", EnergyType.HYDRO, 47.61, -122.33, (200, 600), 1, None),
    Site("battery Greensboro NC", EnergyType.BATTERY, 36.10, -79.95, (10, 40), 2, "gso"),
    Site("battery Austin TX", EnergyType.BATTERY, 30.27, -97.74, (20, 60), 1, None, -6.0),
)


def unit(*parts: object) -> float:
    """A deterministic number in [0, 1) for the parts (a hash, not a generator's state)."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@lru_cache(maxsize=4)
def weather(name: str | None) -> Weather | None:
    if name is None:
        return None
    return load_weather(GREENSBORO_NC if name == "gso" else SAND_POINT_AK)


@dataclass
class Meter:
    """A simulated meter: its site, its honest generation and, for a cheater, its cheat."""

    address: str
    site: Site
    context: MeterContext
    profile: GenerationProfile
    source: Varied  # the profile with the meter's own variation: what it honestly measures
    seed: int
    phase_ms: int
    strategy: str | None = None
    cheat: Callable[[Meter, int, int], int] | None = None
    cheat_start_ms: int = 0
    events: list[tuple[int, int, int, int]] = field(default_factory=list)

    @property
    def capacity_w(self) -> int:
        return self.context.capacity_wh

    def honest_wms(self, start_ms: int, end_ms: int) -> int:
        return self.source.watt_milliseconds(start_ms, end_ms)

    def claimed_wms(self, start_ms: int, end_ms: int) -> int:
        if self.cheat is None or end_ms <= self.cheat_start_ms:
            return self.honest_wms(start_ms, end_ms)
        return self.cheat(self, start_ms, end_ms)


def plan_fleet(honest: int, seed: int, start_ms: int, days: int) -> list[Meter]:
    parts = sum(site.share for site in SITES)
    meters: list[Meter] = []
    for site in SITES:
        count = max(6, round(honest * site.share / parts))
        for n in range(count):
            meters.append(make_meter(site, f"{slug(site)}_{n:02d}", seed * 1000 + len(meters)))
    return meters


def slug(site: Site) -> str:
    return site.name.split()[0] + "_" + "".join(w[0] for w in site.name.split()[1:]).lower()


def make_meter(site: Site, address: str, seed: int) -> Meter:
    low, high = site.capacity_kw
    capacity_w = round((low + (high - low) * unit(seed, "capacity")) * 1000)
    cell = fraud.geohash(*micro(site.latitude, site.longitude), fraud.PEER_CELL_PRECISION)
    for attempt in range(100):
        latitude = site.latitude + 0.3 * (unit(seed, "lat", attempt) - 0.5)
        longitude = site.longitude + 0.3 * (unit(seed, "lon", attempt) - 0.5)
        if fraud.geohash(*micro(latitude, longitude), fraud.PEER_CELL_PRECISION) == cell:
            break
    location = Location(*micro(latitude, longitude))
    station = weather(site.weather)
    profile: GenerationProfile
    if site.energy_type == EnergyType.SOLAR:
        assert station is not None
        ratio = 0.8 + 0.04 * (2 * unit(seed, "pr") - 1)
        profile = SolarFromIrradiance(capacity_w, station, performance_ratio=ratio)
    elif site.energy_type == EnergyType.WIND:
        assert station is not None
        hub = (60.0, 80.0, 100.0)[int(3 * unit(seed, "hub"))]
        profile = WindFromSpeed(capacity_w, station, hub_height_m=hub)
    elif site.energy_type == EnergyType.HYDRO:
        profile = HydroRunOfRiver(capacity_w, seed=seed)
    else:
        profile = BatteryDischarge(
            capacity_w,
            weather=station,
            discharge_start_hour=17 + int(2 * unit(seed, "discharge")),
            utc_offset_hours=site.utc_offset_hours if station is None else None,
            seed=seed,
        )
    variation = Variation.for_meter(site.energy_type.value, seed, longitude)
    return Meter(
        address=address,
        site=site,
        context=MeterContext(address, site.energy_type, capacity_w, location),
        profile=profile,
        source=Varied(profile, variation),
        seed=seed,
        phase_ms=int(unit(seed, "phase") * STEP_MS) // 1000 * 1000,
    )


def micro(latitude: float, longitude: float) -> tuple[int, int]:
    return round(latitude * 1e6), round(longitude * 1e6)


# -- cheats ---------------------------------------------------------------------------------


def inflate(factor: float) -> Callable[[Meter, int, int], int]:
    return lambda meter, start, end: int(meter.honest_wms(start, end) * factor)


def at_night(meter: Meter, start: int, end: int) -> int:
    honest = meter.honest_wms(start, end)
    location = meter.context.location
    lat, lon = location.latitude_micro_deg, location.longitude_micro_deg
    dark = (end - start) - solar.daylight_ms(lat, lon, start, end, -6.0)
    return honest + dark * meter.capacity_w // 5


def flat(share: float, sun_only: bool) -> Callable[[Meter, int, int], int]:
    def claimed(meter: Meter, start: int, end: int) -> int:
        location = meter.context.location
        lit = (
            solar.daylight_ms(
                location.latitude_micro_deg, location.longitude_micro_deg, start, end, 0.0
            )
            if sun_only
            else end - start
        )
        return int(lit * meter.capacity_w * share)

    return claimed


def replay_own_day(day_ms: int) -> Callable[[Meter, int, int], int]:
    """Every day, the meter's own honest energy of one chosen day, at the same times of day."""

    def claimed(meter: Meter, start: int, end: int) -> int:
        back = (start - day_ms) // DAY_MS * DAY_MS
        return meter.honest_wms(start - back, end - back)

    return claimed


def copy_meter(source: Meter, shift_ms: int) -> Callable[[Meter, int, int], int]:
    def claimed(meter: Meter, start: int, end: int) -> int:
        energy = source.honest_wms(start - shift_ms, end - shift_ms)
        return energy * meter.capacity_w // source.capacity_w

    return claimed


@dataclass(frozen=True)
class Plan:
    strategy: str
    site: str
    build: Callable[[list[Meter], Meter, int], Callable[[Meter, int, int], int]]
    forged_per_day: int = 0


def best_day(meter: Meter, before_ms: int, days: int) -> int:
    """The start of the meter's most productive local day among the ``days`` before ``before_ms``."""
    local_midnight = before_ms // DAY_MS * DAY_MS - meter.context.day_shift_hours * HOUR_MS
    if local_midnight > before_ms:
        local_midnight -= DAY_MS
    totals = []
    for back in range(1, days + 1):
        day_start = local_midnight - back * DAY_MS
        totals.append((meter.honest_wms(day_start, day_start + DAY_MS), day_start))
    return max(totals)[1]


def same_site_source(meters: list[Meter], site_name: str) -> Meter:
    return next(m for m in meters if m.site.name == site_name and m.cheat is None)


CHEATS: Final = (
    Plan("inflate x1.3", "solar Greensboro NC", lambda f, m, s: inflate(1.3)),
    Plan("inflate x1.3", "solar Sand Point AK", lambda f, m, s: inflate(1.3)),
    Plan("inflate x1.3", "wind Sand Point AK", lambda f, m, s: inflate(1.3)),
    Plan("inflate x1.3", "hydro Seattle WA", lambda f, m, s: inflate(1.3)),
    Plan("inflate x1.3", "battery Greensboro NC", lambda f, m, s: inflate(1.3)),
    Plan("solar at night", "solar Greensboro NC", lambda f, m, s: at_night),
    Plan("solar at night", "solar Sand Point AK", lambda f, m, s: at_night),
    Plan("flat line", "solar Greensboro NC", lambda f, m, s: flat(0.35, sun_only=True)),
    Plan("flat line", "wind Sand Point AK", lambda f, m, s: flat(0.4, sun_only=False)),
    Plan("flat line", "hydro Bergen NO", lambda f, m, s: flat(0.85, sun_only=False)),
    Plan(
        "replayed curve",
        "solar Greensboro NC",
        lambda f, m, s: replay_own_day(best_day(m, s, 8)),
    ),
    Plan(
        "replayed curve",
        "wind Sand Point AK",
        lambda f, m, s: replay_own_day(best_day(m, s, 8)),
    ),
    Plan(
        "replayed curve",
        "solar Sand Point AK",
        lambda f, m, s: copy_meter(same_site_source(f, "solar Greensboro NC"), 5 * HOUR_MS),
    ),
    Plan("sudden jump x2", "solar Sand Point AK", lambda f, m, s: inflate(2.0)),
    Plan("sudden jump x2", "wind Greensboro NC", lambda f, m, s: inflate(2.0)),
    Plan("sudden jump x2", "hydro Bergen NO", lambda f, m, s: inflate(2.0)),
    Plan("sudden jump x2", "battery Austin TX", lambda f, m, s: inflate(2.0)),
    Plan(
        "bad signatures",
        "wind Greensboro NC",
        lambda f, m, s: lambda meter, a, b: meter.honest_wms(a, b),
        FORGED_PER_DAY,
    ),
)


def add_cheaters(fleet: list[Meter], seed: int, start_ms: int, days: int) -> list[Meter]:
    sites = {site.name: site for site in SITES}
    cheaters = []
    cheat_day = max(8, days // 3)
    for number, plan in enumerate(CHEATS):
        meter = make_meter(sites[plan.site], f"cheat_{number:02d}", seed * 1000 + 900 + number)
        hour = int(24 * unit(seed, "cheat hour", number))
        meter.cheat_start_ms = start_ms + cheat_day * DAY_MS + hour * HOUR_MS
        meter.strategy = plan.strategy
        meter.cheat = plan.build(fleet, meter, meter.cheat_start_ms)
        if plan.strategy == "replayed curve" and plan.site == "solar Sand Point AK":
            # A copy keeps the original's reading times, shifted.
            meter.phase_ms = same_site_source(fleet, "solar Greensboro NC").phase_ms
        cheaters.append(meter)
    return cheaters


# -- readings --------------------------------------------------------------------------------

READING, BAD_SIGNATURE = 0, 1


def simulate(meter: Meter, start_ms: int, days: int, forged_per_day: int) -> None:
    """The meter's minted readings and refused signatures, as (time, kind, start, wh) events."""
    events = meter.events
    total_wms = 0
    published_wh: int | None = None
    published_ms = 0
    first = start_ms + meter.phase_ms
    for step in range(days * 24 * 4):
        at = first + step * STEP_MS
        if step:
            total_wms += meter.claimed_wms(at - STEP_MS, at)
        counter = total_wms // WMS_PER_WH
        if published_wh is None:
            events.append((at, READING, at, 0))  # the baseline
            published_wh, published_ms = counter, at
            continue
        if counter <= published_wh:
            continue
        # Ingest refuses an increase above capacity x elapsed + 5 %: a cheater
        # reports what passes and keeps the rest for later readings.
        increase = min(
            counter - published_wh, plausible_increase_wh(meter.capacity_w, at - published_ms)
        )
        events.append((at, READING, published_ms, increase))
        published_wh += increase
        published_ms = at
    day_zero = start_ms // DAY_MS
    for day in range(days):
        day_start = (day_zero + day) * DAY_MS
        forged = forged_per_day if meter.cheat and day_start + DAY_MS > meter.cheat_start_ms else 0
        if not forged and unit(meter.seed, "stale signature", day) < 1 / HONEST_BAD_SIGNATURE_ODDS:
            forged = 1
        for n in range(forged):
            at = day_start + int(DAY_MS * unit(meter.seed, "forged", day, n))
            if meter.cheat and forged > 1 and at < meter.cheat_start_ms:
                continue
            events.append((at, BAD_SIGNATURE, at, 0))


# -- the services layer, in memory ------------------------------------------------------------


@dataclass
class Detection:
    """What the services layer keeps: one state per meter, peer cells, the replay index."""

    contexts: dict[str, MeterContext]
    states: dict[str, WatchState] = field(default_factory=dict)
    cells: dict[str, PeerHistogram] = field(default_factory=dict)
    replay_index: dict[str, tuple[DayCurve, ...]] = field(default_factory=dict)
    readings: int = 0

    # The service's fold (chalicelib.services.fraud_watch) runs the detectors;
    # this keeps what it shares in memory instead of DynamoDB items.
    def cell(self, key: str) -> PeerHistogram | None:
        return self.cells.get(key)

    def add(self, key: str, capacity_factor_bps: int) -> None:
        self.cells[key] = self.cells.get(key, PeerHistogram()).adding(capacity_factor_bps)

    def entry(self, key: str) -> tuple[DayCurve, ...]:
        return self.replay_index.get(key, ())

    def remember(self, key: str, curve: DayCurve) -> None:
        self.replay_index[key] = fraud.remember(self.replay_index.get(key, ()), curve)

    def reading(self, meter: str, start_ms: int, end_ms: int, wh: int) -> list[Suspicion]:
        event = MeterEvent(meter, end_ms, MintedReading(start_ms, end_ms, wh))
        self.readings += 1
        return self._fold(meter, event)

    def bad_signature(self, meter: str, at_ms: int) -> list[Suspicion]:
        return self._fold(meter, MeterEvent(meter, at_ms))

    def _fold(self, meter: str, event: MeterEvent) -> list[Suspicion]:
        state = self.states.get(meter) or WatchState()
        self.states[meter], found = fold(state, [event], self.contexts[meter], self)
        return found


# -- the run ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.fraud", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--meters", type=int, default=64, help="honest meters")
    parser.add_argument("--start", type=date.fromisoformat, default=date(2026, 3, 1))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--plain-profiles",
        action="store_true",
        help="no per-meter variation: every meter of a site follows its station exactly",
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    start_ms = int(
        datetime(args.start.year, args.start.month, args.start.day, tzinfo=UTC).timestamp() * 1000
    )

    honest = plan_fleet(args.meters, args.seed, start_ms, args.days)
    cheaters = add_cheaters(honest, args.seed, start_ms, args.days)
    fleet = honest + cheaters
    if args.plain_profiles:
        for meter in fleet:
            meter.source = Varied(meter.profile, Variation())
    plans = dict(zip((m.address for m in cheaters), CHEATS, strict=True))
    for meter in fleet:
        plan = plans.get(meter.address)
        simulate(meter, start_ms, args.days, plan.forged_per_day if plan else 0)
    events = sorted(
        (at, kind, meter.address, begin, wh)
        for meter in fleet
        for at, kind, begin, wh in meter.events
    )
    simulated = time.perf_counter() - started

    detection = Detection({m.address: m.context for m in fleet})
    raised: list[tuple[int, Suspicion]] = []
    began = time.perf_counter()
    for at, kind, address, begin, wh in events:
        if kind == READING:
            found = detection.reading(address, begin, at, wh)
        else:
            found = detection.bad_signature(address, at)
        raised.extend((at, s) for s in found)
    detect_s = time.perf_counter() - began

    report(args, fleet, cheaters, events, raised, detection, detect_s, simulated, start_ms)
    say(f"Total run time: {time.perf_counter() - started:.0f} s")
    return 0


def report(
    args: argparse.Namespace,
    fleet: list[Meter],
    cheaters: list[Meter],
    events: list[tuple[int, int, str, int, int]],
    raised: list[tuple[int, Suspicion]],
    detection: Detection,
    detect_s: float,
    simulated_s: float,
    start_ms: int,
) -> None:
    by_meter = {m.address: m for m in fleet}
    readings = sum(1 for e in events if e[1] == READING)
    print(
        f"Fraud detection: {len(fleet) - len(cheaters)} honest meters and {len(cheaters)} cheaters, "
        f"{args.days} days from {args.start}, readings every 15 minutes"
    )
    print("=" * 100)
    sites = Counter(m.site.name for m in fleet if m.cheat is None)
    say("Honest fleet: " + ", ".join(f"{n} {name}" for name, n in sites.items()) + ".")
    say(
        f"{readings:,} minted readings, {len(events) - readings:,} refused for their signature; "
        f"simulated in {simulated_s:.1f} s."
    )
    print()

    print("1. Cheaters: caught, and hours from the start of cheating to the first suspicion")
    print()
    rows = []
    per_strategy: dict[str, list[float | None]] = defaultdict(list)
    for meter in cheaters:
        after = [
            (at, s)
            for at, s in raised
            if s.meter_address == meter.address and at >= meter.cheat_start_ms
        ]
        first = min(after, key=lambda pair: pair[0]) if after else None
        hours = (first[0] - meter.cheat_start_ms) / HOUR_MS if first else None
        per_strategy[meter.strategy or ""].append(hours)
        detectors = Counter(s.detector for _, s in after)
        rows.append(
            [
                meter.strategy or "",
                meter.site.name,
                f"{meter.capacity_w / 1000:g} kW",
                "yes" if first else "NO",
                f"{hours:.1f}" if hours is not None else "-",
                first[1].detector if first else "-",
                ", ".join(f"{d} {n}" for d, n in detectors.most_common()) or "-",
            ]
        )
    print_table(
        [
            "strategy",
            "site",
            "capacity",
            "caught",
            "hours",
            "first by",
            "suspicions after the start (per detector)",
        ],
        rows,
        {2, 4},
    )
    print()
    rows = []
    for strategy, times in per_strategy.items():
        caught = [h for h in times if h is not None]
        rows.append(
            [
                strategy,
                f"{len(caught)}/{len(times)}",
                f"{statistics.median(caught):.1f}" if caught else "-",
                f"{max(caught):.1f}" if caught else "-",
            ]
        )
    print_table(["strategy", "caught", "median hours", "worst hours"], rows, {1, 2, 3})
    print()

    print("2. False flags on honest meter-days")
    print()
    honest_days = 0
    flagged: set[tuple[str, int]] = set()
    by_detector: Counter[str] = Counter()
    by_type_days: Counter[str] = Counter()
    by_type_flags: Counter[str] = Counter()
    for meter in fleet:
        cheat_day = (meter.cheat_start_ms // DAY_MS) if meter.cheat else None
        for day in range(args.days):
            absolute = start_ms // DAY_MS + day
            if cheat_day is None or absolute < cheat_day:
                honest_days += 1
                by_type_days[meter.context.energy_type.value] += 1
    false_flags = []
    for at, suspicion in raised:
        meter = by_meter[suspicion.meter_address]
        if meter.cheat is not None and at >= meter.cheat_start_ms - (meter.cheat_start_ms % DAY_MS):
            continue
        key = (meter.address, at // DAY_MS)
        if key not in flagged:
            by_type_flags[meter.context.energy_type.value] += 1
        flagged.add(key)
        by_detector[suspicion.detector] += 1
        false_flags.append(
            f"{meter.address} ({meter.site.name}) {suspicion.detector}: {suspicion.evidence[0]}"
        )
    rows = [
        [
            t,
            f"{by_type_days[t]:,}",
            str(by_type_flags[t]),
            f"{100 * by_type_flags[t] / max(1, by_type_days[t]):.2f} %",
        ]
        for t in sorted(by_type_days)
    ]
    rows.append(
        [
            "all",
            f"{honest_days:,}",
            str(len(flagged)),
            f"{100 * len(flagged) / max(1, honest_days):.2f} %",
        ]
    )
    print_table(["type", "honest meter-days", "flagged", "rate"], rows, {1, 2, 3})
    say("by detector: " + (", ".join(f"{d} {n}" for d, n in by_detector.most_common()) or "none"))
    for line in false_flags[:10]:
        say(line, indent="  ")
    print()

    print("3. CPU per 1,000 readings (one core; detectors timed over the whole run above)")
    print()
    verify_s = verify_time()
    per_thousand = detect_s / (readings + len(events) - readings) * 1000
    roundtrip = round_trip_time(detection)
    rows = [
        ["raw Ed25519 verify (pynacl)", f"{verify_s * 1e6:,.0f}", "1.00"],
        [
            "detectors (observe, peers, replay, channel)",
            f"{per_thousand * 1e6:,.0f}",
            f"{per_thousand / verify_s:.2f}",
        ],
        [
            "state to_dict + from_dict per reading",
            f"{roundtrip * 1e6:,.0f}",
            f"{roundtrip / verify_s:.2f}",
        ],
    ]
    print_table(["per 1,000 readings", "µs", "vs verify"], rows, {1, 2})
    print()

    print("4. Stored state")
    print()
    sizes = [len(json.dumps(s.to_dict(), separators=(",", ":"))) for s in detection.states.values()]
    cell_sizes = [
        len(json.dumps(c.to_dict(), separators=(",", ":"))) for c in detection.cells.values()
    ]
    index_sizes = [
        len(json.dumps([c.to_dict() for c in v], separators=(",", ":")))
        for v in detection.replay_index.values()
    ]
    rows = [
        [
            "meter watch state",
            f"{len(sizes):,}",
            f"{statistics.median(sizes):,.0f}",
            f"{max(sizes):,}",
        ],
        [
            "peer cell x hour histogram",
            f"{len(cell_sizes):,}",
            f"{statistics.median(cell_sizes):,.0f}",
            f"{max(cell_sizes):,}",
        ],
        [
            "replay index key",
            f"{len(index_sizes):,}",
            f"{statistics.median(index_sizes):,.0f}",
            f"{max(index_sizes):,}",
        ],
    ]
    print_table(["item", "count", "median JSON bytes", "largest"], rows, {1, 2, 3})


def verify_time() -> float:
    """Seconds per 1,000 raw Ed25519 verifications (best of three rounds)."""
    key = SigningKey.generate()
    signed = [key.sign(f"reading {n}".encode()) for n in range(VERIFY_SAMPLES)]
    best = float("inf")
    for _ in range(3):
        began = time.perf_counter()
        for message in signed:
            key.verify_key.verify(message)
        best = min(best, time.perf_counter() - began)
    return best / VERIFY_SAMPLES * 1000


def round_trip_time(detection: Detection) -> float:
    states = list(detection.states.values())
    began = time.perf_counter()
    for state in states * 10:
        WatchState.from_dict(state.to_dict())
    return (time.perf_counter() - began) / (10 * len(states)) * 1000


if __name__ == "__main__":
    sys.exit(main())
