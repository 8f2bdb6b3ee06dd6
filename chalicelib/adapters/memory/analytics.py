"""The market's aggregates in memory, with the DynamoDB adapter's conditions and indexes."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace

from chalicelib.adapters.memory.state import MemoryState, Staged
from chalicelib.domain.analytics import (
    Aggregate,
    AggregateKey,
    Delta,
    Mark,
    SellerIndex,
    candidate_days,
    merge,
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

    def add_counters(
        self,
        key: AggregateKey,
        shard: str,
        counters: Mapping[str, int],
        first: str,
        last: str,
        seen: Mark | None,
        now_ms: int,
    ) -> Aggregate:
        with self._state.lock:
            found = self._state.aggregates.get(key)
            current = found[0] if found else Aggregate(key)
            mark = current.marks.get(shard)
            if (mark is not None and mark.sequence >= first) if seen is None else mark != seen:
                raise ConcurrentUpdate("the shard's mark moved; read it", key=key.pk)
            merged = merge(current, Delta(counters))
            stored = replace(
                merged,
                marks={**current.marks, shard: Mark(last, now_ms)},
                version=current.version + 1,
            )
            self._state.aggregates[key] = (stored, None)
            return stored

    def forget_marks(self, aggregate: Aggregate, shards: Sequence[str]) -> None:
        with self._state.lock:
            found = self._state.aggregates.get(aggregate.key)
            if found is None:
                return
            current = found[0]
            if any(current.marks.get(s) != aggregate.marks.get(s) for s in shards):
                return  # a mark moved on since: it is current again, and kept
            marks = {s: m for s, m in current.marks.items() if s not in shards}
            self._state.aggregates[aggregate.key] = (replace(current, marks=marks), found[1])

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
