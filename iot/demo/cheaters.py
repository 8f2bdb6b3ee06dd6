"""The demo's cheating meters: what each claims, and where the night-side one stands.

Each cheater is an ordinary prosumer (an account, a provider with a stake, a
meter provisioned as an IoT thing with its own key) whose meter reports what
its plant could not have produced. The fraud detectors
(``chalicelib.domain.fraud``) flag it; the demo's validators
(``iot.demo.validators``) re-check the flag and vote; a guilty verdict
slashes the stake. The strategies, and how soon a live demo catches them:

* ``solar_at_night``: a solar provider registered where it is night when the
  demo starts (:func:`night_sites`, computed with ``chalicelib.domain.solar``),
  whose meter reports a generator's output, 30 % of capacity, whenever the sun
  is down there (:class:`NightGenerator`). Flagged on its first reading with
  energy: seconds.
* ``over_capacity``: a hydro provider whose meter reports 4 % above its
  capacity, every reading just under the ingest's per-reading limit (5 %)
  (:class:`OverCapacity`). Only a whole hour above capacity + 3 % is
  flagged, so the flag comes when the first whole UTC hour after the start
  closes: one to two hours.
* ``bad_signatures``: the fleet's faulty meter (:class:`FaultyMeter`), an
  honest meter beside which a device holding its certificate but not its key
  sends readings with bad signatures (and counter jumps no generator could
  make). Each is refused; three bad signatures within 24 hours on the meter's
  own channel are flagged: minutes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from chalicelib.domain import readings, solar
from energy_client.rpc_client import encode
from iot.meter import MeterClient

logger = logging.getLogger("iot.demo")

HOUR_MS: Final = 3_600_000
SOLAR_AT_NIGHT: Final = "solar_at_night"
OVER_CAPACITY: Final = "over_capacity"
BAD_SIGNATURES: Final = "bad_signatures"
# What ``--cheaters N`` adds, in turn (the faulty meter is one of the fleet).
STRATEGIES: Final = (SOLAR_AT_NIGHT, OVER_CAPACITY)

# The sun below the horizon: the generator runs. (The detector judges only
# what comes while it is more than 6° below, after civil twilight.)
SUNSET_ELEVATION_DEG: Final = 0.0
NIGHT_ELEVATION_DEG: Final = -6.0
NIGHT_SHARE: Final = 0.3  # of capacity: a diesel generator behind the meter
OVER_CAPACITY_SHARE: Final = 1.04  # ingest refuses a reading above 1.05


@dataclass(frozen=True)
class NightSite:
    """A place with a jurisdiction: where a night-side cheater registers."""

    name: str
    jurisdiction: str
    latitude: str  # degrees, as registered
    longitude: str

    @property
    def micro_degrees(self) -> tuple[int, int]:
        return _micro(self.latitude), _micro(self.longitude)

    def dark_for_ms(self, now_ms: int, horizon_ms: int, step_ms: int = 600_000) -> int:
        """How long from ``now_ms`` the sun stays more than 6° below the horizon here
        (checked every ``step_ms``, at most ``horizon_ms``; 0 if it is not dark now)."""
        latitude, longitude = self.micro_degrees
        dark = 0
        while dark <= horizon_ms:
            if solar.elevation_deg(latitude, longitude, now_ms + dark) >= NIGHT_ELEVATION_DEG:
                return max(0, dark - step_ms) if dark else 0
            dark += step_ms
        return horizon_ms


# Cities every 15-45° of longitude, so that one of them is near its local
# midnight at any hour, on both hemispheres and away from the poles (no
# polar day: each has a night every day of the year).
NIGHT_CANDIDATES: Final = (
    NightSite("Honolulu", "US_HI", "21.3069", "-157.8583"),
    NightSite("Los Angeles", "US_CA", "34.0522", "-118.2437"),
    NightSite("Denver", "US_CO", "39.7392", "-104.9903"),
    NightSite("New York", "US_NY", "40.7128", "-74.0060"),
    NightSite("Sao Paulo", "BR_SP", "-23.5505", "-46.6333"),
    NightSite("Praia", "CV", "14.9330", "-23.5133"),
    NightSite("Lagos", "NG", "6.5244", "3.3792"),
    NightSite("Cairo", "EG", "30.0444", "31.2357"),
    NightSite("Dubai", "AE", "25.2048", "55.2708"),
    NightSite("Delhi", "IN_DL", "28.6139", "77.2090"),
    NightSite("Bangkok", "TH", "13.7563", "100.5018"),
    NightSite("Tokyo", "JP_13", "35.6762", "139.6503"),
    NightSite("Sydney", "AU_NSW", "-33.8688", "151.2093"),
    NightSite("Auckland", "NZ", "-36.8485", "174.7633"),
)


def night_sites(now_ms: int, horizon_ms: int = 12 * HOUR_MS) -> list[NightSite]:
    """The candidates where it is dark now, the longest night ahead first."""
    dark = [
        (site.dark_for_ms(now_ms, horizon_ms), n, site) for n, site in enumerate(NIGHT_CANDIDATES)
    ]
    return [site for ahead, _, site in sorted(dark, key=lambda d: (-d[0], d[1])) if ahead > 0]


class NightGenerator:
    """A solar meter with a generator behind it: a share of capacity whenever the sun is down.

    A ``GenerationSource`` for :class:`iot.meter.MeterClient`; by day it reports
    nothing (the cheater has no panels).
    """

    def __init__(
        self, capacity_w: int, latitude_micro_deg: int, longitude_micro_deg: int, share: float
    ) -> None:
        self.capacity_w = capacity_w
        self.location = (latitude_micro_deg, longitude_micro_deg)
        self.power_w = int(capacity_w * share)

    def watt_milliseconds(self, start_ms: int, end_ms: int) -> int:
        if end_ms <= start_ms:
            return 0
        lit = solar.daylight_ms(*self.location, start_ms, end_ms, SUNSET_ELEVATION_DEG)
        return self.power_w * (end_ms - start_ms - lit)


class OverCapacity:
    """A meter that reports a constant share of capacity above it (just under the ingest's limit)."""

    def __init__(self, capacity_w: int, share: float = OVER_CAPACITY_SHARE) -> None:
        self.capacity_w = capacity_w
        self.power_w = int(capacity_w * share)

    def watt_milliseconds(self, start_ms: int, end_ms: int) -> int:
        return self.power_w * max(0, end_ms - start_ms)


class FaultyMeter:
    """Sends, besides a meter's real readings, one it should not: every ``every`` seconds.

    In turn a reading with a bad signature (a device with the meter's
    certificate and not its key) and a counter jump of ten hours at full
    power. Both are refused and recorded (``energy.getRejections``); the bad
    signatures, three within 24 hours, are flagged (``bad_signatures``).
    """

    def __init__(self, meter: MeterClient, capacity_w: int, every: float) -> None:
        self.meter = meter
        self.capacity_w = capacity_w
        self.every = every
        self.sent: Counter[str] = Counter()

    def forge(self, kind: str) -> bytes:
        state = self.meter.state
        now_ms = time.time_ns() // 1_000_000
        credentials = self.meter.credentials
        if kind == "bad_signature":
            payload = readings.signed_payload(
                credentials.signing_key(),
                credentials.provider_id,
                credentials.meter_address,
                state.counter_wh + 1,
                now_ms,
            )
            signature = str(payload["signature"])
            payload["signature"] = ("0" if signature[0] != "0" else "1") + signature[1:]
        else:  # a counter jump: ten hours at full power in an instant
            payload = readings.signed_payload(
                credentials.signing_key(),
                credentials.provider_id,
                credentials.meter_address,
                state.counter_wh + self.capacity_w * 10,
                now_ms,
            )
        return encode(payload)

    def run(self, stop: threading.Event) -> None:
        kinds = ["bad_signature", "implausible_jump"]
        turn = 0
        while not stop.wait(self.every):
            kind = kinds[turn % len(kinds)]
            if self.meter.publish_once(self.forge(kind)):
                self.sent[kind] += 1
                turn += 1


def _micro(degrees: str) -> int:
    return int(Decimal(degrees).scaleb(6))
