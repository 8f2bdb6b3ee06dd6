"""Providers in memory."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from chalicelib.adapters.dynamodb.layout import (
    decode_price_cursor,
    price_key,
)
from chalicelib.adapters.memory.state import MemoryState, Staged, page_of
from chalicelib.domain.credits import Freeze
from chalicelib.domain.errors import (
    AlreadyExists,
    ConcurrentUpdate,
    DomainError,
)
from chalicelib.domain.providers import Provider, ProviderQuery, ProviderStatus
from chalicelib.domain.readings import MeterState
from chalicelib.services.ports import Page


class MemoryProviders:
    def __init__(self, staged: Staged, state: MemoryState) -> None:
        self._staged, self._state = staged, state

    def get(self, provider_id: str) -> Provider | None:
        return self._state.providers.get(provider_id)

    def owned_by(self, owner: str, *, consistent: bool = False) -> Sequence[Provider]:
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
                reading_window=stored.reading_window,
                open_obligations=stored.open_obligations,
                settled_purchases=stored.settled_purchases,
                earned_micro_block=stored.earned_micro_block,
                sold_wh=stored.sold_wh,
                upheld_disputes=stored.upheld_disputes,
                freezes=stored.freezes,
                disputes_version=stored.disputes_version,
            ),
        )

    def reserve_energy(self, provider: Provider, wh: int) -> None:
        self._update(
            provider.provider_id,
            lambda stored: (
                stored.available_wh >= wh
                and stored.status == ProviderStatus.ACTIVE
                and stored.price_micro_block_per_kwh == provider.price_micro_block_per_kwh
                and stored.disputes_version == provider.disputes_version
            ),
            lambda stored: replace(
                stored,
                available_wh=stored.available_wh - wh,
                open_obligations=stored.open_obligations + 1,
                version=stored.version + 1,
            ),
        )

    def settle_obligation(
        self, provider: Provider, earned_micro_block: int, wh: int, *, at_ms: int | None = None
    ) -> None:
        self._update(
            provider.provider_id,
            lambda stored: (
                stored.open_obligations >= 1
                and stored.disputes_version == provider.disputes_version
            ),
            lambda stored: replace(
                stored,
                open_obligations=stored.open_obligations - 1,
                settled_purchases=stored.settled_purchases + 1,
                earned_micro_block=stored.earned_micro_block + earned_micro_block,
                sold_wh=stored.sold_wh + wh,
            ),
        )

    def revoke_energy(
        self,
        provider_id: str,
        available_wh: int,
        closed_obligations: int,
        *,
        sold_wh: int = 0,
        at_ms: int | None = None,
    ) -> None:
        self._update(
            provider_id,
            lambda stored: (
                stored.available_wh >= available_wh
                and stored.open_obligations >= closed_obligations
                and stored.sold_wh >= sold_wh
            ),
            lambda stored: replace(
                stored,
                available_wh=stored.available_wh - available_wh,
                open_obligations=stored.open_obligations - closed_obligations,
                sold_wh=stored.sold_wh - sold_wh,
            ),
        )

    def take_off_market(self, provider_id: str, wh: int) -> None:
        self._update(
            provider_id,
            lambda stored: stored.available_wh >= wh,
            lambda stored: replace(stored, available_wh=stored.available_wh - wh),
        )

    def hold_for_dispute(self, provider: Provider, freeze: Freeze) -> None:
        self._set_freezes(provider, (*provider.freezes, freeze), obligations=1, upheld=0)

    def release_dispute(self, provider: Provider, dispute_id: str, *, upheld: bool) -> None:
        kept = tuple(f for f in provider.freezes if f.dispute_id != dispute_id)
        self._set_freezes(provider, kept, obligations=-1, upheld=int(upheld))

    def _set_freezes(
        self, provider: Provider, freezes: tuple[Freeze, ...], *, obligations: int, upheld: int
    ) -> None:
        self._update(
            provider.provider_id,
            lambda stored: stored.disputes_version == provider.disputes_version,
            lambda stored: replace(
                stored,
                freezes=freezes,
                disputes_version=stored.disputes_version + 1,
                version=stored.version + 1,
                open_obligations=stored.open_obligations + obligations,
                upheld_disputes=stored.upheld_disputes + upheld,
            ),
        )

    def slash(self, provider: Provider, micro_block: int) -> None:
        self._update(
            provider.provider_id,
            lambda stored: (
                stored.stake_micro_block == provider.stake_micro_block
                and stored.paused == provider.paused
            ),
            lambda stored: replace(
                stored,
                stake_micro_block=stored.stake_micro_block - micro_block,
                version=stored.version + 1,
            ),
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
