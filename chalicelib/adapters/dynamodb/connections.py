"""Live WebSocket connections and their subscriptions, in the connections table.

    CONN#<id> / CONN          the connection: when it opened, the account a token
                              named, until when that token lets it subscribe
    CONN#<id> / SUB#<topic>   one subscription; ``topic_lane`` = "<topic>#<lane>"
                              and ``connection_id`` key the SubscribersByTopic index

Every item expires when API Gateway would have closed the connection
(``expires_at``, TTL): a client that vanished without $disconnect leaves
nothing behind for long, and a push to it answers GoneException first, which
deletes it at once. A fan-out reads, keys only, each index partition its
topics fall in: a public topic's 8 (spread by connection), and the one a
scoped topic (a provider's, an account's) shares with others (spread by
topic, 64 per kind), once however many of its topics a batch names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from chalicelib.adapters.dynamodb.codec import Item, as_int, from_item, to_item
from chalicelib.adapters.dynamodb.layout import SUBSCRIBERS_BY_TOPIC, Tables
from chalicelib.adapters.dynamodb.paging import query_all
from chalicelib.domain.errors import AlreadyExists, NotFound
from chalicelib.domain.events import Connection, lane_of, lanes_of

if TYPE_CHECKING:
    from chalicelib.adapters.dynamodb.unit_of_work import Staged

CONNECTION_SK = "CONN"
SUBSCRIPTION_PREFIX = "SUB#"
BATCH_WRITE_ITEMS = 25  # DynamoDB's limit per BatchWriteItem


def _pk(connection_id: str) -> str:
    return f"CONN#{connection_id}"


def connection_from_item(item: Item) -> Connection:
    v = from_item(item)
    return Connection(
        connection_id=v["connection_id"],
        connected_at_ms=as_int(v["connected_at_ms"]),
        account=v.get("account"),
        authorised_until_ms=as_int(v.get("authorised_until_ms", 0)),
    )


class DynamoConnections:
    def __init__(self, client: Any, tables: Tables, staged: Staged) -> None:
        self._client, self._tables, self._staged = client, tables, staged

    def open(self, connection: Connection) -> None:
        self._staged.put(
            self._tables.connections,
            to_item(
                {
                    "pk": _pk(connection.connection_id),
                    "sk": CONNECTION_SK,
                    "connection_id": connection.connection_id,
                    "connected_at_ms": connection.connected_at_ms,
                    "account": connection.account,
                    "authorised_until_ms": connection.authorised_until_ms,
                    "expires_at": connection.expires_at_ms // 1000,
                }
            ),
            "attribute_not_exists(pk)",
            lambda: AlreadyExists("this connection is open", connection=connection.connection_id),
        )

    def get(self, connection_id: str) -> Connection | None:
        found = self._client.get_item(
            TableName=self._tables.connections,
            Key=to_item({"pk": _pk(connection_id), "sk": CONNECTION_SK}),
            ConsistentRead=True,
            ReturnConsumedCapacity="TOTAL",
        )
        return connection_from_item(found["Item"]) if "Item" in found else None

    def topics(self, connection_id: str) -> list[str]:
        items = query_all(
            self._client,
            TableName=self._tables.connections,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :sub)",
            ExpressionAttributeValues=to_item(
                {":pk": _pk(connection_id), ":sub": SUBSCRIPTION_PREFIX}
            ),
            ConsistentRead=True,
        )
        return [i["sk"]["S"].removeprefix(SUBSCRIPTION_PREFIX) for i in items]

    def subscribe(self, connection: Connection, topic: str) -> None:
        """Stage: subscribe the connection to ``topic`` (again is the same)."""
        self._staged.update(
            self._tables.connections,
            to_item({"pk": _pk(connection.connection_id), "sk": f"{SUBSCRIPTION_PREFIX}{topic}"}),
            "SET topic_lane = :lane, connection_id = :id, expires_at = :expires",
            None,
            lambda: NotFound("no such connection", connection=connection.connection_id),
            ExpressionAttributeValues=to_item(
                {
                    ":lane": lane_of(topic, connection.connection_id),
                    ":id": connection.connection_id,
                    ":expires": connection.expires_at_ms // 1000,
                }
            ),
        )

    def unsubscribe(self, connection_id: str, topic: str) -> None:
        self._staged.delete(
            self._tables.connections,
            to_item({"pk": _pk(connection_id), "sk": f"{SUBSCRIPTION_PREFIX}{topic}"}),
            None,
            lambda: NotFound("no such subscription", topic=topic),
        )

    def close(self, connection_id: str) -> int:
        """Delete the connection and its subscriptions (not staged); how many items went."""
        items = list(
            query_all(
                self._client,
                TableName=self._tables.connections,
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues=to_item({":pk": _pk(connection_id)}),
                ProjectionExpression="pk, sk",
            )
        )
        for start in range(0, len(items), BATCH_WRITE_ITEMS):
            request = {
                self._tables.connections: [
                    {"DeleteRequest": {"Key": {"pk": i["pk"], "sk": i["sk"]}}}
                    for i in items[start : start + BATCH_WRITE_ITEMS]
                ]
            }
            while request:
                response = self._client.batch_write_item(
                    RequestItems=request, ReturnConsumedCapacity="TOTAL"
                )
                request = response.get("UnprocessedItems") or {}
        return len(items)

    def subscribers(self, topics: Sequence[str]) -> dict[str, list[str]]:
        """The connections subscribed to each of ``topics``: one keys-only Query per
        index partition the topics fall in (the subscription's sort key names
        its topic, so a shared partition is filtered here)."""
        found: dict[str, list[str]] = {topic: [] for topic in topics}
        for lane, wanted in lanes_of(topics).items():
            items = query_all(
                self._client,
                TableName=self._tables.connections,
                IndexName=SUBSCRIBERS_BY_TOPIC,
                KeyConditionExpression="topic_lane = :lane",
                ExpressionAttributeValues=to_item({":lane": lane}),
            )
            for item in items:
                topic = item["sk"]["S"].removeprefix(SUBSCRIPTION_PREFIX)
                if topic in wanted:
                    found[topic].append(item["connection_id"]["S"])
        return found

    def subscribed_any(self, topics: Sequence[str]) -> bool:
        """Whether any connection listens to one of ``topics`` (a cheap check before work)."""
        for lane, wanted in lanes_of(topics).items():
            items = query_all(
                self._client,
                TableName=self._tables.connections,
                IndexName=SUBSCRIBERS_BY_TOPIC,
                KeyConditionExpression="topic_lane = :lane",
                ExpressionAttributeValues=to_item({":lane": lane}),
            )
            if any(i["sk"]["S"].removeprefix(SUBSCRIPTION_PREFIX) in wanted for i in items):
                return True
        return False
