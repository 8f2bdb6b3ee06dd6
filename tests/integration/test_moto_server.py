"""The local moto server's transactions: all or nothing, items and stream records alike;
and its changes to moto stay inside it."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.dynamodb.models import dynamodb_backends

from infra.emulation import create_tables

PROJECT_DIR = Path(__file__).resolve().parents[2]


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


def _cancel_a_transaction(dynamodb: Any, table: str) -> None:
    with pytest.raises(ClientError) as cancelled:
        dynamodb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": table, "Item": _item("ACCOUNT#new", 5)}},
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


def _ledger_table_object(table: str) -> object:
    return dynamodb_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].tables[table]


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


def test_the_server_rolls_back_the_items_not_a_copy_of_the_table(
    clients: tuple[Any, Any, str],
) -> None:
    dynamodb, _, table = clients
    before = _ledger_table_object(table)

    _cancel_a_transaction(dynamodb, table)

    assert _ledger_table_object(table) is before


def test_a_plain_mock_aws_test_sees_stock_moto_while_the_server_runs(
    moto_server: str, aws_credentials: None
) -> None:
    # Given infra.moto_server imported and its server (the fixture's) running in this process
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        table = create_tables(dynamodb, f"plain-{uuid.uuid4().hex[:8]}")["LEDGER_TABLE"]
        before = _ledger_table_object(table)

        # When a transaction outside the server is cancelled
        _cancel_a_transaction(dynamodb, table)

        # Then moto rolled back as it does unpatched: its whole-table copy replaced the table
        assert _ledger_table_object(table) is not before


def test_moto_is_stock_after_import_and_again_after_the_server_stops() -> None:
    # A fresh process: this one's session-wide server may hold the patch.
    script = """
import moto.dynamodb.models as models

def current():
    return (models.DynamoDBBackend.transact_write_items, models.copy)

stock = current()
from infra.moto_server import LocalMotoServer
assert current() == stock, "importing infra.moto_server patched moto"
server = LocalMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
assert current() != stock, "a running server did not patch moto"
server.stop()
assert current() == stock, "a stopped server left moto patched"
"""
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
