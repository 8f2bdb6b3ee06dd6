"""Automatic fraud detection: physics, peer, history and channel checks on what is minted.

The detectors read minted readings after the fact. They never refuse or delay
a reading: ingestion has already accepted it, and a suspicion becomes a
dispute flag (:class:`chalicelib.domain.disputes.Flag` with ``detector=<name>``)
that validators judge. Everything here is pure: the services layer loads a
meter's :class:`WatchState` (one small item), calls :func:`observe` and stores
what it returns; the cross-meter detectors take the shared state they need as
explicit arguments (a peer cell's histogram, the replay index's candidates).

**Inputs.** One minted reading (:class:`MintedReading`: its interval and Wh,
``MintedReading.of(credit)``) with the meter's registry facts
(:class:`MeterContext`: address, energy type, capacity in W, location in
micro-degrees, a battery's storage); a rejected reading's bad signature
(:func:`observe_bad_signature`).

**Hours and days.** Energy is placed in UTC hours: a reading of up to two
hours is split in proportion to its overlap with each hour; a longer one (a
meter publishes only when its counter moved, so the first reading after a
night or a calm spans it) is placed from its end backwards, at most capacity
per hour, and its hours are *inexact*: left out of the peer comparison. A
meter's *day* is 24 UTC hours starting at its local mean midnight rounded to
the hour (``MeterContext.day_shift_hours``), so that a solar day is never cut
at noon.

**Detectors** (name: question, input, threshold; each threshold is a named
constant below, with the reason for its value):

Physics, per reading, for every meter on its own:

* ``solar_at_night``: energy a solar meter reports while the sun is more than
  6° below the horizon at its location (:mod:`chalicelib.domain.solar`):
  more than 2 % of capacity over the dark part of the interval plus 2 Wh, on
  top of what the lit part allows (capacity + the ingest's 5 %); readings
  of up to two days (a longer one cannot say when its energy came).
* ``over_capacity``: more than capacity + 3 % (+ 2 Wh) over a whole hour.
  Ingest refuses a single reading above capacity + 5 %; this catches a meter
  that stays just under that limit for an hour or more.
* ``battery_over_storage``: a battery exporting more than it can hold (its
  declared storage, else 4 hours at capacity, + 5 %) between two rests (an
  interval of an hour or more at under 10 % of capacity).

History, on each closed hour and day of the meter's own series:

* ``above_profile``: the day's energy so far more than a multiple of what the
  meter's own envelope allows for the same hours, and by at least a quarter
  of a capacity-hour: hydro and batteries 1.2 times after 7 days, solar 1.5
  times after 14 (``PROFILE_RULES``; wind has no envelope worth the name).
  The envelope is, per hour of the meter's day, a maximum that decays 0.25 %
  a day; for solar it is kept divided by the clear-sky shape of that hour
  (the mean sine of the sun's elevation), so that seasons do not move it.
* ``flat_line``: readings whose average power stays within a band for longer
  than a varying source allows (``FLAT_RULES``): solar 4 h within 1 % while
  the sine of the sun's elevation changes by half again, wind 12 h within
  1 %, hydro 8 h within 0.05 %, all between 5 % and 95 % of capacity (a
  clipped inverter or a turbine at rated power is flat, and honest).
  Batteries discharge at constant power by design and are not checked.
* ``replayed_curve``: a day's hourly curve (solar, wind, hydro) that equals
  another day's of the same meter or another meter's, after scaling, within
  0.1 % per hour plus 4 Wh of rounding; it needs 6 producing hours and one
  capacity-hour in the day. Found through an index keyed by the curve's
  coarse shape (:meth:`DayCurve.keys`), so whole-hour shifts are found too; a
  copy re-sampled at other reading times, or with noise added, is not.

Peers, on each closed hour, against other meters of the same type nearby:

* ``peer_outlier``: a meter whose capacity factor, summed over a day's
  productive hours (peers' median at least 5 %), is at least 1.25 times
  (solar) or 1.6 times (wind) the sum of the peers' medians, with a robust
  z-score of at least 4 (deviations scaled by 1.4826 MAD, at least 1 % of
  capacity an hour) over at least 3 hours and 5 peers (``PEER_RULES``).
  "Nearby" is a geohash cell of 3 characters (about 156 km by 156 km at the
  equator, 90 km wide at 55°), per energy type (:func:`peer_cell`). Hydro and
  batteries are not compared: rivers and owners' schedules differ by nature.

Channel:

* ``bad_signatures``: 3 or more readings refused for a bad signature on the
  meter's own authenticated channel within 24 hours. That channel is pinned
  to the meter's certificate, so a bad signature there is a meter that lost
  its key or a device that has the certificate and not the key.

**Scores and flags.** A suspicion's score is in basis points: 5,000
(``FLAG_THRESHOLD_BPS``) at its detector's threshold, rising linearly to
10,000 at twice the threshold (for peers, twice the excess over the median;
for a replay, 10,000 is an exact copy and 5,000 the edge of the tolerance).
Only suspicions at or above the threshold are returned, each is a flag
(:meth:`Suspicion.flag`, on :meth:`Suspicion.subject`), and each detector
raises at most one per meter per UTC day, so one cheater does not produce
hundreds of flags.

**How the services layer runs them** (off the ingest path, e.g. from the
credits' stream, in mint order per meter):

1. ``observe(state, MintedReading.of(credit), context)`` and store the new
   state (a redelivered reading changes nothing);
2. for each of ``closed_hours`` (solar and wind): add its capacity factor to
   the histogram item ``peer_key(peer_cell(context), hour)`` and call
   ``peer_review`` for the hour before, with that hour's histogram;
3. for each of ``closed_days``: read the replay index items under
   ``curve.keys()``, call ``replay_check``, write back ``remember(...)``;
4. for a reading refused as ``bad_signature``: ``observe_bad_signature``;
5. raise each suspicion as a flag.

**Cost.** O(1) per reading, whatever the history: a reading touches at most
48 hourly slots (two days of a ring) and its own fields; a solar meter adds a
few sun positions (two per reading, a few dozen for the first reading after a
night). Per meter, one :class:`WatchState` of about 1 KB
(:meth:`WatchState.to_dict`, integers only). Per peer cell, energy type and
hour, one :class:`PeerHistogram` of at most 202 counters, whatever the number
of meters; each meter adds one value to it and reads it once, an hour later
(:func:`peer_review`). Per replay key, at most 8 :class:`DayCurve` entries of
at most 24 integers, kept for 62 days. Nothing reads history: no Scan.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple

from chalicelib.domain import solar
from chalicelib.domain.credits import Credit
from chalicelib.domain.disputes import MAX_WINDOW_MS, Flag, Subject
from chalicelib.domain.providers import EnergyType, Location, Provider
from chalicelib.domain.readings import PLAUSIBILITY_TOLERANCE_PERCENT

HOUR_MS: Final = 3_600_000
DAY_MS: Final = 24 * HOUR_MS
BPS: Final = 10_000  # basis points in a whole
MW_PER_WH_PER_MS: Final = 3_600_000_000  # 1 Wh over 1 ms is 3.6e9 mW

# -- detector names (chalicelib.domain.disputes.MAX_DETECTOR_NAME) -----------------------

SOLAR_AT_NIGHT: Final = "solar_at_night"
OVER_CAPACITY: Final = "over_capacity"
BATTERY_OVER_STORAGE: Final = "battery_over_storage"
ABOVE_PROFILE: Final = "above_profile"
FLAT_LINE: Final = "flat_line"
REPLAYED_CURVE: Final = "replayed_curve"
PEER_OUTLIER: Final = "peer_outlier"
BAD_SIGNATURES: Final = "bad_signatures"
DETECTORS: Final = (
    SOLAR_AT_NIGHT,
    OVER_CAPACITY,
    BATTERY_OVER_STORAGE,
    ABOVE_PROFILE,
    FLAT_LINE,
    REPLAYED_CURVE,
    PEER_OUTLIER,
    BAD_SIGNATURES,
)

# A suspicion at its detector's threshold scores this; twice as far, 10,000.
# Only suspicions that reach it are returned, and each becomes a flag.
FLAG_THRESHOLD_BPS: Final = 5_000

# -- hours ---------------------------------------------------------------------------------

# Two days of hourly energy: enough to close a meter's day after a night
# without readings, and to look back over the capacity window.
RING_HOURS: Final = 48
# A reading up to this long is spread over its hours in proportion; a longer
# one spans a silence (night, calm, outage) and is placed at its end.
SMOOTH_INTERVAL_MS: Final = 2 * HOUR_MS

# -- physics -------------------------------------------------------------------------------

# Civil twilight ends at 6° below the horizon: below it a panel sees only the
# faint glow of the sky. The margin also covers refraction (0.6° at the
# horizon), meter clocks up to the ingest's two minutes of skew (0.5°) and
# the solar algorithm's error (0.01°).
NIGHT_ELEVATION_DEG: Final = -6.0
# While the sun is that low, at most 2 % of capacity: sky glow, plus the demo
# profiles' hourly knots, which ramp linearly from the last dark hour.
NIGHT_ALLOWANCE_BPS: Final = 200
NIGHT_SLACK_WH: Final = 2  # the counter's whole-Wh rounding at each end of the interval
# A reading that spans days (a meter back from an outage) cannot say when its
# energy came, and its daylight would cost a sun position per sunrise and
# sunset: it is not judged by the sun, which keeps a reading's cost bounded.
NIGHT_MAX_INTERVAL_MS: Final = 2 * DAY_MS

# Ingest allows 5 % above capacity per reading: a 15-minute interval is
# sensitive to the moment the meter read its counter. Over a whole hour of
# readings that timing error is a quarter as large, and a class 1 or 2 meter
# errs by at most 2 %. More than 3 % for an hour is a meter reporting what its
# plant cannot produce.
OVER_CAPACITY_HOURS: Final = 1
OVER_CAPACITY_TOLERANCE_BPS: Final = 300
OVER_CAPACITY_SLACK_WH: Final = 2  # the counter's whole-Wh rounding at each end

# Providers register a power rating, not a storage size. Most lithium-ion
# batteries hold 1 to 4 hours at their rating; without a declared storage the
# longest of those is assumed, so no honest battery is flagged.
DEFAULT_BATTERY_STORAGE_HOURS: Final = 4
BATTERY_TOLERANCE_BPS: Final = 500  # the ingest's 5 % tolerance, again
BATTERY_SLACK_WH: Final = 4
# An interval this long at under this share of capacity is a rest (idle or
# charging: an export meter does not move while the battery charges).
BATTERY_REST_MS: Final = HOUR_MS
BATTERY_REST_POWER_BPS: Final = 1_000

# -- history -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProfileRule:
    """When a day is far above a meter's own envelope."""

    ratio_bps: int  # the day so far over what the envelope allows for its hours
    warmup_days: int  # days of history before the envelope speaks


# A river's flow and a battery's storage bound what a day can hold: 1.2 times
# the envelope after a week is far above it. For solar the weather decides
# the day: the first clear day after weeks of cloud can stand 1.3 times above
# the envelope of a cloudy region, so solar needs 1.5 times and two weeks
# (its peers catch smaller inflation). Wind has no useful envelope: a storm
# after a calm month is honest, and capacity is the bound over_capacity keeps.
PROFILE_RULES: Final[Mapping[EnergyType, ProfileRule]] = {
    EnergyType.SOLAR: ProfileRule(ratio_bps=15_000, warmup_days=14),
    EnergyType.HYDRO: ProfileRule(ratio_bps=12_000, warmup_days=7),
    EnergyType.BATTERY: ProfileRule(ratio_bps=12_000, warmup_days=7),
}
# ...and by a quarter of a capacity-hour, so that a dim hour or two of dawn
# cannot flag on its own.
ABOVE_PROFILE_MIN_EXCESS_BPS: Final = 2_500
ENVELOPE_DECAY_BPS_PER_DAY: Final = 25  # 0.25 % a day: a clear day a month ago still counts
# A solar hour whose clear-sky shape (mean sine of the elevation) is below
# sin 10° is left out of the envelope: dividing by a low sun amplifies noise.
CLEAR_SKY_MIN_BPS: Final = 1_736


@dataclass(frozen=True)
class FlatRule:
    """How long a source of this type can hold its power within a band."""

    min_ms: int
    tolerance_bps: int  # the band's width, in basis points of the run's lowest power


# A constant reported in place of a source is flat to its rounding. Solar
# follows the sun: not 4 h within 1 % while the sun climbs or sinks (see
# FLAT_SUN_RATIO_BPS). Wind is never steady for long, but the weather files
# repeat a measured speed for up to 9 hours (gap filling), hence 12 h. A
# run-of-river plant is steady, but its flow wanders by more than 0.05 % in
# 8 hours; a plant held at a fixed setpoint below 95 % would be flagged, and
# cleared by its panel.
FLAT_RULES: Final[Mapping[EnergyType, FlatRule]] = {
    EnergyType.SOLAR: FlatRule(4 * HOUR_MS, 100),
    EnergyType.WIND: FlatRule(12 * HOUR_MS, 100),
    EnergyType.HYDRO: FlatRule(8 * HOUR_MS, 5),
}
# A solar meter's flat run is suspicious only while the sun's height changes:
# the sine of its elevation rises (or falls) by half again. Under an overcast
# noon sky, honest output is flat for hours because the sun barely moves.
FLAT_SUN_RATIO_BPS: Final = 15_000
# Flat at the top is an inverter clipping or a turbine at rated power; near
# zero, a standby draw. Neither is suspicious.
FLAT_MIN_POWER_BPS: Final = 500
FLAT_MAX_POWER_BPS: Final = 9_500
FLAT_MAX_INTERVAL_MS: Final = HOUR_MS  # a longer interval is a gap: the run starts again
FLAT_ROUNDING_WH: Final = 2  # whole-Wh counters move the average a little

# Replays: a day's curve equal to another's once scaled. A copy differs only by
# the counters' rounding (a Wh per reading, four readings an hour); two honest
# days or two honest meters differ by far more than 0.1 % in some hour.
REPLAY_TYPES: Final = frozenset({EnergyType.SOLAR, EnergyType.WIND, EnergyType.HYDRO})
REPLAY_MIN_HOURS: Final = 6  # producing hours: a short curve matches too easily
REPLAY_MIN_DAY_BPS: Final = BPS  # a day of at least one capacity-hour
REPLAY_TOLERANCE_BPS: Final = 10
REPLAY_SLACK_WH: Final = 4
REPLAY_QUANTA: Final = 32  # the coarse shape behind the index keys: 1/32 of the peak
REPLAY_CANDIDATES_PER_KEY: Final = 8
REPLAY_MEMORY_DAYS: Final = 62  # two months of curves, for a replay of last month

# -- peers ---------------------------------------------------------------------------------

PEER_CELL_PRECISION: Final = 3  # geohash characters: about 156 km x 156 km at the equator
PEER_BIN_BPS: Final = 50  # histogram bins of 0.5 % of capacity
PEER_BINS: Final = BPS // PEER_BIN_BPS + 2  # 0 to 100 %, and one for above capacity
PEER_MIN_PEERS: Final = 5  # fewer make no median worth the name
# An hour whose peers produce under 5 % of capacity says nothing (night,
# dawn, calm): every ratio is noise.
PEER_MIN_MEDIAN_BPS: Final = 500
PEER_MIN_SPREAD_BPS: Final = 100  # MAD floor: peers that agree to 1 % still differ by that
MAD_TO_SIGMA_MILLI: Final = 1_483  # 1.4826: a MAD times this is a normal sigma


@dataclass(frozen=True)
class PeerRule:
    ratio_bps: int  # the day's capacity factor over the peers' median, at least
    z_centi: int  # robust z-score of the day's excess, in hundredths
    min_hours: int  # productive hours compared before a verdict


# Honest solar meters in one cell differ by their panels (performance ratio,
# orientation, shade): a fifth at most. Wind turbines differ by hub height
# and terrain: half again at mid speeds.
PEER_RULES: Final[Mapping[EnergyType, PeerRule]] = {
    EnergyType.SOLAR: PeerRule(ratio_bps=12_500, z_centi=400, min_hours=3),
    EnergyType.WIND: PeerRule(ratio_bps=16_000, z_centi=400, min_hours=3),
}

# -- channel -------------------------------------------------------------------------------

# The meter's channel is authenticated by its certificate: a corrupted message
# fails TLS, not the signature. One stale reading after a key rotation is
# honest; three in a day are a meter that is not what it claims.
CHANNEL_WINDOW_MS: Final = DAY_MS
CHANNEL_BAD_SIGNATURES: Final = 3

_GEOHASH_ALPHABET: Final = "0123456789bcdefghjkmnpqrstuvwxyz"


# -- inputs --------------------------------------------------------------------------------


@dataclass(frozen=True)
class MeterContext:
    """What the detectors need to know of a meter's provider, from the registry."""

    meter_address: str
    energy_type: EnergyType
    capacity_wh: int  # nameplate power in W, i.e. Wh per hour
    location: Location
    storage_wh: int | None = None  # a battery's usable energy, when declared

    @classmethod
    def of(cls, provider: Provider, storage_wh: int | None = None) -> MeterContext:
        return cls(
            provider.meter_address,
            provider.energy_type,
            provider.capacity_wh,
            provider.location,
            storage_wh,
        )

    @property
    def day_shift_hours(self) -> int:
        """Hours from UTC to the meter's local mean time, rounded: 15° of longitude an hour."""
        shifted = (self.location.longitude_micro_deg + 7_500_000) // 15_000_000
        return max(-12, min(12, shifted))

    @property
    def battery_storage_wh(self) -> int:
        if self.storage_wh is not None:
            return self.storage_wh
        return self.capacity_wh * DEFAULT_BATTERY_STORAGE_HOURS

    def local_day(self, hour: int) -> int:
        """The meter's day that a UTC hour (index from the epoch) belongs to."""
        return (hour + self.day_shift_hours) // 24


@dataclass(frozen=True)
class MintedReading:
    """One minted reading: the Wh a meter added over ``[interval_start_ms, interval_end_ms)``."""

    interval_start_ms: int
    interval_end_ms: int
    wh: int

    @classmethod
    def of(cls, credit: Credit) -> MintedReading:
        return cls(credit.interval_start_ms, credit.interval_end_ms, credit.wh)


# -- outputs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Suspicion:
    """What a detector found: a meter, a window, a score and the figures behind it."""

    detector: str
    meter_address: str
    score_bps: int
    window_start_ms: int
    window_end_ms: int
    reason: str
    evidence: tuple[str, ...]

    @property
    def flags(self) -> bool:
        """Whether the score reaches the threshold at which a flag is raised."""
        return self.score_bps >= FLAG_THRESHOLD_BPS

    def subject(self) -> Subject:
        """The meter window to flag: the readings that reported the suspect energy.

        The suspicion's window is when the energy was produced, ``[start, end)``;
        a flag's meter window picks readings by their time (their interval's
        end), so the readings to flag are those taken in ``(start, end]``: the
        window ``[start + 1, end + 1)``, cut to the 31 days a flag may span.
        """
        end = self.window_end_ms + 1
        start = max(self.window_start_ms + 1, end - MAX_WINDOW_MS)
        return Subject.meter_window(self.meter_address, start, end)

    def flag(self, flagged_at_ms: int) -> Flag:
        """The automatic flag this suspicion raises (no bond)."""
        flag = Flag(
            reason=self.reason,
            evidence=self.evidence,
            flagged_at_ms=flagged_at_ms,
            detector=self.detector,
        )
        flag.check()
        return flag


class HourBucket(NamedTuple):
    """A closed, exactly measured hour of a meter: what it adds to its peer cell."""

    hour: int  # UTC hour index: the hour starts at hour * 3,600,000 ms
    wh: int
    capacity_factor_bps: int


@dataclass(frozen=True)
class DayCurve:
    """A meter's day as hourly Wh, from its first to its last producing hour."""

    meter_address: str
    day: int  # the meter's day (MeterContext.local_day)
    first_hour: int  # UTC hour index of wh[0]
    wh: tuple[int, ...]

    @property
    def total_wh(self) -> int:
        return sum(self.wh)

    @property
    def window(self) -> tuple[int, int]:
        return self.first_hour * HOUR_MS, (self.first_hour + len(self.wh)) * HOUR_MS

    def keys(self) -> tuple[str, str]:
        """The replay index keys: the curve's coarse shape on two grids half a step apart.

        A copy rounded differently lands on a grid edge in one of them at most
        per hour, so it shares at least one key with its original unless two
        different hours straddle edges of both grids.
        """
        peak = max(self.wh)
        low = tuple(w * REPLAY_QUANTA // peak for w in self.wh)
        high = tuple((2 * w * REPLAY_QUANTA + peak) // (2 * peak) for w in self.wh)
        return _shape_key("a", low), _shape_key("b", high)

    def to_dict(self) -> dict[str, Any]:
        return {
            "meter": self.meter_address,
            "day": self.day,
            "first_hour": self.first_hour,
            "wh": list(self.wh),
        }

    @classmethod
    def from_dict(cls, item: Mapping[str, Any]) -> DayCurve:
        curve = cls(
            str(item["meter"]),
            _int(item["day"]),
            _int(item["first_hour"]),
            tuple(_int(w) for w in item["wh"]),
        )
        if not curve.wh or min(curve.wh) < 0 or max(curve.wh) == 0:
            raise ValueError("a day curve has producing hours")
        return curve


def _shape_key(grid: str, shape: tuple[int, ...]) -> str:
    text = f"{grid}:{len(shape)}:" + ",".join(map(str, shape))
    return f"{grid}{hashlib.blake2b(text.encode(), digest_size=10).hexdigest()}"


class Observation(NamedTuple):
    """What observing one reading produced."""

    state: WatchState
    suspicions: tuple[Suspicion, ...]
    closed_hours: tuple[HourBucket, ...]  # for the peer cells (exact hours only)
    closed_days: tuple[DayCurve, ...]  # for the replay index


# -- per-meter state -----------------------------------------------------------------------

_ZERO_RING: Final = (0,) * RING_HOURS
_ZERO_DAY: Final = (0,) * 24


@dataclass(frozen=True)
class WatchState:
    """Everything the detectors remember of one meter: bounded, whatever its history.

    Integers only, so that it stores as one DynamoDB item (``to_dict``). A
    fresh meter starts from ``WatchState()``.
    """

    first_ms: int = 0  # when the meter's first observed interval began
    last_end_ms: int = 0  # the latest interval end observed; older readings are ignored
    open_hour: int = -1  # UTC hour of the newest ring slot; -1 before any reading
    ring_wh: tuple[int, ...] = _ZERO_RING  # hourly Wh, slot = hour % 48
    inexact_mask: int = 0  # bit (hour % 48): energy placed, not measured, in that hour
    # The meter's day in progress, for the envelope.
    day: int = -1
    day_wh: int = 0
    day_envelope_wh: int = 0
    envelope: tuple[int, ...] = _ZERO_DAY  # per hour of the meter's day, normalised bps
    days_observed: int = 0
    # Flat-line run: its start and the band of average powers (mW), -1 for none.
    flat_start_ms: int = 0
    flat_min_mw: int = -1
    flat_max_mw: int = -1
    flat_low_sun_bps: int = 0  # solar: the lowest and highest sine of the sun's elevation
    flat_high_sun_bps: int = 0
    # Battery: export since the last rest.
    run_start_ms: int = 0
    run_wh: int = 0
    # Peers: the day under review and its sums over compared hours.
    peer_day: int = -1
    peer_last_hour: int = -1
    peer_first_hour: int = -1
    peer_hours: int = 0
    peer_own_bps: int = 0
    peer_median_bps: int = 0
    peer_variance: int = 0  # sum of (1.4826 MAD)^2, bps^2
    peer_count: int = 0  # the fewest peers in any compared hour
    # Channel: times of the latest bad signatures (at most CHANNEL_BAD_SIGNATURES).
    bad_signatures_ms: tuple[int, ...] = ()
    # The UTC day of each detector's latest suspicion: one a day at most.
    flagged_days: tuple[tuple[str, int], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The state as ints, lists, strs and dicts: no floats, ready for DynamoDB."""
        values = self.__dict__
        item: dict[str, Any] = {name: values[name] for name in _SCALAR_FIELDS}
        for name in _LIST_FIELDS:
            item[name] = list(values[name])
        item["flagged_days"] = dict(self.flagged_days)
        item["v"] = STATE_VERSION
        return item

    @classmethod
    def from_dict(cls, item: Mapping[str, Any]) -> WatchState:
        """The state ``to_dict`` stored (numbers may come back as Decimal); ValueError if not one."""
        if item.get("v") != STATE_VERSION:
            raise ValueError("unknown watch state version")
        try:
            values: dict[str, Any] = {name: _int(item[name]) for name in _SCALAR_FIELDS}
            for name in _LIST_FIELDS:
                values[name] = _ints(item[name])
            values["flagged_days"] = tuple(
                sorted((str(k), _int(v)) for k, v in item["flagged_days"].items())
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a watch state: {exc!r}") from exc
        state = cls(**values)
        if (
            len(state.ring_wh) != RING_HOURS
            or len(state.envelope) != 24
            or len(state.bad_signatures_ms) > CHANNEL_BAD_SIGNATURES
        ):
            raise ValueError("a watch state holds 48 hours, 24 envelope slots, 3 signatures")
        return state


STATE_VERSION: Final = 1
_LIST_FIELDS: Final = ("ring_wh", "envelope", "bad_signatures_ms")
_SCALAR_FIELDS: Final = tuple(
    f.name for f in fields(WatchState) if f.name not in (*_LIST_FIELDS, "flagged_days")
)


def _int(value: Any) -> int:
    # DynamoDB hands numbers back as Decimal; anything fractional is not ours.
    if isinstance(value, (bool, str)):
        raise ValueError("a watch state holds integers")
    whole = int(value)
    if whole != value:
        raise ValueError("a watch state holds integers")
    return whole


def _ints(values: Iterable[Any]) -> tuple[int, ...]:
    listed = list(values)
    whole = tuple(map(int, listed))
    # A string or a fraction is not equal to its int: one comparison checks them all.
    if list(whole) != listed:
        raise ValueError("a watch state holds integers")
    return whole


# -- observe -------------------------------------------------------------------------------


def observe(state: WatchState, reading: MintedReading, context: MeterContext) -> Observation:
    """Fold one minted reading into a meter's state; what it reveals, and what it closed.

    Readings are observed in the order they were minted. One whose interval
    ends no later than the last observed is a redelivery: nothing changes.
    Raises ValueError only for a reading or a context that cannot be minted
    (negative energy, an interval that ends before it starts, no capacity).
    """
    if reading.wh < 0 or reading.interval_end_ms < reading.interval_start_ms:
        raise ValueError("a minted reading has a non-negative energy over a forward interval")
    if context.capacity_wh <= 0:
        raise ValueError("a meter's capacity is positive")
    end = reading.interval_end_ms
    if end <= state.last_end_ms:
        return Observation(state, (), (), ())
    work = _Work(state, context)
    start = max(reading.interval_start_ms, state.last_end_ms)
    if start >= end:
        if reading.wh == 0:
            # A baseline: it sets the meter's counter and carries no energy.
            work.begin(end)
            work.values["last_end_ms"] = end
            return Observation(work.freeze(), (), (), ())
        # A reading that overlaps the last one: its energy belongs to the moment it was read.
        start = end - 1
    work.begin(start)
    work.advance(start, end, reading.wh)
    if reading.wh > 0:
        if context.energy_type == EnergyType.SOLAR and end - start <= NIGHT_MAX_INTERVAL_MS:
            work.check_night(start, end, reading.wh)
        if context.energy_type == EnergyType.BATTERY:
            work.check_storage(start, end, reading.wh)
    rule = FLAT_RULES.get(context.energy_type)
    if rule is not None:
        work.check_flat(start, end, reading.wh, rule)
    work.values["last_end_ms"] = end
    return Observation(
        work.freeze(), tuple(work.suspicions), tuple(work.closed_hours), tuple(work.closed_days)
    )


class _Work:
    """A WatchState being updated by one reading: mutable, discarded after."""

    def __init__(self, state: WatchState, context: MeterContext) -> None:
        self.values = dict(state.__dict__)
        self.ring = list(state.ring_wh)
        self.envelope = list(state.envelope)
        self.flagged = dict(state.flagged_days)
        self.context = context
        self.capacity = context.capacity_wh
        self.suspicions: list[Suspicion] = []
        self.closed_hours: list[HourBucket] = []
        self.closed_days: list[DayCurve] = []

    def freeze(self) -> WatchState:
        values = self.values
        values["ring_wh"] = tuple(self.ring)
        values["envelope"] = tuple(self.envelope)
        values["flagged_days"] = tuple(sorted(self.flagged.items()))
        return WatchState(**values)

    def raise_suspicion(
        self,
        detector: str,
        measure: int,
        threshold: int,
        window: tuple[int, int],
        reason: str,
        evidence: Sequence[str],
    ) -> None:
        """Record a suspicion unless the detector already raised one on this meter today."""
        day = window[1] // DAY_MS
        if self.flagged.get(detector) == day:
            return
        self.flagged[detector] = day
        self.suspicions.append(
            Suspicion(
                detector=detector,
                meter_address=self.context.meter_address,
                score_bps=score_bps(measure, threshold),
                # A day or an hour can begin before the meter's first reading.
                window_start_ms=max(window[0], self.values["first_ms"]),
                window_end_ms=window[1],
                reason=reason,
                evidence=tuple(evidence),
            )
        )

    # -- hours

    def begin(self, at_ms: int) -> None:
        """Open the ring at a meter's first observation: its hour is only partly seen."""
        values = self.values
        if values["open_hour"] >= 0:
            return
        hour = at_ms // HOUR_MS
        values["first_ms"] = at_ms
        values["open_hour"] = hour
        values["day"] = self.context.local_day(hour)
        if at_ms % HOUR_MS:
            values["inexact_mask"] |= 1 << (hour % RING_HOURS)

    def advance(self, start: int, end: int, wh: int) -> None:
        """Place the reading's energy in its hours and close the hours it leaves behind."""
        values, ring = self.values, self.ring
        new_open = (end - 1) // HOUR_MS
        floor = new_open - RING_HOURS + 1  # the oldest hour the ring still holds
        old_open = values["open_hour"]
        mask = values["inexact_mask"]
        for hour in range(max(old_open + 1, floor), new_open + 1):
            ring[hour % RING_HOURS] = 0
            mask &= ~(1 << (hour % RING_HOURS))
        first = max(start // HOUR_MS, floor)
        if end - start <= SMOOTH_INTERVAL_MS:
            placed = 0
            for hour in range(first, new_open):
                overlap = min(end, (hour + 1) * HOUR_MS) - max(start, hour * HOUR_MS)
                share = wh * overlap // (end - start)
                ring[hour % RING_HOURS] += share
                placed += share
            ring[new_open % RING_HOURS] += wh - placed
        else:
            left = wh
            for hour in range(new_open, first - 1, -1):
                mask |= 1 << (hour % RING_HOURS)
                if left:
                    overlap = min(end, (hour + 1) * HOUR_MS) - max(start, hour * HOUR_MS)
                    take = min(left, self.capacity * overlap // HOUR_MS)
                    ring[hour % RING_HOURS] += take
                    left -= take
            ring[new_open % RING_HOURS] += left
        values["inexact_mask"] = mask
        for hour in range(max(old_open, floor), new_open):
            self.close_hour(hour, floor)
        values["open_hour"] = max(old_open, new_open)

    def close_hour(self, hour: int, floor: int) -> None:
        values, context = self.values, self.context
        wh = self.ring[hour % RING_HOURS]
        local = hour + context.day_shift_hours
        day, slot = divmod(local, 24)
        if day != values["day"]:
            # The day's last hour fell out of the ring in a silence: start afresh.
            values.update(day=day, day_wh=0, day_envelope_wh=0)
        if hour - OVER_CAPACITY_HOURS + 1 >= floor:
            self.check_capacity(hour)
        self.fold_into_profile(hour, slot, wh)
        if not values["inexact_mask"] >> (hour % RING_HOURS) & 1:
            self.closed_hours.append(HourBucket(hour, wh, wh * BPS // self.capacity))
        if slot == 23:
            self.close_day(day, hour, floor)

    def close_day(self, day: int, last_hour: int, floor: int) -> None:
        values = self.values
        if values["day_wh"] > 0:
            values["days_observed"] += 1
        values.update(day=day + 1, day_wh=0, day_envelope_wh=0)
        first_hour = last_hour - 23
        if (
            self.context.energy_type not in REPLAY_TYPES
            or first_hour < floor
            or first_hour * HOUR_MS < values["first_ms"]  # a day only partly observed
        ):
            return
        hourly = [self.ring[h % RING_HOURS] for h in range(first_hour, last_hour + 1)]
        producing = [i for i, w in enumerate(hourly) if w > 0]
        if (
            len(producing) < REPLAY_MIN_HOURS
            or sum(hourly) * BPS < self.capacity * REPLAY_MIN_DAY_BPS
        ):
            return
        lo, hi = producing[0], producing[-1]
        self.closed_days.append(
            DayCurve(self.context.meter_address, day, first_hour + lo, tuple(hourly[lo : hi + 1]))
        )

    # -- physics

    def check_night(self, start: int, end: int, wh: int) -> None:
        location = self.context.location
        lit_ms = solar.daylight_ms(
            location.latitude_micro_deg,
            location.longitude_micro_deg,
            start,
            end,
            NIGHT_ELEVATION_DEG,
        )
        dark_ms = end - start - lit_ms
        if dark_ms <= 0:
            return
        lit_wh = self.capacity * lit_ms * (100 + PLAUSIBILITY_TOLERANCE_PERCENT) // (HOUR_MS * 100)
        allowance = self.capacity * dark_ms * NIGHT_ALLOWANCE_BPS // (HOUR_MS * BPS)
        threshold = allowance + NIGHT_SLACK_WH
        in_the_dark = wh - lit_wh
        if in_the_dark <= threshold:
            return
        self.raise_suspicion(
            SOLAR_AT_NIGHT,
            in_the_dark,
            threshold,
            (start, end),
            "A solar meter reported energy while the sun was below the horizon at its location.",
            [
                f"reading {_when(start)} to {_when(end)}: {wh} Wh",
                f"sun more than {-NIGHT_ELEVATION_DEG:g} degrees below the horizon for "
                f"{dark_ms // 60_000} of {(end - start) // 60_000} minutes",
                f"at most {lit_wh} Wh from the lit minutes at capacity {self.capacity} W "
                f"(+{PLAUSIBILITY_TOLERANCE_PERCENT} %), {threshold} Wh allowed in the dark",
                f"location {_where(location)}",
            ],
        )

    def check_storage(self, start: int, end: int, wh: int) -> None:
        values = self.values
        average_bps = wh * HOUR_MS * BPS // ((end - start) * self.capacity)
        if end - start >= BATTERY_REST_MS and average_bps < BATTERY_REST_POWER_BPS:
            values["run_start_ms"], values["run_wh"] = start, wh
        else:
            if values["run_wh"] == 0:
                values["run_start_ms"] = start
            values["run_wh"] += wh
        storage = self.context.battery_storage_wh
        threshold = storage * (BPS + BATTERY_TOLERANCE_BPS) // BPS + BATTERY_SLACK_WH
        if values["run_wh"] <= threshold:
            return
        self.raise_suspicion(
            BATTERY_OVER_STORAGE,
            values["run_wh"],
            threshold,
            (values["run_start_ms"], end),
            "A battery exported more energy without a rest than it can store.",
            [
                f"exported {values['run_wh']} Wh from {_when(values['run_start_ms'])} "
                f"to {_when(end)} without a rest",
                f"storage {storage} Wh"
                + (
                    " (declared)"
                    if self.context.storage_wh is not None
                    else f" (assumed: {DEFAULT_BATTERY_STORAGE_HOURS} h at {self.capacity} W)"
                ),
                f"at most {threshold} Wh with the tolerance",
            ],
        )

    def check_capacity(self, hour: int) -> None:
        first = hour - OVER_CAPACITY_HOURS + 1
        total = sum(self.ring[h % RING_HOURS] for h in range(first, hour + 1))
        threshold = (
            self.capacity * OVER_CAPACITY_HOURS * (BPS + OVER_CAPACITY_TOLERANCE_BPS) // BPS
            + OVER_CAPACITY_SLACK_WH
        )
        if total <= threshold:
            return
        self.raise_suspicion(
            OVER_CAPACITY,
            total,
            threshold,
            (first * HOUR_MS, (hour + 1) * HOUR_MS),
            f"A meter reported more than its capacity over {OVER_CAPACITY_HOURS} hours.",
            [
                f"{total} Wh from {_when(first * HOUR_MS)} to {_when((hour + 1) * HOUR_MS)}",
                f"capacity {self.capacity} W: at most {threshold} Wh in "
                f"{OVER_CAPACITY_HOURS} hours with {OVER_CAPACITY_TOLERANCE_BPS // 100} % "
                "tolerance",
                "hourly Wh: "
                + ", ".join(str(self.ring[h % RING_HOURS]) for h in range(first, hour + 1)),
            ],
        )

    def check_flat(self, start: int, end: int, wh: int, rule: FlatRule) -> None:
        values = self.values
        interval = end - start
        power_mw = wh * MW_PER_WH_PER_MS // interval
        capacity_mw = self.capacity * 1_000
        if (
            interval > FLAT_MAX_INTERVAL_MS
            or power_mw * BPS < capacity_mw * FLAT_MIN_POWER_BPS
            or power_mw * BPS > capacity_mw * FLAT_MAX_POWER_BPS
        ):
            values.update(flat_min_mw=-1, flat_max_mw=-1)
            return
        is_solar = self.context.energy_type == EnergyType.SOLAR
        sun = self.sun_sine_bps(end) if is_solar else 0
        low, high = values["flat_min_mw"], values["flat_max_mw"]
        if low < 0 or _outside_band(min(low, power_mw), max(high, power_mw), interval, rule):
            values.update(
                flat_start_ms=start,
                flat_min_mw=power_mw,
                flat_max_mw=power_mw,
                flat_low_sun_bps=sun,
                flat_high_sun_bps=sun,
            )
            return
        low, high = min(low, power_mw), max(high, power_mw)
        band = _flat_band(low, interval, rule)
        low_sun = min(values["flat_low_sun_bps"], sun)
        high_sun = max(values["flat_high_sun_bps"], sun)
        values.update(
            flat_min_mw=low, flat_max_mw=high, flat_low_sun_bps=low_sun, flat_high_sun_bps=high_sun
        )
        held = end - values["flat_start_ms"]
        if held < rule.min_ms or (is_solar and high_sun * BPS < low_sun * FLAT_SUN_RATIO_BPS):
            return
        evidence = [
            f"average power between {low / 1000:.1f} W and {high / 1000:.1f} W from "
            f"{_when(values['flat_start_ms'])} to {_when(end)} ({held // 60_000} minutes)",
            f"band {band / 1000:.1f} W ({rule.tolerance_bps / 100:g} % of the lowest, and "
            f"rounding); a {self.context.energy_type.value} source varies by more "
            f"within {rule.min_ms // HOUR_MS} hours",
        ]
        if is_solar:
            evidence.append(
                f"meanwhile the sine of the sun's elevation went from {low_sun / BPS:.2f} "
                f"to {high_sun / BPS:.2f} (x{FLAT_SUN_RATIO_BPS / BPS:g} is the limit)"
            )
        self.raise_suspicion(
            FLAT_LINE,
            held,
            rule.min_ms,
            (values["flat_start_ms"], end),
            f"A {self.context.energy_type.value} meter held its output flat for longer "
            "than the source allows.",
            evidence,
        )

    def sun_sine_bps(self, at_ms: int) -> int:
        """The sine of the sun's elevation at the meter, in bps (0 below the horizon)."""
        location = self.context.location
        elevation = solar.elevation_deg(
            location.latitude_micro_deg, location.longitude_micro_deg, at_ms
        )
        return max(0, round(BPS * math.sin(math.radians(elevation))))

    # -- history

    def fold_into_profile(self, hour: int, slot: int, wh: int) -> None:
        """Compare the day so far with the envelope, then fold this hour into it."""
        rule = PROFILE_RULES.get(self.context.energy_type)
        envelope, values = self.envelope, self.values
        if rule is None or (wh == 0 and envelope[slot] == 0):
            return
        is_solar = self.context.energy_type == EnergyType.SOLAR
        if is_solar:
            location = self.context.location
            clear_sky_bps = round(
                BPS
                * solar.mean_sine_elevation(
                    location.latitude_micro_deg,
                    location.longitude_micro_deg,
                    hour * HOUR_MS,
                    (hour + 1) * HOUR_MS,
                )
            )
            if clear_sky_bps < CLEAR_SKY_MIN_BPS:
                return
            normalised = wh * BPS * BPS // (self.capacity * clear_sky_bps)
            allowed_wh = envelope[slot] * self.capacity * clear_sky_bps // (BPS * BPS)
        else:
            normalised = wh * BPS // self.capacity
            allowed_wh = envelope[slot] * self.capacity // BPS
        values["day_wh"] += wh
        values["day_envelope_wh"] += allowed_wh
        envelope[slot] = max(
            normalised, envelope[slot] - envelope[slot] * ENVELOPE_DECAY_BPS_PER_DAY // BPS
        )
        if values["days_observed"] < rule.warmup_days:
            return
        day_wh, allowed = values["day_wh"], values["day_envelope_wh"]
        excess = day_wh - allowed
        if (
            day_wh * BPS <= allowed * rule.ratio_bps
            or excess * BPS < self.capacity * ABOVE_PROFILE_MIN_EXCESS_BPS
        ):
            return
        day_start = (values["day"] * 24 - self.context.day_shift_hours) * HOUR_MS
        self.raise_suspicion(
            ABOVE_PROFILE,
            # Energy where the envelope allows none is as far beyond it as a
            # score goes (twice the limit); a ratio to 1 Wh would score less.
            day_wh * BPS // allowed if allowed > 0 else 2 * rule.ratio_bps,
            rule.ratio_bps,
            (day_start, (hour + 1) * HOUR_MS),
            "A meter reported far more than its own history allows for the same hours.",
            [
                f"{day_wh} Wh from {_when(day_start)} to {_when((hour + 1) * HOUR_MS)}",
                f"its envelope allows {allowed} Wh for those hours "
                f"(x{rule.ratio_bps / BPS:g} is the limit)",
                "envelope: per hour of day the highest output of recent days, decaying "
                f"{ENVELOPE_DECAY_BPS_PER_DAY / 100:g} % a day, over "
                f"{values['days_observed']} days"
                + (", scaled by the clear-sky shape" if is_solar else ""),
            ],
        )


def _flat_band(low_mw: int, interval_ms: int, rule: FlatRule) -> int:
    """How far a flat run's average powers may spread: the rule's share, and rounding."""
    return low_mw * rule.tolerance_bps // BPS + FLAT_ROUNDING_WH * MW_PER_WH_PER_MS // interval_ms


def _outside_band(low_mw: int, high_mw: int, interval_ms: int, rule: FlatRule) -> bool:
    return high_mw - low_mw > _flat_band(low_mw, interval_ms, rule)


def score_bps(measure: int, threshold: int) -> int:
    """5,000 at the threshold, 10,000 at twice it or beyond (integers, rounded down)."""
    if threshold <= 0:
        return BPS
    return min(BPS, FLAG_THRESHOLD_BPS * measure // threshold)


def _when(at_ms: int) -> str:
    return datetime.fromtimestamp(at_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _where(location: Location) -> str:
    return f"{location.latitude_micro_deg / 1e6:.4f}, {location.longitude_micro_deg / 1e6:.4f}"


# -- channel -------------------------------------------------------------------------------


def channel_check(
    meter_address: str, window_start_ms: int, window_end_ms: int, bad_signatures: int
) -> Suspicion | None:
    """A suspicion if a meter's own channel carried too many bad signatures in a window."""
    if bad_signatures < CHANNEL_BAD_SIGNATURES or window_end_ms <= window_start_ms:
        return None
    return Suspicion(
        detector=BAD_SIGNATURES,
        meter_address=meter_address,
        score_bps=score_bps(bad_signatures, CHANNEL_BAD_SIGNATURES),
        window_start_ms=window_start_ms,
        window_end_ms=window_end_ms,
        reason="Readings with bad signatures arrived on the meter's own authenticated channel.",
        evidence=(
            f"{bad_signatures} readings refused as bad_signature from {_when(window_start_ms)} "
            f"to {_when(window_end_ms)}",
            f"the channel is pinned to the meter's certificate; "
            f"{CHANNEL_BAD_SIGNATURES} in {CHANNEL_WINDOW_MS // HOUR_MS} hours is the limit",
        ),
    )


def observe_bad_signature(
    state: WatchState, meter_address: str, at_ms: int
) -> tuple[WatchState, tuple[Suspicion, ...]]:
    """Count one reading refused for its signature on the meter's channel, at ``at_ms``."""
    recent = tuple(
        t for t in (*state.bad_signatures_ms, at_ms) if at_ms - CHANNEL_WINDOW_MS < t <= at_ms
    )
    recent = tuple(sorted(recent))[-CHANNEL_BAD_SIGNATURES:]
    flagged = dict(state.flagged_days)
    suspicion = channel_check(meter_address, recent[0], at_ms + 1, len(recent))
    found: tuple[Suspicion, ...] = ()
    if suspicion is not None and flagged.get(BAD_SIGNATURES) != at_ms // DAY_MS:
        flagged[BAD_SIGNATURES] = at_ms // DAY_MS
        found = (suspicion,)
    new_state = WatchState(
        **{
            **state.__dict__,
            "bad_signatures_ms": recent,
            "flagged_days": tuple(sorted(flagged.items())),
        }
    )
    return new_state, found


# -- peers ---------------------------------------------------------------------------------


def geohash(latitude_micro_deg: int, longitude_micro_deg: int, precision: int) -> str:
    """The geohash of a location, by exact integer halving of the micro-degree ranges.

    Bits alternate longitude, latitude (longitude first), five to a base-32
    character, as in the public geohash scheme. A point on a cell's edge
    goes to the upper cell.
    """
    ranges = [[-180_000_000, 180_000_000], [-90_000_000, 90_000_000]]
    point = (longitude_micro_deg, latitude_micro_deg)
    chars = []
    bits = 0
    for n in range(precision * 5):
        axis = n % 2
        low, high = ranges[axis]
        middle = (low + high) // 2
        bit = point[axis] >= middle
        ranges[axis] = [middle, high] if bit else [low, middle]
        bits = bits << 1 | bit
        if n % 5 == 4:
            chars.append(_GEOHASH_ALPHABET[bits])
            bits = 0
    return "".join(chars)


def peer_cell(context: MeterContext) -> str:
    """The peer group a meter is compared with: its energy type and geohash cell."""
    location = context.location
    cell = geohash(location.latitude_micro_deg, location.longitude_micro_deg, PEER_CELL_PRECISION)
    return f"{context.energy_type.value}#{cell}"


def peer_key(cell: str, hour: int) -> str:
    """The shared item of one peer cell and UTC hour."""
    return f"{cell}#{hour}"


def peer_bin(capacity_factor_bps: int) -> int:
    """The histogram bin of a capacity factor: 0.5 % wide, the last for above capacity."""
    return min(max(0, capacity_factor_bps) // PEER_BIN_BPS, PEER_BINS - 1)


def _bin_centre(index: int) -> int:
    return index * PEER_BIN_BPS + PEER_BIN_BPS // 2


@dataclass(frozen=True)
class PeerHistogram:
    """The capacity factors one peer cell reported for one hour, as counts per bin.

    Fixed size whatever the number of meters, and built by increments, so the
    services layer keeps it in one item updated with ADD.
    """

    counts: tuple[int, ...] = (0,) * PEER_BINS

    def __post_init__(self) -> None:
        if len(self.counts) != PEER_BINS or min(self.counts) < 0:
            raise ValueError("a peer histogram has one non-negative count per bin")

    @property
    def total(self) -> int:
        return sum(self.counts)

    def adding(self, capacity_factor_bps: int, count: int = 1) -> PeerHistogram:
        counts = list(self.counts)
        counts[peer_bin(capacity_factor_bps)] += count
        return PeerHistogram(tuple(counts))

    def median_bps(self) -> int:
        """The lower median, as its bin's centre."""
        return _weighted_median([(_bin_centre(i), c) for i, c in enumerate(self.counts) if c])

    def mad_bps(self, median: int) -> int:
        """The median absolute deviation from ``median``, at the bins' resolution."""
        deviations = sorted(
            (abs(_bin_centre(i) - median), c) for i, c in enumerate(self.counts) if c
        )
        return _weighted_median(deviations)

    def to_dict(self) -> dict[str, int]:
        """Only the bins that hold a count, keyed by their number."""
        return {str(i): c for i, c in enumerate(self.counts) if c}

    @classmethod
    def from_dict(cls, item: Mapping[str, Any]) -> PeerHistogram:
        counts = [0] * PEER_BINS
        for key, count in item.items():
            index = int(key)
            if not 0 <= index < PEER_BINS:
                raise ValueError("a peer histogram bin is out of range")
            counts[index] = _int(count)
        return cls(tuple(counts))


def _weighted_median(values: Sequence[tuple[int, int]]) -> int:
    """The lower median of (value, count) pairs sorted by value."""
    total = sum(c for _, c in values)
    if total == 0:
        raise ValueError("no values to take a median of")
    seen = 0
    for value, count in values:
        seen += count
        if 2 * seen >= total:
            return value
    raise AssertionError("unreachable: the counts add up to the total")


def peer_review(
    state: WatchState,
    context: MeterContext,
    hour: int,
    peers: PeerHistogram,
    *,
    includes_self: bool = True,
) -> tuple[WatchState, tuple[Suspicion, ...]]:
    """Compare the meter's closed ``hour`` with its peers' histogram for that hour.

    Call it an hour after the meter closed ``hour`` (when it closes the next
    one), so that every peer reading every 15 minutes has reported it.
    ``includes_self``: the histogram holds the meter's own value, which is
    taken out. Each hour is reviewed once; the verdict is on the day's sum.
    """
    rule = PEER_RULES.get(context.energy_type)
    if rule is None or hour <= state.peer_last_hour:
        return state, ()
    values = dict(state.__dict__)
    values["peer_last_hour"] = hour
    in_ring = state.open_hour - RING_HOURS < hour < state.open_hour
    exact = in_ring and not state.inexact_mask >> (hour % RING_HOURS) & 1
    own_bps = state.ring_wh[hour % RING_HOURS] * BPS // context.capacity_wh
    if exact and includes_self and peers.counts[peer_bin(own_bps)] > 0:
        peers = peers.adding(own_bps, -1)
    day = context.local_day(hour)
    if day != state.peer_day:
        values.update(
            peer_day=day,
            peer_first_hour=-1,
            peer_hours=0,
            peer_own_bps=0,
            peer_median_bps=0,
            peer_variance=0,
            peer_count=0,
        )
    found: tuple[Suspicion, ...] = ()
    if exact and peers.total >= PEER_MIN_PEERS:
        median = peers.median_bps()
        if median >= PEER_MIN_MEDIAN_BPS:
            spread = max(peers.mad_bps(median), PEER_MIN_SPREAD_BPS) * MAD_TO_SIGMA_MILLI // 1_000
            if values["peer_first_hour"] < 0:
                values["peer_first_hour"] = hour
            values["peer_hours"] += 1
            values["peer_own_bps"] += own_bps
            values["peer_median_bps"] += median
            values["peer_variance"] += spread * spread
            fewest = values["peer_count"]
            values["peer_count"] = peers.total if fewest == 0 else min(fewest, peers.total)
            found = _peer_verdict(values, context, rule, hour, dict(state.flagged_days))
    if found:
        flagged = dict(state.flagged_days)
        flagged[PEER_OUTLIER] = found[0].window_end_ms // DAY_MS
        values["flagged_days"] = tuple(sorted(flagged.items()))
    return WatchState(**values), found


def _peer_verdict(
    values: Mapping[str, Any],
    context: MeterContext,
    rule: PeerRule,
    hour: int,
    flagged: Mapping[str, int],
) -> tuple[Suspicion, ...]:
    own, median, variance = (
        values["peer_own_bps"],
        values["peer_median_bps"],
        values["peer_variance"],
    )
    excess = own - median
    if (
        values["peer_hours"] < rule.min_hours
        or own * BPS < median * rule.ratio_bps
        or excess <= 0
        or excess * excess * 10_000 < rule.z_centi * rule.z_centi * variance
    ):
        return ()
    window = (max(values["peer_first_hour"] * HOUR_MS, values["first_ms"]), (hour + 1) * HOUR_MS)
    if flagged.get(PEER_OUTLIER) == window[1] // DAY_MS:
        return ()
    z_centi = excess * 100 // max(1, math.isqrt(variance))
    ratio_bps = own * BPS // max(1, median)
    return (
        Suspicion(
            detector=PEER_OUTLIER,
            meter_address=context.meter_address,
            score_bps=score_bps(ratio_bps - BPS, rule.ratio_bps - BPS),
            window_start_ms=window[0],
            window_end_ms=window[1],
            reason=(
                f"A {context.energy_type.value} meter produced far more than its peers nearby "
                "in the same hours."
            ),
            evidence=(
                f"{values['peer_hours']} hours from {_when(window[0])} to {_when(window[1])}: "
                f"capacity factors summed {own / 100:.1f} % against the peers' median "
                f"{median / 100:.1f} % (x{ratio_bps / BPS:.2f}; x{rule.ratio_bps / BPS:g} "
                "is the limit)",
                f"robust z-score {z_centi / 100:.1f} (1.4826 MAD per hour; "
                f"{rule.z_centi / 100:g} is the limit)",
                f"peer cell {peer_cell(context)}, at least {values['peer_count']} peers each hour",
            ),
        ),
    )


# -- replays -------------------------------------------------------------------------------


def replay_check(curve: DayCurve, candidates: Iterable[DayCurve]) -> Suspicion | None:
    """A suspicion if ``curve`` is a scaled copy of a candidate (another day, or another meter).

    ``candidates`` are what the replay index holds under ``curve.keys()``.
    """
    best: tuple[int, DayCurve] | None = None
    for candidate in candidates:
        if (candidate.meter_address, candidate.day) == (curve.meter_address, curve.day):
            continue
        worst = _replay_distance(curve, candidate)
        if worst is not None and (best is None or worst < best[0]):
            best = (worst, candidate)
    if best is None:
        return None
    worst, original = best
    start, end = curve.window
    same_meter = original.meter_address == curve.meter_address
    source = "its own earlier day" if same_meter else f"meter {original.meter_address}"
    first, last = original.window
    return Suspicion(
        detector=REPLAYED_CURVE,
        meter_address=curve.meter_address,
        # 10,000 for an exact copy, 5,000 at the edge of the tolerance.
        score_bps=BPS - FLAG_THRESHOLD_BPS * worst // BPS,
        window_start_ms=start,
        window_end_ms=end,
        reason=f"A meter's day repeats, hour by hour, the curve of {source}.",
        evidence=(
            f"{len(curve.wh)} hours from {_when(start)} to {_when(end)}, {curve.total_wh} Wh",
            f"equal after scaling to meter {original.meter_address}, day from {_when(first)} "
            f"to {_when(last)}, {original.total_wh} Wh",
            f"largest hourly difference {worst / 100:.0f} % of the tolerance "
            f"({REPLAY_TOLERANCE_BPS / 100:g} % of the hour + {REPLAY_SLACK_WH} Wh)",
            "hourly Wh: " + ", ".join(map(str, curve.wh)),
            "original hourly Wh: " + ", ".join(map(str, original.wh)),
        ),
    )


def _replay_distance(curve: DayCurve, other: DayCurve) -> int | None:
    """The worst hour's difference after scaling, in bps of its tolerance; None if over."""
    if len(curve.wh) != len(other.wh):
        return None
    total, other_total = curve.total_wh, other.total_wh
    scale_slack = max(total, other_total) // max(1, min(total, other_total))
    worst = 0
    for wh, other_wh in zip(curve.wh, other.wh, strict=True):
        # |wh - other_wh * total / other_total|, compared in integers.
        difference = abs(wh * other_total - other_wh * total)
        tolerance = (
            wh * REPLAY_TOLERANCE_BPS // BPS + REPLAY_SLACK_WH * (1 + scale_slack)
        ) * other_total
        if difference > tolerance:
            return None
        worst = max(worst, difference * BPS // tolerance)
    return worst


def remember(candidates: Iterable[DayCurve], curve: DayCurve) -> tuple[DayCurve, ...]:
    """A replay index entry with ``curve`` added: newest first, bounded, two months deep."""
    kept = [
        c
        for c in candidates
        if (c.meter_address, c.day) != (curve.meter_address, curve.day)
        and c.day > curve.day - REPLAY_MEMORY_DAYS
    ]
    return (curve, *kept)[:REPLAY_CANDIDATES_PER_KEY]
