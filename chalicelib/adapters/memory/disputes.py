"""Disputes and the registry of validators in memory."""

from __future__ import annotations

from collections.abc import Iterable

from chalicelib.adapters.dynamodb.layout import decode_opened_cursor, opened_key
from chalicelib.adapters.memory.state import MemoryState, Staged, page_of
from chalicelib.domain.disputes import Dispute, DisputeStatus
from chalicelib.domain.errors import ConcurrentUpdate
from chalicelib.services.ports import Page


class MemoryDisputes:
    def __init__(self, staged: Staged, state: MemoryState) -> None:
        self._staged, self._state = staged, state

    def get(self, dispute_id: str) -> Dispute | None:
        return self._state.disputes.get(dispute_id)

    def open(self, dispute: Dispute) -> None:
        self._staged.stage(
            lambda s: (
                ConcurrentUpdate(
                    "another flag opened this dispute; retry", dispute_id=dispute.dispute_id
                )
                if dispute.dispute_id in s.disputes
                else None
            ),
            lambda s: s.disputes.__setitem__(dispute.dispute_id, dispute),
        )

    def join(self, joined: Dispute, expected_version: int) -> None:
        def check(s: MemoryState) -> ConcurrentUpdate | None:
            now = s.disputes.get(joined.dispute_id)
            if now is None or now.status != DisputeStatus.OPEN or now.version != expected_version:
                return ConcurrentUpdate(
                    "the dispute changed while it was flagged; retry", dispute_id=joined.dispute_id
                )
            return None

        self._staged.stage(check, lambda s: s.disputes.__setitem__(joined.dispute_id, joined))

    def by_provider(self, provider_id: str, limit: int, cursor: str | None) -> Page[Dispute]:
        return self._newest_first(
            (d for d in self._state.disputes.values() if d.provider_id == provider_id),
            limit,
            cursor,
        )

    def by_status(self, status: DisputeStatus, limit: int, cursor: str | None) -> Page[Dispute]:
        return self._newest_first(
            (d for d in self._state.disputes.values() if d.status == status), limit, cursor
        )

    def _newest_first(
        self, disputes: Iterable[Dispute], limit: int, cursor: str | None
    ) -> Page[Dispute]:
        after = decode_opened_cursor(cursor) if cursor else None
        keyed = ((opened_key(d.opened_at_ms, d.dispute_id), d) for d in disputes)
        return page_of(keyed, after, limit, newest_first=True)


class MemoryValidators:
    def __init__(self, staged: Staged, state: MemoryState) -> None:
        self._staged, self._state = staged, state

    def names(self) -> list[str]:
        return sorted(self._state.validators)

    def add(self, name: str) -> None:
        self._staged.stage(lambda s: None, lambda s: s.validators.add(name))

    def remove(self, name: str) -> None:
        self._staged.stage(lambda s: None, lambda s: s.validators.discard(name))
