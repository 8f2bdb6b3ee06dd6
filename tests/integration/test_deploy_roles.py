"""The per-function roles of infra/template.yaml allow what each function really does.

A market runs on moto through the same code paths as the functions: the API
(JSON-RPC), ingestion, the three jobs, the stream consumers (fed the tables'
real stream records) and the WebSocket routes. Every DynamoDB call is recorded
with the function it ran for, and each must be allowed by that function's
role: an action on a table or index its policy does not grant would be
AccessDenied in AWS. The reverse (a role granting no more than it needs) is the
table of tests/integration/test_infra.py, derived from the code paths.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

import app
from chalicelib.adapters.aws import dynamodb_client
from chalicelib.adapters.dynamodb.layout import credit_key
from chalicelib.config import get_settings
from chalicelib.services import live
from chalicelib.services.expiry import run_expiry
from chalicelib.services.ingest import Status, record_payload
from chalicelib.services.resolution import run_disputes
from chalicelib.services.settlement import run_settlement
from chalicelib.streams.live_events import push_market_stats
from chalicelib.wiring import dispatcher, jobs_dependencies, live_dependencies
from infra.emulation import load_template, table_logical_ids
from infra.stream_poller import lambda_event
from tests.support import (
    buy,
    dynamodb_market,
    metered_provider,
    tables_from_environment,
    validators,
)

# The transactional and batch operations need the item-level action on every table named.
_TRANSACT_ACTIONS = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
    "Get": "dynamodb:GetItem",
}


def _needs(operation: str, params: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(IAM action, table name, on an index) that one DynamoDB call needs."""
    if operation in {"TransactWriteItems", "TransactGetItems"}:
        return [
            (_TRANSACT_ACTIONS[kind], body["TableName"], False)
            for item in params["TransactItems"]
            for kind, body in item.items()
        ]
    if operation in {"BatchGetItem", "BatchWriteItem"}:
        return [(f"dynamodb:{operation}", table, False) for table in params["RequestItems"]]
    return [(f"dynamodb:{operation}", params["TableName"], "IndexName" in params)]


class Recorder:
    """Records every DynamoDB call of the clients it watches, tagged with a function."""

    def __init__(self, clients: list[Any]) -> None:
        self.function: str | None = None
        self.calls: dict[str, list[tuple[str, str, bool]]] = {}
        for client in clients:
            client.meta.events.register("provide-client-params.dynamodb.*", self._record)

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if self.function is not None:
            self.calls.setdefault(self.function, []).extend(_needs(model.name, params))

    @contextlib.contextmanager
    def running(self, function: str) -> Iterator[None]:
        self.function = function
        try:
            yield
        finally:
            self.function = None


def _role_of(function: str) -> str:
    # Chalice names the API function APIHandler and its role ApiHandlerRole.
    return "ApiHandlerRole" if function == "APIHandler" else f"{function}Role"


def _allows(function: str, action: str, table_id: str, on_index: bool) -> bool:
    role = load_template()["Resources"][_role_of(function)]["Properties"]
    wanted = (
        {"Fn::Sub": f"${{{table_id}.Arn}}/index/*"}
        if on_index
        else {"Fn::GetAtt": [table_id, "Arn"]}
    )
    for policy in role["Policies"]:
        for statement in policy["PolicyDocument"]["Statement"]:
            actions = statement["Action"]
            resources = statement["Resource"]
            if isinstance(actions, str):
                actions = [actions]
            if not isinstance(resources, list):
                resources = [resources]
            if action in actions and wanted in resources:
                return True
    return False


@pytest.fixture
def recorder(dynamodb: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorder]:
    monkeypatch.setenv("RECEIPT_SIGNING_KEY", bytes(range(160, 192)).hex())
    # moto's @connections API takes the pushes (inside mock_aws, like the tables).
    monkeypatch.setenv(
        "WEBSOCKET_MANAGEMENT_ENDPOINT", "https://roles.execute-api.us-east-1.amazonaws.com/api"
    )
    for cache in (get_settings, dispatcher, jobs_dependencies, live_dependencies, dynamodb_client):
        cache.cache_clear()
    yield Recorder([dynamodb, dynamodb_client()])
    for cache in (get_settings, dispatcher, jobs_dependencies, live_dependencies, dynamodb_client):
        cache.cache_clear()


class Pushes:
    """Collects what the WebSocket routes answer (the @connections API's stand-in)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    def post(self, connection_id: str, data: bytes) -> bool:
        self.sent.append((connection_id, data))
        return True


def _stream_event(table_name: str) -> dict[str, Any]:
    """Everything the table's stream holds, as Lambda hands it to a consumer."""
    streams = boto3.client("dynamodbstreams", region_name="us-east-1")
    arn = boto3.client("dynamodb", region_name="us-east-1").describe_table(TableName=table_name)[
        "Table"
    ]["LatestStreamArn"]
    records: list[dict[str, Any]] = []
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        records.extend(streams.get_records(ShardIterator=iterator, Limit=1000)["Records"])
    assert records, table_name
    return lambda_event(records, arn, "shardId-roles")


def test_every_dynamodb_call_of_every_function_is_allowed_by_its_role(
    dynamodb: Any, recorder: Recorder
) -> None:
    market = dynamodb_market(dynamodb, tables_from_environment(dict(os.environ)))
    day = 86_400

    with recorder.running("APIHandler"):
        meter = metered_provider(market, "seller.theblock", capacity_kwh=10_000)
        bob = market.funded_account("bob.theblock", block=100)
        validators(market, "val1.theblock", "val2.theblock", "val3.theblock", "val4.theblock")
    with recorder.running("IngestReading"):
        start_ms = market.clock.now * 1000 - 10 * 60_000
        for n, counter in enumerate((1_000, 3_500, 6_000, 8_500, 11_000, 13_500)):
            outcome = record_payload(
                market.deps,
                meter.payload(counter, start_ms + n * 60_000),
                topic_meter_address=meter.meter_address,
                received_at_ms=market.clock.now * 1000,
            )
            assert outcome.status == Status.ACCEPTED, outcome
            last_credit_id = str(outcome.reading_hash)
        refused = record_payload(
            market.deps,
            meter.payload(500, start_ms + 9 * 60_000),
            topic_meter_address=meter.meter_address,
            received_at_ms=market.clock.now * 1000,
        )
        assert refused.status == Status.REJECTED
    with recorder.running("APIHandler"):
        early = buy(market, bob, meter.provider_id, "2.5")
        market.client.call("energy.settle", {"transaction_id": early["transaction_id"]}, bob)
        later = buy(market, bob, meter.provider_id, "2.5")
        market.client.call("energy.flagDispute", _flag(market, meter), bob)
        for method, params in (
            ("energy.getMarketInfo", {}),
            ("energy.getMarketStats", {}),
            ("energy.getOffers", {"energy_type": "solar"}),
            ("energy.listProviders", {"energy_type": "solar"}),
            ("energy.getReceipts", {"provider_id": meter.provider_id}),
            ("energy.getDisputes", {"provider_id": meter.provider_id}),
            ("energy.getCarbonOffset", {"account": "bob.theblock"}),
            ("energy.getRejections", {"meter_address": meter.meter_address}),
        ):
            market.client.call(method, params)
        assert bob.account == "bob.theblock" and later["transaction_id"]
    # The jobs, once their work is due.
    market.clock.now += 2 * day
    with recorder.running("SettleDuePurchases"):
        run_settlement(market.deps)
    market.clock.now += 60 * day
    with recorder.running("ExpireUnsoldCredits"):
        run_expiry(market.deps)
    with recorder.running("ResolveDueDisputes"):
        run_disputes(market.deps)
    # The stream consumers, on what all that wrote.
    tables = tables_from_environment(dict(os.environ))
    # The last reading's credit lost between ingest's two writes: the registry
    # stream's reader puts it again.
    dynamodb.delete_item(TableName=tables.credits, Key=credit_key(last_credit_id))
    with recorder.running("WatchMeters"):
        app.watch_meters(_stream_event(tables.registry), None)
    assert "Item" in dynamodb.get_item(TableName=tables.credits, Key=credit_key(last_credit_id))
    with recorder.running("PublishMarketEvents"):
        app.publish_market_events(_stream_event(tables.ledger), None)
    with recorder.running("PublishDisputeEvents"):
        app.publish_dispute_events(_stream_event(tables.disputes), None)
    # The WebSocket routes and the stats push.
    pushes = Pushes()
    with recorder.running("WebsocketConnect"):
        assert live.connect(live_dependencies(), "conn-1", None)
    with recorder.running("WebsocketMessage"):
        live.receive(
            live_dependencies(),
            pushes,
            "conn-1",
            '{"action": "subscribe", "id": "s", "topics": ["market_stats"]}',
        )
    with recorder.running("PushMarketStats"):
        push_market_stats()
    with recorder.running("WebsocketDisconnect"):
        live.disconnect(live_dependencies(), "conn-1")

    table_ids = {os.environ[v]: logical_id for v, logical_id in table_logical_ids().items()}
    denied = sorted(
        {
            (function, action, table_ids[table], on_index)
            for function, calls in recorder.calls.items()
            for action, table, on_index in calls
            if not _allows(function, action, table_ids[table], on_index)
        }
    )
    assert not denied, denied
    # Every function ran and touched DynamoDB (PushMarketStats: its subscribers).
    assert set(recorder.calls) == {
        "APIHandler",
        "IngestReading",
        "SettleDuePurchases",
        "ExpireUnsoldCredits",
        "ResolveDueDisputes",
        "WatchMeters",
        "PublishMarketEvents",
        "PublishDisputeEvents",
        "WebsocketConnect",
        "WebsocketMessage",
        "WebsocketDisconnect",
        "PushMarketStats",
    }, set(recorder.calls)
    assert pushes.sent  # the subscription was answered


def _flag(market: Any, meter: Any) -> dict[str, Any]:
    """A flag on one of the meter's credits (its reading)."""
    listed: Any = market.client.call("energy.getCredits", {"provider_id": meter.provider_id})
    return {"credit_id": listed["credits"][-1]["credit_id"], "reason": "looks too high"}
