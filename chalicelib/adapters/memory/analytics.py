"""The market's aggregates in memory, with the DynamoDB adapter's conditions and indexes."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from chalicelib.adapters.memory.state import MemoryState, Staged
from chalicelib.domain.analytics import (
    Aggregate,
    AggregateKey,
    SellerIndex,
    candidate_days,
    seller_index,
)
from chalicelib.domain.errors import ConcurrentUpdate


class MemoryAnalytics:
    def __init__(self, staged: Staged, state: MemoryState) -> None:
        self._staged, self._state = staged, state

    def get_many(self, keys: Sequence[AggregateKey]) -> dict[AggregateKey, Aggregate]:
        stored = self._state.aggregates
        return {k: stored[k][0] for k in keys if k in stored}

    def get(self, key: AggregateKey) -> Aggregate | None:
        found = self._state.aggregates.get(key)
        return found[0] if found else None

    def save(self, aggregate: Aggregate, now_ms: int) -> None:
        def check(s: MemoryState) -> ConcurrentUpdate | None:
            found = s.aggregates.get(aggregate.key)
            if (found[0].version if found else 0) != aggregate.version:
                return ConcurrentUpdate("the aggregate moved on; retry", key=aggregate.key.pk)
            return None

        def apply(s: MemoryState) -> None:
            stored = Aggregate(
                aggregate.key,
                aggregate.counters,
                aggregate.open,
                aggregate.close,
                aggregate.high,
                aggregate.low,
                aggregate.marks,
                aggregate.version + 1,
            )
            s.aggregates[aggregate.key] = (stored, seller_index(stored, now_ms))

        self._staged.stage(check, apply)

    def members(self, pk: str, first_sk: str, last_sk: str) -> list[Aggregate]:
        return sorted(
            (
                a
                for k, (a, _) in self._state.aggregates.items()
                if k.pk == pk and first_sk <= k.sk <= last_sk
            ),
            key=lambda a: a.key.sk,
        )

    def leaders(self, window: str, now_ms: int) -> list[Iterator[tuple[int, Aggregate]]]:
        indexed = [(a, i) for a, i in self._state.aggregates.values() if i is not None]
        if window == "all":
            return [_ranked(indexed, lambda i: i.sold_all, None)]
        bound: Callable[[SellerIndex], int] = (
            (lambda i: i.sold_24h) if window == "24h" else (lambda i: i.sold_7d)
        )
        return [_ranked(indexed, bound, day) for day in candidate_days(window, now_ms)]


def _ranked(
    indexed: list[tuple[Aggregate, SellerIndex]],
    bound: Callable[[SellerIndex], int],
    day: int | None,
) -> Iterator[tuple[int, Aggregate]]:
    chosen = [(bound(i), a) for a, i in indexed if day is None or i.latest_day_ms == day]
    # The index sorts its string keys descending, ties by table key descending too.
    chosen.sort(key=lambda pair: (pair[0], pair[1].key.pk), reverse=True)
    yield from chosen
