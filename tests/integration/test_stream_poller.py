"""The local stand-in for Lambda's stream triggers, against moto's real streams."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from chalicelib.services import analytics
from infra.emulation import (
    STREAM_FAILURES_QUEUE_ID,
    StreamEventSource,
    create_queues,
    create_tables,
    stream_event_source,
)
from infra.stream_poller import StreamPoller, Subscription
from tests.support import MarketHarness, dynamodb_market, selling_provider, tables_from_environment


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


def test_the_mappings_filter_drops_records_before_batching_as_lambda_does(
    moto_server: str, aws_credentials: None
) -> None:
    """publish_dispute_events' FilterCriteria (infra/template.yaml): a dispute's
    own item reaches the function; the fraud watch's state beside it is
    dropped unseen, counted, and a batch is never made of dropped records."""
    dynamodb = boto3.client("dynamodb", endpoint_url=moto_server, region_name="us-east-1")
    streams = boto3.client("dynamodbstreams", endpoint_url=moto_server, region_name="us-east-1")
    table = create_tables(dynamodb, f"filters-{uuid.uuid4().hex[:8]}")["DISPUTES_TABLE"]
    arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    batches: list[list[str]] = []

    def handler(event: dict[str, Any], context: Any) -> None:
        batches.append(
            [f"{r['eventName']} {r['dynamodb']['Keys']['sk']['S']}" for r in event["Records"]]
        )

    source = stream_event_source("publish_dispute_events")
    subscription = Subscription(
        "publish_dispute_events", handler, arn, 2, "TRIM_HORIZON", source=source
    )
    poller = StreamPoller([subscription], streams, status_path=None)

    def put(pk: str, sk: str) -> None:
        dynamodb.put_item(TableName=table, Item={"pk": {"S": pk}, "sk": {"S": sk}})

    for n in range(3):  # the fraud watch's state alone: no invocation
        put(f"WATCH#meter_{n}", "WATCH")
    while poller.poll(subscription):
        pass
    assert (batches, subscription.filtered) == ([], 3)

    put("DISPUTE#d1", "DISPUTE")
    put("WATCH#meter_0", "WATCH")
    put("DISPUTE#d1", "DISPUTE")  # changed: MODIFY
    put("DISPUTE#d1", "MEMBER#flagger#carol.theblock")
    dynamodb.delete_item(TableName=table, Key={"pk": {"S": "DISPUTE#d1"}, "sk": {"S": "DISPUTE"}})
    while poller.poll(subscription):
        pass
    assert [record for batch in batches for record in batch] == ["INSERT DISPUTE", "MODIFY DISPUTE"]
    assert (subscription.records, subscription.filtered) == (2, 6)
    assert subscription.status()["filtered"] == 6


def test_a_filter_pattern_the_poller_cannot_follow_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from infra import emulation

    template = emulation._load_template_cached()
    for pattern in ('{"dynamodb": {"Keys": {"sk": {"S": [{"prefix": "D"}]}}}}', "[]", "not json"):
        resources = dict(template["Resources"])
        function = json.loads(json.dumps(resources["PublishDisputeEvents"]))
        events = function["Properties"]["Events"]
        events["PublishDisputeEventsDynamodbEventSource"]["Properties"]["FilterCriteria"] = {
            "Filters": [{"Pattern": pattern}]
        }
        resources["PublishDisputeEvents"] = function
        monkeypatch.setattr(
            emulation, "_load_template_cached", lambda r=resources: {**template, "Resources": r}
        )
        with pytest.raises(emulation.TemplateError, match="filter pattern"):
            stream_event_source("publish_dispute_events")


# --- the event source mapping's failure handling, as infra/template.yaml configures it --------


@pytest.fixture
def market_on_server(
    moto_server: str, aws_credentials: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[MarketHarness, Any, Any, dict[str, str]]]:
    """A market on the moto server, the app's handlers pointed at it, and the stack's queues."""
    from chalicelib.adapters.aws import dynamodb_client
    from chalicelib.config import get_settings
    from chalicelib.wiring import jobs_dependencies

    dynamodb = boto3.client("dynamodb", endpoint_url=moto_server, region_name="us-east-1")
    sqs = boto3.client("sqs", endpoint_url=moto_server, region_name="us-east-1")
    stack = f"poison-{uuid.uuid4().hex[:8]}"
    tables = create_tables(dynamodb, stack)
    for variable, name in tables.items():
        monkeypatch.setenv(variable, name)
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", moto_server)
    market = dynamodb_market(dynamodb, tables_from_environment(tables))
    monkeypatch.setenv("MARKETPLACE_ID", market.deps.settings.marketplace_id)
    monkeypatch.setenv("OPERATOR_PUBLIC_KEY", market.operator.public_key)
    caches = (get_settings, jobs_dependencies, dynamodb_client)
    for cache in caches:
        cache.cache_clear()
    yield market, dynamodb, sqs, {**tables, **create_queues(sqs, stack)}
    for cache in caches:
        cache.cache_clear()


def _registry_subscription(dynamodb: Any, resources: dict[str, str]) -> Subscription:
    import app

    arn = dynamodb.describe_table(TableName=resources["REGISTRY_TABLE"])["Table"]["LatestStreamArn"]
    return Subscription(
        "watch_meters",
        app.watch_meters,
        arn,
        batch_size=1000,
        starting_position="TRIM_HORIZON",
        source=stream_event_source("watch_meters"),  # the template's settings
        failure_queue_url=resources[STREAM_FAILURES_QUEUE_ID],
    )


def _failure_messages(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
    for message in messages:
        sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return [json.loads(m["Body"]) for m in messages]


def test_a_poison_record_goes_to_the_failure_queue_and_the_records_after_it_are_counted_once(
    market_on_server: tuple[MarketHarness, Any, Any, dict[str, str]],
) -> None:
    market, dynamodb, sqs, resources = market_on_server
    source = stream_event_source("watch_meters")
    assert (source.report_batch_item_failures, source.bisect_on_function_error) == (True, True)
    # Given a provider with readings, then a registry item no mapping can read,
    # then a second provider with readings, all in the registry's one stream.
    selling_provider(market, [2_500, 2_500], owner="first.theblock")
    poison_item = {"pk": {"S": "PROVIDER#broken"}, "sk": {"S": "PROVIDER"}}
    dynamodb.put_item(TableName=resources["REGISTRY_TABLE"], Item=poison_item)
    selling_provider(market, [2_500, 2_500], owner="second.theblock")

    # When the poller hands the stream to the deployed handler, as the mapping would.
    subscription = _registry_subscription(dynamodb, resources)
    poller = StreamPoller([subscription], _streams(dynamodb), None, sqs=sqs, retry_seconds=0)
    while poller.poll(subscription):
        pass

    # Then the poison record alone was described to the failure queue, after the retries.
    (failure,) = _failure_messages(sqs, resources[STREAM_FAILURES_QUEUE_ID])
    info = failure["DDBStreamBatchInfo"]
    assert info["batchSize"] == 1 and info["startSequenceNumber"] == info["endSequenceNumber"]
    assert info["streamArn"] == subscription.stream_arn
    assert failure["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert failure["requestContext"]["approximateInvokeCount"] == (
        source.maximum_retry_attempts + 1
    )
    assert failure["requestContext"]["functionArn"].endswith(":function:watch_meters")
    # and every other record was processed, the ones after the poison record too.
    assert subscription.discarded == 1 and subscription.splits >= 1
    poller.measure_backlog()
    assert subscription.backlog == 0
    stats = analytics.market_stats(market.deps)
    assert (stats.providers_registered, stats.readings_24h) == (2, 6)

    # A second reader of the whole stream (a redelivery of every batch) counts nothing twice.
    again = _registry_subscription(dynamodb, resources)
    poller = StreamPoller([again], _streams(dynamodb), None, sqs=sqs, retry_seconds=0)
    while poller.poll(again):
        pass
    assert again.records == subscription.records and again.discarded == 1
    stats = analytics.market_stats(market.deps)
    assert (stats.providers_registered, stats.readings_24h) == (2, 6)


def _streams(dynamodb: Any) -> Any:
    return boto3.client(
        "dynamodbstreams", endpoint_url=dynamodb.meta.endpoint_url, region_name="us-east-1"
    )


def test_records_older_than_the_maximum_age_are_described_to_the_queue_undelivered(
    ledger: tuple[Any, Any, str, str], moto_server: str
) -> None:
    dynamodb, streams, table, arn = ledger
    sqs = boto3.client("sqs", endpoint_url=moto_server, region_name="us-east-1")
    queue_url = create_queues(sqs, f"age-{uuid.uuid4().hex[:8]}")[STREAM_FAILURES_QUEUE_ID]
    delivered: list[dict[str, Any]] = []
    source = StreamEventSource("Handler", maximum_record_age_seconds=3600)
    subscription = Subscription(
        "handler",
        lambda event, context: delivered.extend(event["Records"]),
        arn,
        batch_size=10,
        starting_position="TRIM_HORIZON",
        source=source,
        failure_queue_url=queue_url,
    )
    for n in range(2):
        _put(dynamodb, table, n)
    two_hours_later = StreamPoller(
        [subscription], streams, None, sqs=sqs, clock=lambda: time.time() + 7200
    )
    while two_hours_later.poll(subscription):
        pass
    assert delivered == []
    (failure,) = _failure_messages(sqs, queue_url)
    assert failure["requestContext"]["condition"] == "RecordAgeExceeded"
    assert failure["DDBStreamBatchInfo"]["batchSize"] == 2


def test_without_reporting_the_answer_is_ignored_and_a_failing_batch_is_retried_to_the_limit(
    ledger: tuple[Any, Any, str, str], moto_server: str
) -> None:
    dynamodb, streams, table, arn = ledger
    sqs = boto3.client("sqs", endpoint_url=moto_server, region_name="us-east-1")
    queue_url = create_queues(sqs, f"retry-{uuid.uuid4().hex[:8]}")[STREAM_FAILURES_QUEUE_ID]
    calls: list[int] = []

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        calls.append(len(event["Records"]))
        if len(calls) <= 3:
            raise RuntimeError("the function failed")
        first = event["Records"][0]["dynamodb"]["SequenceNumber"]
        return {"batchItemFailures": [{"itemIdentifier": first}]}  # not read: no reporting

    subscription = Subscription(
        "handler",
        handler,
        arn,
        batch_size=10,
        starting_position="TRIM_HORIZON",
        source=StreamEventSource("Handler", maximum_retry_attempts=2),  # no split either
        failure_queue_url=queue_url,
    )
    for n in range(3):
        _put(dynamodb, table, n)
    poller = StreamPoller([subscription], streams, None, sqs=sqs, retry_seconds=0)
    while poller.poll(subscription):
        pass
    _put(dynamodb, table, 3)
    while poller.poll(subscription):
        pass
    # Three failed invocations of the same batch (one try, two retries), then the queue.
    assert calls == [3, 3, 3, 1]
    (failure,) = _failure_messages(sqs, queue_url)
    assert failure["DDBStreamBatchInfo"]["batchSize"] == 3
    assert failure["responseContext"]["functionError"] == "Unhandled"
    assert (subscription.records, subscription.discarded) == (1, 3)


def test_every_stream_function_has_a_bounded_mapping_with_the_failure_queue_as_destination() -> (
    None
):
    import app
    from infra.stream_poller import stream_subscriptions

    subscriptions = stream_subscriptions(app)
    assert sorted(s.name for s in subscriptions) == [
        "publish_dispute_events",
        "publish_market_events",
        "watch_meters",
    ]
    for subscription in subscriptions:
        source = subscription.source
        assert source.report_batch_item_failures and source.bisect_on_function_error
        assert source.maximum_retry_attempts >= 0 and source.maximum_record_age_seconds > 0
        assert source.on_failure_queue_id == STREAM_FAILURES_QUEUE_ID


def test_the_poller_finds_the_local_stacks_failure_queue_by_the_stack_name(
    moto_server: str, aws_credentials: None
) -> None:
    import app
    from infra.stream_poller import failure_queue_urls, stream_subscriptions

    sqs = boto3.client("sqs", endpoint_url=moto_server, region_name="us-east-1")
    stack = f"queues-{uuid.uuid4().hex[:8]}"
    urls = create_queues(sqs, stack)
    subscriptions = stream_subscriptions(app)
    failure_queue_urls(sqs, subscriptions, stack)
    assert {s.failure_queue_url for s in subscriptions} == {urls[STREAM_FAILURES_QUEUE_ID]}
