"""Scheduled jobs' watermarks: the first hour of due work a job still reads."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalicelib.adapters.dynamodb.codec import as_int, from_item, to_item
from chalicelib.adapters.dynamodb.layout import (
    HOUR_MS,
    Tables,
    watermark_key,
)
from chalicelib.domain.errors import (
    ConcurrentUpdate,
)

if TYPE_CHECKING:
    from chalicelib.adapters.dynamodb.unit_of_work import Staged


class DynamoJobs:
    def __init__(self, client: Any, tables: Tables, staged: Staged) -> None:
        self._client, self._tables, self._staged = client, tables, staged

    def caught_up_to(self, job: str) -> int | None:
        hour = self.watermark_hour(job)
        return hour * HOUR_MS if hour is not None else None

    def advance(self, job: str, to_ms: int) -> None:
        self.advance_hour(job, to_ms // HOUR_MS)

    def watermark_hour(self, job: str) -> int | None:
        """The first hour of due work the job still reads (the scans' unit)."""
        found = self._client.get_item(
            TableName=self._tables.registry,
            Key=watermark_key(job),
            ConsistentRead=True,
            ReturnConsumedCapacity="TOTAL",
        )
        return as_int(from_item(found["Item"])["hour"]) if "Item" in found else None

    def advance_hour(self, job: str, hour: int) -> None:
        self._staged.update(
            self._tables.registry,
            watermark_key(job),
            "SET #hour = :hour",
            "attribute_not_exists(pk) OR #hour < :hour",
            lambda: ConcurrentUpdate("another run moved the watermark", job=job),
            ExpressionAttributeNames={"#hour": "hour"},
            ExpressionAttributeValues=to_item({":hour": hour}),
        )
