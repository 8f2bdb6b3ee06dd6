"""Energy providers: the prosumers who sell what their meters measure."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Final

from chalicelib.domain.units import MICRO_BLOCK_PER_BLOCK

if TYPE_CHECKING:
    # credits.py imports this module; a freeze is only named here.
    from chalicelib.domain.credits import Freeze

MIN_STAKE_MICRO_BLOCK: Final = 1_000 * MICRO_BLOCK_PER_BLOCK

# A meter address is its MQTT client id, its IoT thing name and one level of
# its topic, so it may hold none of MQTT's separators or wildcards.
METER_ADDRESS: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{2,63}$")
# ISO 3166-1 alpha-2, optionally followed by a subdivision: US, US_CA, DE_BY.
JURISDICTION: Final = re.compile(r"^[A-Z]{2}(?:_[A-Z0-9]{1,3})?$")

UPTIME_SLOT_SECONDS: Final = 15 * 60
UPTIME_WINDOW_SLOTS: Final = 96  # one day of 15-minute slots


@dataclass(frozen=True)
class ReadingWindow:
    """A meter's recent 15-minute slots with an accepted reading (for uptime), as
    a bitmap: bit n set = a reading in slot ``last - n``, for the last
    UPTIME_WINDOW_SLOTS slots.

    Two small numbers instead of a set of up to 96: the provider's item stays
    under 1 KB, and every accepted reading moves the window with a shift.
    """

    last: int | None = None  # the newest slot with a reading; None before the first
    bits: int = 0

    @classmethod
    def of(cls, slots: Iterable[int]) -> ReadingWindow:
        slots = frozenset(slots)
        if not slots:
            return cls()
        last = max(slots)
        return cls(last, sum(1 << (last - s) for s in slots if last - s < UPTIME_WINDOW_SLOTS))

    def with_reading(self, timestamp_ms: int) -> ReadingWindow:
        """The window once a reading at ``timestamp_ms`` is accepted."""
        slot = timestamp_ms // 1000 // UPTIME_SLOT_SECONDS
        if self.last is None:
            return ReadingWindow(slot, 1)
        if slot < self.last:  # not for readings in order; kept if still in the window
            age = self.last - slot
            return (
                self
                if age >= UPTIME_WINDOW_SLOTS
                else ReadingWindow(self.last, self.bits | 1 << age)
            )
        return ReadingWindow(slot, (self.bits << (slot - self.last) | 1) & _WINDOW_MASK)

    def slots(self) -> frozenset[int]:
        if self.last is None:
            return frozenset()
        last = self.last
        return frozenset(last - n for n in range(self.bits.bit_length()) if self.bits >> n & 1)


_WINDOW_MASK: Final = (1 << UPTIME_WINDOW_SLOTS) - 1


class EnergyType(StrEnum):
    SOLAR = "solar"
    WIND = "wind"
    HYDRO = "hydro"
    BATTERY = "battery"


class ProviderStatus(StrEnum):
    ACTIVE = "active"  # credits are minted and offered
    PAUSED = "paused"  # the owner stopped selling; readings still count
    SUSPENDED = "suspended"  # stake below the minimum: nothing is minted or sold


def provider_id_for(owner: str, meter_address: str) -> str:
    """The stable id of the provider that ``owner`` runs behind ``meter_address``.

    Derived, not random, so that a retried registration finds the first one
    instead of creating a twin.
    """
    digest = hashlib.sha256(f"provider\n{owner}\n{meter_address}".encode()).hexdigest()
    return f"energy-0x{digest[:16]}"


@dataclass(frozen=True)
class Location:
    """Latitude and longitude in micro-degrees (about 11 cm): exact integers."""

    latitude_micro_deg: int
    longitude_micro_deg: int


@dataclass(frozen=True)
class Provider:
    provider_id: str
    owner: str
    display_name: str
    energy_type: EnergyType
    jurisdiction: str
    location: Location
    capacity_wh: int
    price_micro_block_per_kwh: int
    stake_micro_block: int
    meter_address: str
    meter_public_key: str
    paused: bool = False
    available_wh: int = 0
    # Open purchases and disputes that this provider's stake secures.
    open_obligations: int = 0
    settled_purchases: int = 0
    upheld_disputes: int = 0
    # What settled sales paid the owner (after the market fee), and their Wh.
    earned_micro_block: int = 0
    sold_wh: int = 0
    # 15-minute slot numbers (unix time // 900) with an accepted reading.
    reading_window: ReadingWindow = field(default_factory=ReadingWindow)
    # The credits its open disputes hold out of the market, and a counter that
    # every change to them moves: a purchase or settlement that read the
    # record before a flag fails its condition and reads the freeze.
    freezes: tuple[Freeze, ...] = ()
    disputes_version: int = 0
    created_at: int = 0
    updated_at: int = 0
    version: int = 1

    @property
    def on_sale_wh(self) -> int:
        """Available energy a buyer can take now: less what open disputes froze."""
        return max(0, self.available_wh - sum(f.wh for f in self.freezes))

    @property
    def status(self) -> ProviderStatus:
        if self.stake_micro_block < MIN_STAKE_MICRO_BLOCK:
            return ProviderStatus.SUSPENDED
        if self.paused:
            return ProviderStatus.PAUSED
        return ProviderStatus.ACTIVE

    @property
    def rating(self) -> float | None:
        """0.0 to 5.0: the share of settled purchases not overturned by a dispute.

        None until the provider has settled a purchase: no history, no score.
        """
        if self.settled_purchases == 0:
            return None
        clean = max(0, self.settled_purchases - self.upheld_disputes)
        return round(5 * clean / self.settled_purchases, 1)

    def uptime_percent(self, now: int) -> float | None:
        """Share of the last 96 fifteen-minute slots with an accepted reading.

        None until the meter has delivered its first accepted reading.
        """
        if self.reading_window.last is None:
            return None
        current = now // UPTIME_SLOT_SECONDS
        slots = self.reading_window.slots()
        recent = [s for s in slots if current - UPTIME_WINDOW_SLOTS < s <= current]
        return round(100 * len(recent) / UPTIME_WINDOW_SLOTS, 1)

    def restaked(self, change_micro_block: int, *, now: int) -> Provider:
        """The provider with its stake changed by ``change_micro_block`` (either sign)."""
        stake = self.stake_micro_block + change_micro_block
        if stake < 0:
            raise ValueError("a stake cannot go negative")
        return replace(self, stake_micro_block=stake, updated_at=now, version=self.version + 1)

    def updated(
        self,
        *,
        now: int,
        display_name: str | None = None,
        capacity_wh: int | None = None,
        price_micro_block_per_kwh: int | None = None,
        paused: bool | None = None,
        meter_public_key: str | None = None,
    ) -> Provider:
        return replace(
            self,
            display_name=self.display_name if display_name is None else display_name,
            capacity_wh=self.capacity_wh if capacity_wh is None else capacity_wh,
            price_micro_block_per_kwh=(
                self.price_micro_block_per_kwh
                if price_micro_block_per_kwh is None
                else price_micro_block_per_kwh
            ),
            paused=self.paused if paused is None else paused,
            meter_public_key=(
                self.meter_public_key if meter_public_key is None else meter_public_key
            ),
            updated_at=now,
            version=self.version + 1,
        )


def is_valid_meter_address(address: str) -> bool:
    return bool(METER_ADDRESS.match(address))


def is_valid_jurisdiction(code: str) -> bool:
    return bool(JURISDICTION.match(code))


@dataclass(frozen=True)
class ProviderQuery:
    """Filters of ``listProviders``; None means "any"."""

    energy_type: EnergyType | None = None
    jurisdiction: str | None = None
    max_price_micro_block_per_kwh: int | None = None
    min_capacity_wh: int | None = None
    include_inactive: bool = False

    def admits(self, provider: Provider) -> bool:
        return self.admits_listing(
            ListingFacts(
                energy_type=provider.energy_type,
                jurisdiction=provider.jurisdiction,
                price_micro_block_per_kwh=provider.price_micro_block_per_kwh,
                capacity_wh=provider.capacity_wh,
                status=provider.status,
            )
        )

    def admits_listing(self, facts: ListingFacts) -> bool:
        return (
            (self.energy_type is None or facts.energy_type == self.energy_type)
            and (self.jurisdiction is None or facts.jurisdiction == self.jurisdiction)
            and (
                self.max_price_micro_block_per_kwh is None
                or facts.price_micro_block_per_kwh <= self.max_price_micro_block_per_kwh
            )
            and (self.min_capacity_wh is None or facts.capacity_wh >= self.min_capacity_wh)
            and (self.include_inactive or facts.status == ProviderStatus.ACTIVE)
        )


@dataclass(frozen=True)
class ListingFacts:
    """What a provider listing filters on: all an index entry needs to carry."""

    energy_type: str
    jurisdiction: str
    price_micro_block_per_kwh: int
    capacity_wh: int
    status: str
