"""Providers in memory."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from chalicelib.adapters.dynamodb.layout import (
    decode_price_cursor,
    price_key,
)
from chalicelib.adapters.memory.state import MemoryState, Staged, page_of
from chalicelib.domain.errors import (
    AlreadyExists,
    ConcurrentUpdate,
    DomainError,
    NotFound,
)
from chalicelib.domain.providers import Provider, ProviderQuery, ProviderStatus
from chalicelib.domain.readings import MeterState
from chalicelib.services.ports import Page


class MemoryProviders:
    def __init__(self, staged: Staged, state: MemoryState) -> None:
        self._staged, self._state = staged, state

    def get(self, provider_id: str) -> Provider | None:
        return self._state.providers.get(provider_id)

    def owned_by(self, owner: str) -> Sequence[Provider]:
        return sorted(
            (p for p in self._state.providers.values() if p.owner == owner),
            key=lambda p: p.provider_id,
        )

    def query(self, query: ProviderQuery, limit: int, cursor: str | None) -> Page[Provider]:
        keyed = ((price_key(p), p) for p in self._state.providers.values() if query.admits(p))
        return page_of(keyed, decode_price_cursor(cursor) if cursor else None, limit)

    def add(self, provider: Provider) -> None:
        def check(s: MemoryState) -> DomainError | None:
            if provider.provider_id in s.providers:
                return AlreadyExists(
                    "provider already registered", provider_id=provider.provider_id
                )
            if provider.meter_address in s.meters:
                return AlreadyExists(
                    "meter address already registered", meter_address=provider.meter_address
                )
            return None

        def apply(s: MemoryState) -> None:
            s.providers[provider.provider_id] = provider
            s.meters[provider.meter_address] = MeterState(
                provider.meter_address, provider.provider_id, provider.meter_public_key
            )

        self._staged.stage(check, apply)

    def save(self, provider: Provider, expected_version: int) -> None:
        # Ingestion's counters are not the profile's to write.
        self._update(
            provider.provider_id,
            lambda stored: stored.version == expected_version,
            lambda stored: replace(
                provider,
                available_wh=stored.available_wh,
                reading_slots=stored.reading_slots,
                open_obligations=stored.open_obligations,
                settled_purchases=stored.settled_purchases,
                earned_micro_block=stored.earned_micro_block,
                sold_wh=stored.sold_wh,
            ),
        )

    def reserve_energy(self, provider: Provider, wh: int) -> None:
        self._update(
            provider.provider_id,
            lambda stored: (
                stored.available_wh >= wh
                and stored.status == ProviderStatus.ACTIVE
                and stored.price_micro_block_per_kwh == provider.price_micro_block_per_kwh
            ),
            lambda stored: replace(
                stored,
                available_wh=stored.available_wh - wh,
                open_obligations=stored.open_obligations + 1,
                version=stored.version + 1,
            ),
        )

    def record_generation(self, provider_id: str, wh: int, reading_slots: frozenset[int]) -> None:
        def apply(s: MemoryState) -> None:
            stored = s.providers[provider_id]
            s.providers[provider_id] = replace(
                stored, available_wh=stored.available_wh + wh, reading_slots=reading_slots
            )

        self._staged.stage(
            lambda s: (
                None
                if provider_id in s.providers
                else NotFound("no such provider", provider_id=provider_id)
            ),
            apply,
        )

    def settle_obligation(self, provider_id: str, earned_micro_block: int, wh: int) -> None:
        self._update(
            provider_id,
            lambda stored: stored.open_obligations >= 1,
            lambda stored: replace(
                stored,
                open_obligations=stored.open_obligations - 1,
                settled_purchases=stored.settled_purchases + 1,
                earned_micro_block=stored.earned_micro_block + earned_micro_block,
                sold_wh=stored.sold_wh + wh,
            ),
        )

    def expire_energy(self, provider_id: str, wh: int) -> None:
        self._update(
            provider_id,
            lambda stored: stored.available_wh >= wh,
            lambda stored: replace(stored, available_wh=stored.available_wh - wh),
        )

    def _update(
        self,
        provider_id: str,
        condition: Callable[[Provider], bool],
        change: Callable[[Provider], Provider],
    ) -> None:
        """Stage ``change`` of the stored provider, refused at commit as the
        DynamoDB adapter's conditional update is unless ``condition`` holds."""

        def check(s: MemoryState) -> DomainError | None:
            stored = s.providers.get(provider_id)
            if stored is None or not condition(stored):
                return ConcurrentUpdate("the provider changed; retry", provider_id=provider_id)
            return None

        def apply(s: MemoryState) -> None:
            s.providers[provider_id] = change(s.providers[provider_id])

        self._staged.stage(check, apply)
