"""Reading many items: one page of an index partition, every item of a query
lazily, or the items under a list of keys."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from chalicelib.adapters.dynamodb.codec import Item, to_item
from chalicelib.adapters.dynamodb.layout import encode_cursor
from chalicelib.services.ports import Page

T = TypeVar("T")

BATCH_GET_KEYS: Final = 100  # the most keys one BatchGetItem takes


@dataclass(frozen=True)
class IndexRange:
    """One partition of a table index, read along its sort key."""

    table: str
    index: str
    partition_attribute: str
    partition: str
    sort_attribute: str


def newest_first(
    client: Any,
    where: IndexRange,
    before: str | None,
    limit: int,
    decode: Callable[[Item], T],
    sort_key_of: Callable[[T], str],
) -> Page[T]:
    """One page of an index partition, highest sort key first, below the cursor's."""
    key_condition = "#p = :p"
    names = {"#p": where.partition_attribute}
    values: dict[str, Any] = {":p": where.partition}
    if before is not None:
        key_condition += " AND #s < :before"
        names["#s"] = where.sort_attribute
        values[":before"] = before
    response = client.query(
        TableName=where.table,
        IndexName=where.index,
        KeyConditionExpression=key_condition,
        ExpressionAttributeNames=names,
        ExpressionAttributeValues=to_item(values),
        ScanIndexForward=False,
        Limit=limit + 1,
        ReturnConsumedCapacity="TOTAL",
    )
    found = [decode(item) for item in response["Items"]]
    page = found[:limit]
    more = len(found) > limit
    return Page(page, encode_cursor(sort_key_of(page[-1])) if more else None)


def query_all(client: Any, **request: Any) -> Iterator[Item]:
    """Every item of a Query, page by page, lazily: stop reading when the caller stops."""
    while True:
        response = client.query(ReturnConsumedCapacity="TOTAL", **request)
        yield from response["Items"]
        if "LastEvaluatedKey" not in response:
            return
        request["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def get_all(
    client: Any,
    table: str,
    keys: Sequence[Item],
    *,
    consistent: bool,
    projection: tuple[str, dict[str, str]] | None = None,
) -> list[Item]:
    """The items stored under ``keys`` (those that exist), in no particular order;
    with ``projection`` (an expression and its attribute names), only those attributes.

    ``keys`` must not repeat a key: BatchGetItem refuses a request that does.
    """
    found: list[Item] = []
    for start in range(0, len(keys), BATCH_GET_KEYS):
        read: dict[str, Any] = {"Keys": list(keys[start : start + BATCH_GET_KEYS])}
        if consistent:
            read["ConsistentRead"] = True
        if projection is not None:
            read["ProjectionExpression"], read["ExpressionAttributeNames"] = projection
        request: dict[str, Any] = {table: read}
        while request:
            response = client.batch_get_item(RequestItems=request, ReturnConsumedCapacity="TOTAL")
            found.extend(response["Responses"].get(table, []))
            request = response.get("UnprocessedKeys") or {}
    return found
