"""Meters and their refused readings, in memory."""

from __future__ import annotations

import copy
from dataclasses import replace

from chalicelib.adapters.dynamodb.layout import (
    decode_rejection_cursor,
    rejection_sort_key,
)
from chalicelib.adapters.memory.state import MemoryState, Staged, page_of
from chalicelib.domain.credits import Credit
from chalicelib.domain.errors import (
    AlreadyExists,
    ConcurrentUpdate,
    DomainError,
    NotFound,
)
from chalicelib.domain.providers import ReadingWindow
from chalicelib.domain.readings import MeterOwner, MeterState, RejectionRecord
from chalicelib.services.ports import Page


class MemoryMeters:
    def __init__(self, staged: Staged, state: MemoryState) -> None:
        self._staged, self._state = staged, state

    def get(self, meter_address: str) -> MeterState | None:
        return self._state.meters.get(meter_address)

    def get_with_provider(
        self, meter_address: str, provider_id: str
    ) -> tuple[MeterState | None, MeterOwner | None]:
        meter = self._state.meters.get(meter_address)
        provider = self._state.providers.get(provider_id)
        if provider is None or meter is None or meter.provider_id != provider_id:
            return meter, None  # a reading naming another provider: refused, not minted
        return meter, MeterOwner.of(provider)

    def advance(self, before: MeterState, credit: Credit, *, reading_window: ReadingWindow) -> None:
        # One write, as on DynamoDB (where the last reading lives on the
        # provider's item): the meter's last reading, the provider's energy.
        def check(s: MemoryState) -> DomainError | None:
            stored = s.meters.get(before.meter_address)
            if (
                stored is None
                or stored.last_reading_hash != before.last_reading_hash
                or before.provider_id not in s.providers
            ):
                return ConcurrentUpdate(
                    "the meter moved on; retry", meter_address=before.meter_address
                )
            return None

        def apply(s: MemoryState) -> None:
            stored = s.meters[before.meter_address]
            s.meters[before.meter_address] = MeterState(
                stored.meter_address,
                stored.provider_id,
                stored.public_key,
                stored.active,
                credit.counter_wh,
                credit.interval_end_ms,
                credit.credit_id,
                stored.accepted_readings + 1,
                stored.rejections,
            )
            # A shallow copy with two fields set: dataclasses.replace rebuilds all
            # twenty-five, the largest cost of this twin's ingest.
            provider = copy.copy(s.providers[before.provider_id])
            object.__setattr__(provider, "available_wh", provider.available_wh + credit.wh)
            object.__setattr__(provider, "reading_window", reading_window)
            s.providers[before.provider_id] = provider

        self._staged.stage(check, apply)

    def rotate_key(self, meter_address: str, public_key: str) -> None:
        self._staged.stage(
            lambda s: (
                None
                if meter_address in s.meters
                else NotFound("no such meter", meter_address=meter_address)
            ),
            lambda s: s.meters.__setitem__(
                meter_address, replace(s.meters[meter_address], public_key=public_key)
            ),
        )

    def record_rejection(self, record: RejectionRecord, meter_known: bool) -> None:
        key = (record.meter_address, rejection_sort_key(record))

        def apply(s: MemoryState) -> None:
            s.rejections[key] = record
            meter = s.meters.get(record.meter_address)
            if meter_known and meter is not None:
                counts = dict(meter.rejections)
                counts[record.reason] = counts.get(record.reason, 0) + 1
                s.meters[record.meter_address] = replace(
                    meter, rejections=tuple(sorted(counts.items()))
                )

        self._staged.stage(
            lambda s: (
                AlreadyExists("this delivery was already recorded") if key in s.rejections else None
            ),
            apply,
        )

    def rejections(
        self, meter_address: str, limit: int, cursor: str | None
    ) -> Page[RejectionRecord]:
        keyed = ((k, r) for (a, k), r in self._state.rejections.items() if a == meter_address)
        return page_of(
            keyed, decode_rejection_cursor(cursor) if cursor else None, limit, newest_first=True
        )
