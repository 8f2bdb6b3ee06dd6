"""The local stand-in for Lambda's stream triggers, against moto's real streams."""

from __future__ import annotations

import uuid
from typing import Any

import boto3
import pytest

from infra.emulation import create_tables
from infra.stream_poller import StreamPoller, Subscription


@pytest.fixture
def ledger(moto_server: str, aws_credentials: None) -> tuple[Any, Any, str, str]:
    dynamodb = boto3.client("dynamodb", endpoint_url=moto_server, region_name="us-east-1")
    streams = boto3.client("dynamodbstreams", endpoint_url=moto_server, region_name="us-east-1")
    table = create_tables(dynamodb, f"streams-{uuid.uuid4().hex[:8]}")["LEDGER_TABLE"]
    arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    return dynamodb, streams, table, arn


def _put(dynamodb: Any, table: str, n: int) -> None:
    dynamodb.put_item(
        TableName=table,
        Item={"pk": {"S": f"ACCOUNT#a{n}"}, "sk": {"S": "BALANCE"}, "micro_block": {"N": "1"}},
    )


def test_batches_reach_the_handler_in_order_as_lambda_events_and_a_failure_is_retried(
    ledger: tuple[Any, Any, str, str],
) -> None:
    dynamodb, streams, table, arn = ledger
    seen: list[dict[str, Any]] = []
    failures = [1]  # the first invocation fails, as a Lambda invocation may

    def handler(event: dict[str, Any], context: Any) -> None:
        if failures[0]:
            failures[0] -= 1
            raise RuntimeError("the function failed")
        seen.extend(event["Records"])

    subscription = Subscription(
        "handler", handler, arn, batch_size=2, starting_position="TRIM_HORIZON"
    )
    poller = StreamPoller([subscription], streams, status_path=None)
    for n in range(3):
        _put(dynamodb, table, n)
    while poller.poll(subscription):
        pass
    assert [r["dynamodb"]["Keys"]["pk"]["S"] for r in seen] == [
        "ACCOUNT#a0",
        "ACCOUNT#a1",
        "ACCOUNT#a2",
    ]
    assert (subscription.records, subscription.batches, subscription.failures) == (3, 2, 1)
    first = seen[0]
    assert first["eventSourceARN"] == arn and first["eventName"] == "INSERT"
    assert isinstance(first["dynamodb"]["ApproximateCreationDateTime"], int)
    poller.measure_backlog()
    assert subscription.backlog == 0
    _put(dynamodb, table, 3)
    poller.measure_backlog()
    assert subscription.backlog == 1
