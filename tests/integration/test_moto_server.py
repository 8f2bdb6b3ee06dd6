"""The local moto server's transactions: all or nothing, items and stream records alike."""

from __future__ import annotations

import uuid
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from infra.emulation import create_tables


@pytest.fixture
def clients(moto_server: str, aws_credentials: None) -> tuple[Any, Any, str]:
    dynamodb = boto3.client("dynamodb", endpoint_url=moto_server, region_name="us-east-1")
    streams = boto3.client("dynamodbstreams", endpoint_url=moto_server, region_name="us-east-1")
    tables = create_tables(dynamodb, f"tx-{uuid.uuid4().hex[:8]}")
    return dynamodb, streams, tables["LEDGER_TABLE"]


def _item(pk: str, amount: int) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": "BALANCE"}, "micro_block": {"N": str(amount)}}


def _records(dynamodb: Any, streams: Any, table: str) -> list[dict[str, Any]]:
    arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]
    iterator = streams.get_shard_iterator(
        StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records: list[dict[str, Any]] = streams.get_records(ShardIterator=iterator)["Records"]
    return records


def test_a_cancelled_transaction_leaves_no_item_and_no_stream_record(
    clients: tuple[Any, Any, str],
) -> None:
    dynamodb, streams, table = clients
    dynamodb.put_item(TableName=table, Item=_item("ACCOUNT#a", 10))
    before = _records(dynamodb, streams, table)
    with pytest.raises(ClientError) as cancelled:
        dynamodb.transact_write_items(
            TransactItems=[
                # Applied by moto before the third write fails, then undone.
                {"Put": {"TableName": table, "Item": _item("ACCOUNT#new", 5)}},
                {
                    "Update": {
                        "TableName": table,
                        "Key": {"pk": {"S": "ACCOUNT#a"}, "sk": {"S": "BALANCE"}},
                        "UpdateExpression": "SET micro_block = micro_block - :m",
                        "ExpressionAttributeValues": {":m": {"N": "3"}},
                    }
                },
                {
                    "ConditionCheck": {
                        "TableName": table,
                        "Key": {"pk": {"S": "ACCOUNT#missing"}, "sk": {"S": "BALANCE"}},
                        "ConditionExpression": "attribute_exists(pk)",
                    }
                },
            ]
        )
    assert cancelled.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert "Item" not in dynamodb.get_item(
        TableName=table, Key={"pk": {"S": "ACCOUNT#new"}, "sk": {"S": "BALANCE"}}
    )
    kept = dynamodb.get_item(
        TableName=table, Key={"pk": {"S": "ACCOUNT#a"}, "sk": {"S": "BALANCE"}}
    )["Item"]
    assert kept["micro_block"] == {"N": "10"}
    assert _records(dynamodb, streams, table) == before


def test_a_committed_transaction_writes_every_item_and_its_records(
    clients: tuple[Any, Any, str],
) -> None:
    dynamodb, streams, table = clients
    dynamodb.transact_write_items(
        TransactItems=[
            {"Put": {"TableName": table, "Item": _item("ACCOUNT#x", 1)}},
            {"Put": {"TableName": table, "Item": _item("ACCOUNT#y", 2)}},
        ]
    )
    records = _records(dynamodb, streams, table)
    assert [r["eventName"] for r in records] == ["INSERT", "INSERT"]
