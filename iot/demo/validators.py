"""The demo's validators: each re-checks the disputes it was drawn for from public data, and votes.

A validator does not take a detector's word for it. For each open dispute on
its panel (``energy.getDisputes`` with ``validator``) it reads what the flags
claim (which detector, which meter, which window) and asks the question again
of what anyone can read: the provider (type, capacity, registered location:
``energy.getProvider``), the meter's readings as its credits
(``energy.getCredits``: each credit's interval and Wh; the parts a purchase
split off a reading are put back together by the reading hash), its refused
readings (``energy.getRejections``) and, for a comparison with peers, the
credits of the other providers of its type nearby (``energy.listProviders``).
Then it votes, signed (``energy.voteOnDispute``), once.

| detector | the validator's own check | guilty when | severity |
| --- | --- | --- | --- |
| ``solar_at_night`` | the sun's elevation at the provider's location over each flagged reading (``chalicelib.domain.solar``) | a reading holds more energy than its lit minutes allow (capacity + 5 %) plus 2 % of capacity over its dark minutes (sun more than 6° down) and 2 Wh | the energy in the dark as a share of capacity over the dark time: minor below 10 %, major from 10 %, critical from 50 % |
| ``bad_signatures`` | the meter's refused readings | 3 or more refused as ``bad_signature`` in the 24 hours to the window's end | minor; major from 24 (one an hour) |
| ``over_capacity`` | the readings' energy placed in UTC hours | an hour of the window above capacity + 3 % + 2 Wh | by the excess over capacity: minor, major from 10 %, critical from 25 % |
| ``battery_over_storage`` | the energy exported between rests (a reading of an hour or more under 10 % of capacity) | more than 4 hours at capacity (+ 5 %, + 4 Wh) without a rest | by the share of that storage: minor, major from 1.5 times, critical from 2 |
| ``flat_line`` | the readings' average powers | held within the type's band for its time (solar also while the sun's height changes by half again, or at night) | minor; major when held twice as long |
| ``replayed_curve`` | both curves, hour by hour, from both meters' credits | equal after scaling within 0.1 % + 4 Wh an hour | major |
| ``peer_outlier`` | capacity factors of the providers of its type in its geohash cell | the sum over productive hours at least the type's ratio above the peers' median | by the ratio over the limit: minor, major from 1.25 times it, critical from 1.6 |
| ``above_profile`` | the same hours of the meter's previous 14 days | the window's energy above the type's multiple of the highest of those days and by a quarter of a capacity-hour | minor; major from 1.5 times the multiple |

A flag by hand (no detector) gets every physical check that applies to the
meter's type (the sun for solar, capacity, storage for batteries): guilty if
one confirms it, cleared otherwise. When the public data cannot answer yet (a
peer group too small, a history too short to read) the validator does not
vote and looks again later; a dispute without a guilty quorum by its deadline
is cleared.

The judgements (``judge_*``) are pure functions of the records they are given;
:class:`Records` fetches them; :class:`ValidatorBot` is the loop a demo
validator runs.
"""

from __future__ import annotations

import logging
import math
import random
import re
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final, Protocol

from chalicelib.domain import fraud, solar
from chalicelib.domain.providers import EnergyType
from chalicelib.domain.readings import PLAUSIBILITY_TOLERANCE_PERCENT
from energy_client.rpc_client import RpcError, Signer

logger = logging.getLogger("iot.demo")

HOUR_MS: Final = 3_600_000
DAY_MS: Final = 24 * HOUR_MS
BPS: Final = 10_000
MW_PER_WH_PER_MS: Final = 3_600_000_000  # 1 Wh over 1 ms is 3.6e9 mW
DETECTOR_PREFIX: Final = "detector:"
GUILTY, CLEARED = "guilty", "cleared"
MINOR, MAJOR, CRITICAL = "minor", "major", "critical"
_SEVERITY_RANK: Final = {MINOR: 1, MAJOR: 2, CRITICAL: 3}

# A reading of up to two hours is spread over its hours, as the detectors do.
SMOOTH_INTERVAL_MS: Final = 2 * HOUR_MS
# Readings that end this long after a window can still hold energy of its hours.
MARGIN_MS: Final = 2 * HOUR_MS
PAGE: Final = 100
MAX_CREDIT_PAGES: Final = 40  # 4,000 credits: two weeks of 15-minute readings
HISTORY_DAYS: Final = 14
PEER_MIN_HOURS: Final = 3
# Refusals a validator logs and does not try again: the vote is over for it.
FINAL_REFUSALS: Final = frozenset(
    {"already_voted", "dispute_closed", "voting_closed", "not_on_panel", "party_to_dispute"}
)
RETRY_UNDECIDED_SECONDS: Final = 60.0


class PublicApi(Protocol):
    """What a validator calls: ``energy_client.rpc_client.MarketplaceClient.call``."""

    def call(
        self,
        method: str,
        params: Mapping[str, Any] | Sequence[Any] | None = None,
        signer: Signer | None = None,
    ) -> Any: ...


# -- records -----------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Reading:
    """A minted reading: the meter's energy over ``[start_ms, end_ms)``."""

    start_ms: int
    end_ms: int
    wh: int

    @property
    def duration_ms(self) -> int:
        return self.end_ms - self.start_ms


@dataclass(frozen=True)
class Meter:
    """What the registry says of the flagged provider and its meter."""

    provider_id: str
    meter_address: str
    energy_type: EnergyType
    capacity_w: int
    latitude_micro_deg: int
    longitude_micro_deg: int

    @classmethod
    def of(cls, provider: Mapping[str, Any]) -> Meter:
        return cls(
            provider_id=str(provider["provider_id"]),
            meter_address=str(provider["meter_address"]),
            energy_type=EnergyType(provider["energy_type"]),
            capacity_w=int(provider["capacity_wh"]),
            latitude_micro_deg=_micro(provider["latitude"]),
            longitude_micro_deg=_micro(provider["longitude"]),
        )

    @property
    def where(self) -> str:
        return f"{self.latitude_micro_deg / 1e6:.4f}, {self.longitude_micro_deg / 1e6:.4f}"

    @property
    def day_shift_hours(self) -> int:
        """Hours from UTC to local mean time, rounded (15° of longitude an hour)."""
        return max(-12, min(12, (self.longitude_micro_deg + 7_500_000) // 15_000_000))


def _micro(degrees: Any) -> int:
    return int(Decimal(str(degrees)).scaleb(6))


def readings_of(credits: Iterable[Mapping[str, Any]]) -> list[Reading]:
    """The readings behind credits: the parts split off one reading added back up, by end."""
    by_reading: dict[str, tuple[int, int, int]] = {}
    for credit in credits:
        key = str(credit.get("reading_hash") or credit["credit_id"])
        start, end = int(credit["interval_start_ms"]), int(credit["interval_end_ms"])
        wh = int(credit["amount_wh"])
        if key in by_reading:
            wh += by_reading[key][2]
        by_reading[key] = (start, end, wh)
    return sorted(Reading(*values) for values in by_reading.values())


def hourly_wh(readings: Iterable[Reading], capacity_w: int) -> tuple[dict[int, int], set[int]]:
    """Energy per UTC hour (index from the epoch), and the hours that were placed, not measured.

    As the detectors place it: a reading of up to two hours in proportion to
    its overlap with each hour; a longer one (the first after a silence) from
    its end backwards at most capacity an hour, those hours inexact.
    """
    hours: Counter[int] = Counter()
    inexact: set[int] = set()
    for reading in readings:
        start, end, wh = reading.start_ms, reading.end_ms, reading.wh
        last = (end - 1) // HOUR_MS
        if end - start <= 0:
            hours[last] += wh
            continue
        if end - start <= SMOOTH_INTERVAL_MS:
            placed = 0
            for hour in range(start // HOUR_MS, last):
                overlap = min(end, (hour + 1) * HOUR_MS) - max(start, hour * HOUR_MS)
                share = wh * overlap // (end - start)
                hours[hour] += share
                placed += share
            hours[last] += wh - placed
            continue
        left = wh
        for hour in range(last, start // HOUR_MS - 1, -1):
            inexact.add(hour)
            overlap = min(end, (hour + 1) * HOUR_MS) - max(start, hour * HOUR_MS)
            take = min(left, capacity_w * overlap // HOUR_MS)
            if take:
                hours[hour] += take
                left -= take
        if left:
            hours[last] += left
    return dict(hours), inexact


def in_window(readings: Iterable[Reading], start_ms: int, end_ms: int) -> list[Reading]:
    """The readings taken in ``[start_ms, end_ms)`` (by their time: the interval's end)."""
    return [r for r in readings if start_ms <= r.end_ms < end_ms]


def window_hours(start_ms: int, end_ms: int) -> range:
    """The UTC hours a meter-window flag speaks of.

    A detector's window is when the energy came, ``[a, b)``; its flag covers
    the readings taken in ``(a, b]``, i.e. the window ``[a + 1, b + 1)``.
    """
    first = (start_ms - 1) // HOUR_MS
    last = -(-(end_ms - 1) // HOUR_MS)  # rounded up: the hour the window's energy ends in
    return range(first, max(first + 1, last))


# -- judgements ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Judgement:
    """A validator's answer: a verdict with a severity, or none yet, and what it found."""

    verdict: str | None  # guilty, cleared, or None: the public data cannot tell yet
    severity: str | None
    finding: str

    @classmethod
    def guilty(cls, severity: str, finding: str) -> Judgement:
        return cls(GUILTY, severity, finding)

    @classmethod
    def cleared(cls, finding: str) -> Judgement:
        return cls(CLEARED, None, finding)

    @classmethod
    def undecided(cls, finding: str) -> Judgement:
        return cls(None, None, finding)

    def vote(self) -> dict[str, str]:
        """The verdict as ``energy.voteOnDispute`` takes it."""
        if self.verdict is None:
            raise ValueError("an undecided judgement is no vote")
        return {"verdict": self.verdict, **({"severity": self.severity} if self.severity else {})}


def _by_share(share: float, major: float, critical: float) -> str:
    return CRITICAL if share >= critical else MAJOR if share >= major else MINOR


def judge_solar_at_night(meter: Meter, readings: Sequence[Reading]) -> Judgement:
    """Did a solar meter report energy the sun at its location could not have given?"""
    if meter.energy_type != EnergyType.SOLAR:
        return Judgement.cleared("not a solar meter: the sun does not bound its output")
    if not readings:
        return Judgement.undecided("no readings in the window")
    suspect = dark_total_ms = in_dark_total = 0
    for reading in readings:
        if reading.wh <= 0 or not 0 < reading.duration_ms <= fraud.NIGHT_MAX_INTERVAL_MS:
            continue
        lit_ms = solar.daylight_ms(
            meter.latitude_micro_deg,
            meter.longitude_micro_deg,
            reading.start_ms,
            reading.end_ms,
            fraud.NIGHT_ELEVATION_DEG,
        )
        dark_ms = reading.duration_ms - lit_ms
        if dark_ms <= 0:
            continue
        lit_wh = (
            meter.capacity_w * lit_ms * (100 + PLAUSIBILITY_TOLERANCE_PERCENT) // (HOUR_MS * 100)
        )
        allowance = meter.capacity_w * dark_ms * fraud.NIGHT_ALLOWANCE_BPS // (HOUR_MS * BPS)
        in_the_dark = reading.wh - lit_wh
        if in_the_dark > allowance + fraud.NIGHT_SLACK_WH:
            suspect += 1
            dark_total_ms += dark_ms
            in_dark_total += in_the_dark
    if not suspect:
        return Judgement.cleared(
            f"{len(readings)} readings at {meter.where}: none holds energy the sun could not give"
        )
    share = in_dark_total * HOUR_MS / (meter.capacity_w * dark_total_ms)
    return Judgement.guilty(
        _by_share(share, 0.10, 0.50),
        f"{suspect} of {len(readings)} readings report {in_dark_total} Wh over "
        f"{_duration(dark_total_ms)} with the sun more than 6° below the horizon at "
        f"{meter.where}: {share:.0%} of capacity in the dark",
    )


def judge_bad_signatures(rejections: Iterable[Mapping[str, Any]], window_end_ms: int) -> Judgement:
    """Were 3 or more of the meter's readings refused for their signature within 24 hours?"""
    bad = [
        int(r["at_ms"])
        for r in rejections
        if r.get("reason") == "bad_signature"
        and window_end_ms - DAY_MS <= int(r["at_ms"]) < window_end_ms
    ]
    if len(bad) < fraud.CHANNEL_BAD_SIGNATURES:
        return Judgement.cleared(
            f"{len(bad)} readings refused as bad_signature in the 24 hours to {_when(window_end_ms)}"
        )
    return Judgement.guilty(
        MAJOR if len(bad) >= 24 else MINOR,
        f"{len(bad)} readings refused as bad_signature from {_when(min(bad))} to "
        f"{_when(max(bad))}, on a channel pinned to the meter's certificate",
    )


def judge_over_capacity(
    meter: Meter, readings: Sequence[Reading], hours: Iterable[int]
) -> Judgement:
    """Did any of ``hours`` hold more than capacity + 3 % (+ 2 Wh)?"""
    energy, _ = hourly_wh(readings, meter.capacity_w)
    limit = (
        meter.capacity_w * (BPS + fraud.OVER_CAPACITY_TOLERANCE_BPS) // BPS
        + fraud.OVER_CAPACITY_SLACK_WH
    )
    checked = [(energy.get(h, 0), h) for h in hours]
    if not checked or not readings:
        return Judgement.undecided("no readings in the window")
    worst, hour = max(checked)
    if worst <= limit:
        return Judgement.cleared(
            f"the fullest hour holds {worst} Wh; capacity {meter.capacity_w} W allows {limit}"
        )
    excess = worst / meter.capacity_w - 1
    return Judgement.guilty(
        _by_share(excess, 0.10, 0.25),
        f"{worst} Wh from {_when(hour * HOUR_MS)} to {_when((hour + 1) * HOUR_MS)}: "
        f"{excess:.1%} above capacity {meter.capacity_w} W (limit {limit} Wh)",
    )


def judge_battery_over_storage(meter: Meter, readings: Sequence[Reading]) -> Judgement:
    """Did a battery export more than 4 hours at capacity without a rest?"""
    if not readings:
        return Judgement.undecided("no readings in the window")
    storage = meter.capacity_w * fraud.DEFAULT_BATTERY_STORAGE_HOURS
    limit = storage * (BPS + fraud.BATTERY_TOLERANCE_BPS) // BPS + fraud.BATTERY_SLACK_WH
    run = longest = 0
    for reading in readings:
        average_bps = (
            reading.wh * HOUR_MS * BPS // (reading.duration_ms * meter.capacity_w)
            if reading.duration_ms > 0
            else BPS
        )
        rest = (
            reading.duration_ms >= fraud.BATTERY_REST_MS
            and average_bps < fraud.BATTERY_REST_POWER_BPS
        )
        run = reading.wh if rest else run + reading.wh
        longest = max(longest, run)
    if longest <= limit:
        return Judgement.cleared(f"at most {longest} Wh between rests; {limit} Wh allowed")
    return Judgement.guilty(
        _by_share(longest / storage, 1.5, 2.0),
        f"{longest} Wh exported without a rest; a battery of {meter.capacity_w} W holds about "
        f"{storage} Wh (4 hours)",
    )


def judge_flat_line(meter: Meter, readings: Sequence[Reading]) -> Judgement:
    """Did the meter hold its average power within the type's band for longer than it can?"""
    rule = fraud.FLAT_RULES.get(meter.energy_type)
    if rule is None:
        return Judgement.cleared(f"a {meter.energy_type.value} source may hold its power flat")
    longest_ms = run_start = 0
    low = high = -1
    low_sun = high_sun = 0
    capacity_mw = meter.capacity_w * 1_000
    for reading in readings:
        interval = reading.duration_ms
        power = reading.wh * MW_PER_WH_PER_MS // interval if interval > 0 else -1
        if (
            interval <= 0
            or interval > fraud.FLAT_MAX_INTERVAL_MS
            or power * BPS < capacity_mw * fraud.FLAT_MIN_POWER_BPS
            or power * BPS > capacity_mw * fraud.FLAT_MAX_POWER_BPS
        ):
            low = high = -1
            continue
        sun = _sun_sine_bps(meter, reading.end_ms)
        band = min(low, power) * rule.tolerance_bps // BPS if low >= 0 else 0
        band += fraud.FLAT_ROUNDING_WH * MW_PER_WH_PER_MS // interval
        if low < 0 or max(high, power) - min(low, power) > band:
            run_start, low, high, low_sun, high_sun = reading.start_ms, power, power, sun, sun
            continue
        low, high = min(low, power), max(high, power)
        low_sun, high_sun = min(low_sun, sun), max(high_sun, sun)
        if (
            meter.energy_type == EnergyType.SOLAR
            and high_sun * BPS < low_sun * fraud.FLAT_SUN_RATIO_BPS
        ):
            continue
        longest_ms = max(longest_ms, reading.end_ms - run_start)
    if longest_ms < rule.min_ms:
        return Judgement.cleared(
            f"no run flat within {rule.tolerance_bps / 100:g} % for "
            f"{rule.min_ms // HOUR_MS} hours (longest {longest_ms // 60_000} minutes)"
        )
    return Judgement.guilty(
        MAJOR if longest_ms >= 2 * rule.min_ms else MINOR,
        f"average power flat within {rule.tolerance_bps / 100:g} % for {longest_ms // 60_000} "
        f"minutes; a {meter.energy_type.value} source varies within {rule.min_ms // HOUR_MS} hours",
    )


def _sun_sine_bps(meter: Meter, at_ms: int) -> int:
    elevation = solar.elevation_deg(meter.latitude_micro_deg, meter.longitude_micro_deg, at_ms)
    return max(0, round(BPS * _sin_deg(elevation)))


def _sin_deg(degrees: float) -> float:
    return math.sin(math.radians(degrees))


def judge_replayed_curve(curve: Sequence[int], original: Sequence[int]) -> Judgement:
    """Is ``curve`` (hourly Wh) the ``original`` scaled, within 0.1 % + 4 Wh an hour?"""
    if not curve or not original or sum(curve) <= 0 or sum(original) <= 0:
        return Judgement.undecided("a curve has no energy in the public credits")
    if len(curve) != len(original):
        return Judgement.cleared(
            f"the curves differ in length: {len(curve)} and {len(original)} hours"
        )
    total, other_total = sum(curve), sum(original)
    scale_slack = max(total, other_total) // max(1, min(total, other_total))
    for hour, (wh, other_wh) in enumerate(zip(curve, original, strict=True)):
        difference = abs(wh * other_total - other_wh * total)
        tolerance = (
            wh * fraud.REPLAY_TOLERANCE_BPS // BPS + fraud.REPLAY_SLACK_WH * (1 + scale_slack)
        ) * other_total
        if difference > tolerance:
            return Judgement.cleared(
                f"hour {hour + 1} of {len(curve)} differs: {wh} Wh against "
                f"{other_wh * total / other_total:.0f} Wh scaled"
            )
    return Judgement.guilty(
        MAJOR,
        f"{len(curve)} hours equal the original's after scaling ({total} Wh, {other_total} Wh)",
    )


def judge_peer_outlier(
    meter: Meter,
    own: Mapping[int, int],
    peers: Sequence[tuple[int, Mapping[int, int]]],
    hours: Iterable[int],
) -> Judgement:
    """Is the meter's capacity factor over the productive hours far above its peers' median?

    ``own``: the meter's Wh per hour; ``peers``: each peer's capacity and Wh per hour.
    """
    rule = fraud.PEER_RULES.get(meter.energy_type)
    if rule is None:
        return Judgement.cleared(f"{meter.energy_type.value} meters are not compared with peers")
    own_sum = median_sum = compared = 0
    for hour in hours:
        factors = [wh[hour] * BPS // capacity for capacity, wh in peers if hour in wh and capacity]
        if len(factors) < fraud.PEER_MIN_PEERS:
            continue
        median = int(statistics.median_low(factors))
        if median < fraud.PEER_MIN_MEDIAN_BPS:
            continue
        compared += 1
        own_sum += own.get(hour, 0) * BPS // meter.capacity_w
        median_sum += median
    if compared < PEER_MIN_HOURS:
        return Judgement.undecided(
            f"{compared} productive hours with {fraud.PEER_MIN_PEERS} peers or more; "
            f"{PEER_MIN_HOURS} are needed"
        )
    ratio = own_sum / median_sum
    limit = rule.ratio_bps / BPS
    if ratio < limit:
        return Judgement.cleared(
            f"capacity factor x{ratio:.2f} the peers' median over {compared} hours "
            f"(x{limit:g} is the limit)"
        )
    return Judgement.guilty(
        _by_share(ratio / limit, 1.25, 1.6),
        f"capacity factor {own_sum / 100:.1f} % against the peers' median {median_sum / 100:.1f} % "
        f"over {compared} hours: x{ratio:.2f} (x{limit:g} is the limit)",
    )


def judge_above_profile(
    meter: Meter, energy: Mapping[int, int], hours: Sequence[int], history_days: int
) -> Judgement:
    """Is the window far above the highest of the same hours on the meter's previous days?"""
    rule = fraud.PROFILE_RULES.get(meter.energy_type)
    if rule is None:
        return Judgement.cleared(f"a {meter.energy_type.value} meter has no profile to exceed")
    if history_days < rule.warmup_days:
        return Judgement.undecided(
            f"{history_days} days of history in the public credits; {rule.warmup_days} are needed"
        )
    day_wh = sum(energy.get(h, 0) for h in hours)
    allowed = sum(
        max(energy.get(h - DAY_MS // HOUR_MS * back, 0) for back in range(1, history_days + 1))
        for h in hours
    )
    excess = day_wh - allowed
    ratio = day_wh / allowed if allowed else float("inf")
    limit = rule.ratio_bps / BPS
    if ratio <= limit or excess * BPS < meter.capacity_w * fraud.ABOVE_PROFILE_MIN_EXCESS_BPS:
        return Judgement.cleared(
            f"{day_wh} Wh in those hours; the best of the previous {history_days} days gave "
            f"{allowed} Wh (x{limit:g} is the limit)"
        )
    return Judgement.guilty(
        MAJOR if ratio >= 1.5 * limit else MINOR,
        f"{day_wh} Wh in those hours against at most {allowed} Wh on each of the previous "
        f"{history_days} days: x{ratio:.2f} (x{limit:g} is the limit)",
    )


# -- fetching what a judgement needs -------------------------------------------------------


class Records:
    """The public records a validator reads, a page at a time, never more than it needs."""

    def __init__(self, api: PublicApi) -> None:
        self.api = api

    def provider(self, provider_id: str) -> Meter:
        return Meter.of(self.api.call("energy.getProvider", {"provider_id": provider_id}))

    def meter(self, meter_address: str) -> Meter:
        found = self.api.call("energy.getMeter", {"meter_address": meter_address})
        return self.provider(str(found["provider_id"]))

    def credits(
        self, provider_id: str, since_ms: int, until_ms: int, max_pages: int = MAX_CREDIT_PAGES
    ) -> tuple[list[dict[str, Any]], bool]:
        """Credits whose reading was taken in ``[since_ms, until_ms)``, and whether all were read.

        Credits come newest first (by their interval's end), so paging stops at
        the first older than ``since_ms``.
        """
        found: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(max_pages):
            params: dict[str, Any] = {"provider_id": provider_id, "limit": PAGE}
            if cursor:
                params["cursor"] = cursor
            page = self.api.call("energy.getCredits", params)
            credits = page["credits"]
            found.extend(c for c in credits if since_ms <= int(c["interval_end_ms"]) < until_ms)
            cursor = page.get("next_cursor")
            if not cursor or not credits or int(credits[-1]["interval_end_ms"]) < since_ms:
                return found, True
        return found, False

    def readings(
        self, provider_id: str, since_ms: int, until_ms: int
    ) -> tuple[list[Reading], bool]:
        credits, complete = self.credits(provider_id, since_ms, until_ms)
        return readings_of(credits), complete

    def rejections(self, meter_address: str, since_ms: int) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(MAX_CREDIT_PAGES):
            params: dict[str, Any] = {"meter_address": meter_address, "limit": PAGE}
            if cursor:
                params["cursor"] = cursor
            page = self.api.call("energy.getRejections", params)
            found.extend(page["rejections"])
            cursor = page.get("next_cursor")
            if not cursor or not page["rejections"]:
                break
            if int(page["rejections"][-1]["at_ms"]) < since_ms:
                break
        return found

    def peers(self, meter: Meter) -> list[Meter]:
        """The other providers of the meter's type in its peer cell (a 3-character geohash)."""
        cell = fraud.geohash(
            meter.latitude_micro_deg, meter.longitude_micro_deg, fraud.PEER_CELL_PRECISION
        )
        peers: list[Meter] = []
        cursor: str | None = None
        for _ in range(MAX_CREDIT_PAGES):
            params: dict[str, Any] = {"energy_type": meter.energy_type.value, "limit": PAGE}
            if cursor:
                params["cursor"] = cursor
            page = self.api.call("energy.listProviders", params)
            for provider in page["providers"]:
                peer = Meter.of(provider)
                if peer.provider_id != meter.provider_id and (
                    fraud.geohash(
                        peer.latitude_micro_deg,
                        peer.longitude_micro_deg,
                        fraud.PEER_CELL_PRECISION,
                    )
                    == cell
                ):
                    peers.append(peer)
            cursor = page.get("next_cursor")
            if not cursor:
                break
        return peers


_ORIGINAL: Final = re.compile(
    r"to meter (?P<meter>\S+), day from (?P<start>\d{4}-\d\d-\d\d \d\d:\d\d) UTC to "
    r"(?P<end>\d{4}-\d\d-\d\d \d\d:\d\d) UTC"
)


def _parse_when(text: str) -> int:
    return int(datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC).timestamp() * 1000)


def _duration(ms: int) -> str:
    return f"{ms // 60_000} minutes" if ms >= 120_000 else f"{ms // 1000} seconds"


def _when(at_ms: int) -> str:
    return datetime.fromtimestamp(at_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def detectors_of(dispute: Mapping[str, Any]) -> list[str]:
    """The detectors whose flags are on a dispute, in flag order (none: flagged by hand)."""
    names: list[str] = []
    for flag in dispute.get("flags", []):
        by = str(flag.get("flagged_by", ""))
        if by.startswith(DETECTOR_PREFIX) and by[len(DETECTOR_PREFIX) :] not in names:
            names.append(by[len(DETECTOR_PREFIX) :])
    return names


def _window(records: Records, dispute: Mapping[str, Any], meter: Meter) -> tuple[int, int] | None:
    subject = dispute["subject"]
    if subject.get("kind") == "meter_window":
        return int(subject["window_start_ms"]), int(subject["window_end_ms"])
    credits, _ = records.credits(meter.provider_id, 0, 2**62)
    for credit in credits:
        if credit.get("reading_hash") == subject.get("reading_hash"):
            end = int(credit["interval_end_ms"])
            return end, end + 1
    return None


def judge_dispute(
    records: Records, dispute: Mapping[str, Any], now_ms: int
) -> tuple[Judgement, str]:
    """A validator's judgement of a dispute, and what it judged (the detectors, or "by hand")."""
    meter = records.provider(str(dispute["provider_id"]))
    window = _window(records, dispute, meter)
    if window is None:
        return Judgement.undecided("the flagged reading is not among the provider's credits"), "?"
    detectors = detectors_of(dispute)
    claims = detectors or _physics_for(meter)
    judgements = [_judge_claim(records, dispute, meter, window, name, now_ms) for name in claims]
    what = ", ".join(detectors) if detectors else "flagged by hand"
    guilty = [j for j in judgements if j.verdict == GUILTY]
    if guilty:
        return max(guilty, key=lambda j: _SEVERITY_RANK[j.severity or MINOR]), what
    if detectors and any(j.verdict is None for j in judgements):
        return next(j for j in judgements if j.verdict is None), what
    return Judgement.cleared("; ".join(j.finding for j in judgements)), what


def _physics_for(meter: Meter) -> list[str]:
    checks = [fraud.OVER_CAPACITY]
    if meter.energy_type == EnergyType.SOLAR:
        checks.insert(0, fraud.SOLAR_AT_NIGHT)
    if meter.energy_type == EnergyType.BATTERY:
        checks.append(fraud.BATTERY_OVER_STORAGE)
    return checks


def _judge_claim(
    records: Records,
    dispute: Mapping[str, Any],
    meter: Meter,
    window: tuple[int, int],
    detector: str,
    now_ms: int,
) -> Judgement:
    start, end = window
    hours = window_hours(start, end)
    if detector == fraud.BAD_SIGNATURES:
        return judge_bad_signatures(records.rejections(meter.meter_address, end - DAY_MS), end)
    if detector in (fraud.SOLAR_AT_NIGHT, fraud.BATTERY_OVER_STORAGE, fraud.FLAT_LINE):
        readings, _ = records.readings(meter.provider_id, start, end)
        if detector == fraud.SOLAR_AT_NIGHT:
            return judge_solar_at_night(meter, readings)
        if detector == fraud.BATTERY_OVER_STORAGE:
            return judge_battery_over_storage(meter, readings)
        return judge_flat_line(meter, readings)
    if detector == fraud.OVER_CAPACITY:
        around, _ = records.readings(
            meter.provider_id,
            hours.start * HOUR_MS,
            min(now_ms + 1, hours.stop * HOUR_MS + MARGIN_MS),
        )
        return judge_over_capacity(meter, around, hours)
    if detector == fraud.PEER_OUTLIER:
        return _judge_peers(records, meter, hours, now_ms)
    if detector == fraud.REPLAYED_CURVE:
        return _judge_replay(records, dispute, meter, hours, now_ms)
    if detector == fraud.ABOVE_PROFILE:
        since = hours.start * HOUR_MS - HISTORY_DAYS * DAY_MS
        readings, complete = records.readings(
            meter.provider_id, since, min(now_ms + 1, hours.stop * HOUR_MS + MARGIN_MS)
        )
        energy, _ = hourly_wh(readings, meter.capacity_w)
        first = min((r.start_ms for r in readings), default=hours.start * HOUR_MS)
        history = HISTORY_DAYS if complete else 0
        history = min(history, max(0, (hours.start * HOUR_MS - first) // DAY_MS))
        return judge_above_profile(meter, energy, list(hours), history)
    return Judgement.undecided(f"no check for the detector {detector!r}")


def _curve(records: Records, meter: Meter, hours: range, now_ms: int) -> list[int]:
    readings, _ = records.readings(
        meter.provider_id, hours.start * HOUR_MS, min(now_ms + 1, hours.stop * HOUR_MS + MARGIN_MS)
    )
    energy, _ = hourly_wh(readings, meter.capacity_w)
    curve = [energy.get(h, 0) for h in hours]
    while curve and curve[-1] == 0:
        curve.pop()
    while curve and curve[0] == 0:
        curve.pop(0)
    return curve


def _judge_replay(
    records: Records, dispute: Mapping[str, Any], meter: Meter, hours: range, now_ms: int
) -> Judgement:
    original = None
    for flag in dispute.get("flags", []):
        if flag.get("flagged_by") == DETECTOR_PREFIX + fraud.REPLAYED_CURVE:
            for line in flag.get("evidence", []):
                original = _ORIGINAL.search(str(line)) or original
    if original is None:
        return Judgement.undecided("the flag does not name the original curve")
    source = records.meter(original["meter"])
    original_hours = range(
        _parse_when(original["start"]) // HOUR_MS, _parse_when(original["end"]) // HOUR_MS
    )
    return judge_replayed_curve(
        _curve(records, meter, hours, now_ms), _curve(records, source, original_hours, now_ms)
    )


def _judge_peers(records: Records, meter: Meter, hours: range, now_ms: int) -> Judgement:
    until = min(now_ms + 1, hours.stop * HOUR_MS + MARGIN_MS)

    def energy(of: Meter) -> dict[int, int]:
        readings, _ = records.readings(of.provider_id, hours.start * HOUR_MS, until)
        by_hour, inexact = hourly_wh(readings, of.capacity_w)
        return {h: wh for h, wh in by_hour.items() if h not in inexact}

    peers = records.peers(meter)
    if len(peers) < fraud.PEER_MIN_PEERS:
        return Judgement.undecided(f"{len(peers)} peers in the cell; {fraud.PEER_MIN_PEERS} needed")
    return judge_peer_outlier(
        meter, energy(meter), [(p.capacity_w, energy(p)) for p in peers], hours
    )


# -- the bot -------------------------------------------------------------------------------


@dataclass
class ValidatorStats:
    votes: Counter[str] = field(default_factory=Counter)  # guilty, cleared
    severities: Counter[str] = field(default_factory=Counter)
    undecided: int = 0
    refusals: Counter[str] = field(default_factory=Counter)
    unanswered: int = 0  # votes sent that got no answer in time
    errors: int = 0


class ValidatorBot:
    """A validator's loop: find the open disputes it was drawn for, judge each, vote once."""

    def __init__(
        self, api: PublicApi, signer: Signer, *, pause: float, seed: int = 0, clock: Any = time.time
    ) -> None:
        self.api = api
        self.signer = signer
        self.records = Records(api)
        self.pause = pause
        self.random = random.Random(seed)  # noqa: S311 - when to look, not a secret
        self.clock = clock
        self.stats = ValidatorStats()
        self.done: set[str] = set()  # voted, or refused for good
        self._retry_at: dict[str, float] = {}

    @property
    def name(self) -> str:
        return self.signer.account

    def open_disputes(self) -> list[dict[str, Any]]:
        """The open disputes this validator was drawn for and has not voted on, oldest first."""
        found: list[dict[str, Any]] = []
        cursor: str | None = None
        oldest_open_ms = int(self.clock() * 1000) - 3 * DAY_MS  # votes close after 48 hours
        for _ in range(10):
            params: dict[str, Any] = {"validator": self.name, "limit": 50}
            if cursor:
                params["cursor"] = cursor
            page = self.api.call("energy.getDisputes", params)
            disputes = page["disputes"]
            found.extend(
                d
                for d in disputes
                if d["status"] == "open"
                and d["dispute_id"] not in self.done
                and all(v["validator"] != self.name for v in d.get("votes", []))
            )
            cursor = page.get("next_cursor")
            if not cursor or not disputes or int(disputes[-1]["opened_at_ms"]) < oldest_open_ms:
                break
        return sorted(found, key=lambda d: int(d["opened_at_ms"]))

    def step(self) -> int:
        """One look at the panel's work; the votes cast."""
        cast = 0
        now = self.clock()
        for dispute in self.open_disputes():
            dispute_id = str(dispute["dispute_id"])
            if self._retry_at.get(dispute_id, 0.0) > now:
                continue
            judgement, what = judge_dispute(self.records, dispute, int(now * 1000))
            if judgement.verdict is None:
                self.stats.undecided += 1
                self._retry_at[dispute_id] = now + RETRY_UNDECIDED_SECONDS
                logger.info(
                    "%s does not vote on %s (%s) yet: %s",
                    self.name,
                    dispute_id,
                    what,
                    judgement.finding,
                )
                continue
            cast += self.vote(dispute, judgement, what)
        return cast

    def vote(self, dispute: Mapping[str, Any], judgement: Judgement, what: str) -> int:
        dispute_id = str(dispute["dispute_id"])
        try:
            after = self.api.call(
                "energy.voteOnDispute", {"dispute_id": dispute_id, **judgement.vote()}, self.signer
            )
        except OSError as exc:
            # The vote that decides a guilty dispute also revokes its credits, in the same
            # call: a large window can outlast the client's patience. The vote may well
            # have counted; the next look finds it on the dispute (or the dispute decided).
            self.stats.unanswered += 1
            logger.info(
                "%s's vote on %s got no answer (%s); looking again later",
                self.name,
                dispute_id,
                exc,
            )
            return 0
        except RpcError as refused:
            reason = refused.reason or str(refused.code)
            self.stats.refusals[reason] += 1
            if reason in FINAL_REFUSALS:
                self.done.add(dispute_id)
                logger.info("%s's vote on %s was refused: %s", self.name, dispute_id, reason)
            else:
                logger.warning("%s could not vote on %s: %s", self.name, dispute_id, refused)
            return 0
        self.done.add(dispute_id)
        self._retry_at.pop(dispute_id, None)
        self.stats.votes[str(judgement.verdict)] += 1
        if judgement.severity:
            self.stats.severities[judgement.severity] += 1
        cast = str(judgement.verdict) + (f" ({judgement.severity})" if judgement.severity else "")
        decided = (
            f"; that vote decided it: {after['status']}" if after.get("status") != "open" else ""
        )
        logger.info(
            "%s voted %s on %s (%s, meter %s): %s%s",
            self.name,
            cast,
            dispute_id,
            what,
            (dispute.get("subject") or {}).get("meter_address") or dispute.get("provider_id"),
            judgement.finding,
            decided,
        )
        return 1

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self.random.uniform(0.5, 1.5) * self.pause):
            try:
                self.step()
            except RpcError as refused:
                self.stats.errors += 1
                logger.warning("%s: %s", self.name, refused)
            except OSError as exc:  # the API restarting: look again later
                self.stats.errors += 1
                logger.warning("%s: %s", self.name, exc)
