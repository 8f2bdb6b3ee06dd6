"""The market's aggregates: one item each in the analytics table.

Item mapping (``chalicelib.domain.analytics`` says what the aggregates are):

    pk, sk        the aggregate's key (STATE/MARKET, TOTALS/ALL, TRADES#<scope>/<bucket>,
                  METERS/<bucket>, REPORTING/<slot>, BUYERS/<bucket>, SELLER#<id>/SELLER)
    c:<name>      a counter (top-level numbers, so that ADD reaches each one)
    op, cl        the bucket's first and last trade: "<at_ms>|<purchase id>|<price>"
    hi, lo        its highest and lowest price
    w:<shard>     per stream shard, the newest record counted: "<sequence>|<set at ms>"
    version       moves with every write

Two ways to write. Counters alone (every aggregate but trade buckets and
sellers) take one UpdateItem that ADDs the batch's sums and sets the shard's
mark, on the condition that the mark is below the batch's first record: no
read, and writers of other shards never conflict (ADD commutes). A repeat
fails the condition; the fold then reads the mark and adds what is above it.
Trade buckets (open, high, low, close) and sellers (their windows and index
keys) are read and put whole, conditional on their version.

Sellers also carry the leaderboard's index keys: ``rank_day`` (the newest
sale's day) with ``rank_24h`` and ``rank_7d`` (indexes SellersByDay24h,
SellersByDay7d), and ``rank_all_pk`` = "all" with ``rank_all``
(SellersAllTime). Every read of a bucket range is one Query of a partition,
so what a figure costs depends on the range asked for, never on history.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import ClientError

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

COUNTER: Final = "c:"
MARK: Final = "w:"
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


def _mark(mark: Mark) -> str:
    return f"{mark.sequence}|{mark.set_at_ms}"


def aggregate_to_item(aggregate: Aggregate, now_ms: int) -> Item:
    values: dict[str, Any] = {
        "pk": aggregate.key.pk,
        "sk": aggregate.key.sk,
        "op": _point(aggregate.open),
        "cl": _point(aggregate.close),
        "hi": aggregate.high,
        "lo": aggregate.low,
        "version": aggregate.version + 1,
    }
    values |= {f"{COUNTER}{n}": v for n, v in aggregate.counters.items()}
    values |= {f"{MARK}{s}": _mark(m) for s, m in aggregate.marks.items()}
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
    for name, text in v.items():
        if name.startswith(MARK):
            sequence, set_at = text.split("|")
            marks[name.removeprefix(MARK)] = Mark(sequence, int(set_at))
    return Aggregate(
        key=AggregateKey(v["pk"], v["sk"]),
        counters={
            name.removeprefix(COUNTER): as_int(n)
            for name, n in v.items()
            if name.startswith(COUNTER) and as_int(n)
        },
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
        """Add a shard's sums and move its mark to ``last``, in one write of its own.

        Only if the shard's mark is below ``first`` (``seen`` None) or is still
        ``seen``; ConcurrentUpdate otherwise. Returns the aggregate as written.
        """
        names = {"#w": f"{MARK}{shard}"}
        values: dict[str, Any] = {":mark": _mark(Mark(last, now_ms)), ":one": 1}
        adds = ["version :one"]
        for n, (name, value) in enumerate(sorted(counters.items())):
            names[f"#c{n}"] = f"{COUNTER}{name}"
            values[f":c{n}"] = value
            adds.append(f"#c{n} :c{n}")
        if seen is None:
            condition = "attribute_not_exists(#w) OR #w < :first"
            values[":first"] = first
        else:
            condition = "#w = :seen"
            values[":seen"] = _mark(seen)
        try:
            response = self._client.update_item(
                TableName=self._tables.analytics,
                Key=to_item({"pk": key.pk, "sk": key.sk}),
                UpdateExpression=f"ADD {', '.join(adds)} SET #w = :mark",
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=to_item(values),
                ReturnValues="ALL_NEW",
                ReturnConsumedCapacity="TOTAL",
            )
        except ClientError as exc:
            code = exc.response["Error"]["Code"]
            if code == "ConditionalCheckFailedException":
                raise ConcurrentUpdate("the shard's mark moved; read it", key=key.pk) from exc
            raise
        return aggregate_from_item(response["Attributes"])

    def forget_marks(self, aggregate: Aggregate, shards: Sequence[str]) -> None:
        """Remove marks no redelivery can reach any more (if still as read)."""
        names = {f"#w{n}": f"{MARK}{s}" for n, s in enumerate(shards)}
        values = {f":w{n}": _mark(aggregate.marks[s]) for n, s in enumerate(shards)}
        try:
            self._client.update_item(
                TableName=self._tables.analytics,
                Key=to_item({"pk": aggregate.key.pk, "sk": aggregate.key.sk}),
                UpdateExpression=f"REMOVE {', '.join(names)}",
                ConditionExpression=" AND ".join(f"{n} = :{n[1:]}" for n in names),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=to_item(values),
                ReturnConsumedCapacity="TOTAL",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            # A mark moved on since: it is current again, and kept.

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
