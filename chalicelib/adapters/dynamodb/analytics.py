"""The market's aggregates: one item each in the analytics table.

Item mapping (``chalicelib.domain.analytics`` says what the aggregates are):

    pk, sk      the aggregate's key (STATE/MARKET, TOTALS/ALL, TRADES#<scope>/<bucket>,
                METERS/<bucket>, REPORTING/<slot>, BUYERS/<bucket>, SELLER#<id>/SELLER)
    c           counters, a map of numbers
    op, cl      the bucket's first and last trade: "<at_ms>|<purchase id>|<price>"
    hi, lo      its highest and lowest price
    w           per stream shard, the newest record counted: "<sequence>|<set at ms>"
    version     moves with every write (each write is conditional on it)

Sellers also carry the leaderboard's index keys: ``rank_day`` (the newest
sale's day) with ``rank_24h`` and ``rank_7d`` (indexes SellersByDay24h,
SellersByDay7d), and ``rank_all_pk`` = "all" with ``rank_all``
(SellersAllTime). Every read of a bucket range is one Query of a partition,
so what a figure costs depends on the range asked for, never on history.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

from chalicelib.adapters.dynamodb.codec import Item, as_int, from_item, to_item
from chalicelib.adapters.dynamodb.layout import (
    SELLERS_ALL_TIME,
    SELLERS_BY_DAY_7D,
    SELLERS_BY_DAY_24H,
    Tables,
)
from chalicelib.adapters.dynamodb.paging import get_all, query_all
from chalicelib.domain.analytics import (
    Aggregate,
    AggregateKey,
    Mark,
    PricePoint,
    candidate_days,
    seller_index,
)
from chalicelib.domain.errors import ConcurrentUpdate

if TYPE_CHECKING:
    from chalicelib.adapters.dynamodb.unit_of_work import Staged

# Candidates read per leaderboard query page: the places asked for and a few
# more, since a stale figure only bounds what a seller sold.
LEADER_PAGE: Final = 25


def _point(point: PricePoint | None) -> str | None:
    return None if point is None else f"{point.at_ms}|{point.purchase_id}|{point.price}"


def _point_from(text: str | None) -> PricePoint | None:
    if text is None:
        return None
    at, purchase_id, price = text.split("|")
    return PricePoint(int(at), purchase_id, int(price))


def _rank(wh: int) -> str:
    return f"{wh:016d}"


def aggregate_to_item(aggregate: Aggregate, now_ms: int) -> Item:
    values: dict[str, Any] = {
        "pk": aggregate.key.pk,
        "sk": aggregate.key.sk,
        "c": dict(aggregate.counters),
        "op": _point(aggregate.open),
        "cl": _point(aggregate.close),
        "hi": aggregate.high,
        "lo": aggregate.low,
        "w": {s: f"{m.sequence}|{m.set_at_ms}" for s, m in aggregate.marks.items()},
        "version": aggregate.version + 1,
    }
    if aggregate.key.pk.startswith("SELLER#"):
        index = seller_index(aggregate, now_ms)
        if index is not None:
            values |= {"rank_all_pk": "all", "rank_all": _rank(index.sold_all)}
        if index is not None and index.latest_day_ms is not None:
            values |= {
                "rank_day": str(index.latest_day_ms),
                "rank_24h": _rank(index.sold_24h),
                "rank_7d": _rank(index.sold_7d),
            }
    return to_item(values)


def aggregate_from_item(item: Item) -> Aggregate:
    v = from_item(item)
    marks = {}
    for shard, text in v.get("w", {}).items():
        sequence, set_at = text.split("|")
        marks[shard] = Mark(sequence, int(set_at))
    return Aggregate(
        key=AggregateKey(v["pk"], v["sk"]),
        counters={name: as_int(n) for name, n in v.get("c", {}).items()},
        open=_point_from(v.get("op")),
        close=_point_from(v.get("cl")),
        high=as_int(v["hi"]) if "hi" in v else None,
        low=as_int(v["lo"]) if "lo" in v else None,
        marks=marks,
        version=as_int(v.get("version", Decimal(0))),
    )


class DynamoAnalytics:
    def __init__(self, client: Any, tables: Tables, staged: Staged) -> None:
        self._client, self._tables, self._staged = client, tables, staged

    def get_many(self, keys: Sequence[AggregateKey]) -> dict[AggregateKey, Aggregate]:
        """The stored aggregates among ``keys``, read strongly consistent (the fold's read)."""
        items = get_all(
            self._client,
            self._tables.analytics,
            [to_item({"pk": k.pk, "sk": k.sk}) for k in keys],
            consistent=True,
        )
        found = (aggregate_from_item(i) for i in items)
        return {a.key: a for a in found}

    def get(self, key: AggregateKey) -> Aggregate | None:
        found = self._client.get_item(
            TableName=self._tables.analytics,
            Key=to_item({"pk": key.pk, "sk": key.sk}),
            ReturnConsumedCapacity="TOTAL",
        )
        return aggregate_from_item(found["Item"]) if "Item" in found else None

    def save(self, aggregate: Aggregate, now_ms: int) -> None:
        """Stage: store ``aggregate``, if its version is still the one it was read at."""
        self._staged.put(
            self._tables.analytics,
            aggregate_to_item(aggregate, now_ms),
            "attribute_not_exists(pk)" if aggregate.version == 0 else "version = :version",
            lambda: ConcurrentUpdate("the aggregate moved on; retry", key=aggregate.key.pk),
            **(
                {"ExpressionAttributeValues": to_item({":version": aggregate.version})}
                if aggregate.version
                else {}
            ),
        )

    def members(self, pk: str, first_sk: str, last_sk: str) -> list[Aggregate]:
        """A family's members from ``first_sk`` to ``last_sk`` (inclusive), in order."""
        items = query_all(
            self._client,
            TableName=self._tables.analytics,
            KeyConditionExpression="pk = :pk AND sk BETWEEN :lo AND :hi",
            ExpressionAttributeValues=to_item({":pk": pk, ":lo": first_sk, ":hi": last_sk}),
        )
        return [aggregate_from_item(i) for i in items]

    def leaders(self, window: str, now_ms: int) -> list[Iterator[tuple[int, Aggregate]]]:
        """Candidate sellers of a window, each stream in descending order of its bound."""
        if window == "all":
            return [self._ranked(SELLERS_ALL_TIME, "rank_all_pk", "all", "rank_all")]
        index, rank = (
            (SELLERS_BY_DAY_24H, "rank_24h") if window == "24h" else (SELLERS_BY_DAY_7D, "rank_7d")
        )
        return [
            self._ranked(index, "rank_day", str(day), rank)
            for day in candidate_days(window, now_ms)
        ]

    def _ranked(
        self, index: str, partition: str, value: str, rank: str
    ) -> Iterator[tuple[int, Aggregate]]:
        items = query_all(
            self._client,
            TableName=self._tables.analytics,
            IndexName=index,
            KeyConditionExpression="#p = :p",
            ExpressionAttributeNames={"#p": partition},
            ExpressionAttributeValues=to_item({":p": value}),
            ScanIndexForward=False,
            Limit=LEADER_PAGE,
        )
        for item in items:
            yield int(item[rank]["S"]), aggregate_from_item(item)
