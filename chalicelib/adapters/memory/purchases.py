"""Purchases in memory."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from chalicelib.adapters.due_work import purchases_due
from chalicelib.adapters.dynamodb.layout import (
    HOUR_MS,
    buyer_key,
    decode_buyer_cursor,
)
from chalicelib.adapters.memory.state import MemoryState, Staged, page_of
from chalicelib.domain.errors import (
    AlreadyExists,
    ConcurrentUpdate,
    InvalidCursor,
)
from chalicelib.domain.trading import Purchase, PurchaseStatus
from chalicelib.services.ports import DueHandler, JobRun, Page

if TYPE_CHECKING:
    from chalicelib.adapters.due_work import Watermarks


class MemoryPurchases:
    def __init__(self, staged: Staged, state: MemoryState, watermarks: Watermarks) -> None:
        self._staged, self._state = staged, state
        self._watermarks = watermarks

    def get(self, purchase_id: str) -> Purchase | None:
        return self._state.purchases.get(purchase_id)

    def add(self, purchase: Purchase) -> None:
        self._staged.stage(
            lambda s: (
                AlreadyExists("purchase already recorded", purchase_id=purchase.purchase_id)
                if purchase.purchase_id in s.purchases
                else None
            ),
            lambda s: s.purchases.__setitem__(purchase.purchase_id, purchase),
        )

    def settle(self, settled: Purchase) -> None:
        self._staged.stage(
            lambda s: (
                None
                if s.purchases[settled.purchase_id].status == PurchaseStatus.OPEN
                else ConcurrentUpdate(
                    "the purchase was settled already", transaction_id=settled.purchase_id
                )
            ),
            lambda s: s.purchases.__setitem__(settled.purchase_id, settled),
        )

    def revise(self, before: Purchase, after: Purchase) -> None:
        def check(s: MemoryState) -> ConcurrentUpdate | None:
            stored = s.purchases.get(before.purchase_id)
            if stored is None or stored.status != PurchaseStatus.OPEN or stored.wh != before.wh:
                return ConcurrentUpdate(
                    "the purchase changed; retry", transaction_id=before.purchase_id
                )
            return None

        self._staged.stage(check, lambda s: s.purchases.__setitem__(after.purchase_id, after))

    def each_due(self, run: JobRun, now_ms: int, budget: int, settle: DueHandler[Purchase]) -> None:
        purchases_due(self._watermarks, self._due_in_hour, run, now_ms, budget, settle)

    def _due_in_hour(self, hour: int, now_ms: int, limit: int) -> Sequence[Purchase]:
        due = sorted(
            (
                p
                for p in self._state.purchases.values()
                if p.status == PurchaseStatus.OPEN
                and p.settles_at_ms // HOUR_MS == hour
                and p.settles_at_ms <= now_ms
            ),
            key=lambda p: (p.settles_at_ms, p.purchase_id),
        )
        return due[:limit]

    def by_buyer(
        self, buyer: str, *, open_only: bool, limit: int, cursor: str | None
    ) -> Page[Purchase]:
        prefix = "O#" if open_only else "S#"
        keyed = (
            (buyer_key(p), p)
            for p in self._state.purchases.values()
            if p.buyer == buyer and buyer_key(p).startswith(prefix)
        )
        after = decode_buyer_cursor(cursor) if cursor else None
        if after is not None and not after.startswith(prefix):
            raise InvalidCursor("cursor is not one this listing issued")
        return page_of(keyed, after, limit, newest_first=not open_only)
