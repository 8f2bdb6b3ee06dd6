"""The stream functions' answers when a batch fails: a checkpoint, never a silent skip.

Each test reads the registry's real stream records (moto), puts a record that
cannot be decoded among them where it needs one, and invokes the deployed
handler through chalice.test.Client, as Lambda would.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import pytest
from botocore.exceptions import ClientError

from chalicelib.services import analytics
from chalicelib.streams.batch import PoisonRecord
from tests.integration.test_analytics import analytics_items, unread_batches
from tests.support import MarketHarness, dynamodb_market, selling_provider, tables_from_environment


@pytest.fixture
def market(dynamodb: Any) -> MarketHarness:
    return dynamodb_market(dynamodb, tables_from_environment(dict(os.environ)))


def poisoned(record: dict[str, Any]) -> dict[str, Any]:
    """A provider record whose image the provider mapping cannot read (its price is gone)."""
    poison = copy.deepcopy(record)
    image = poison["dynamodb"]["NewImage"]
    image["sk"] = {"S": "PROVIDER"}
    image.pop("price_micro_block_per_kwh", None)
    image["capacity_wh"] = {"S": "a lot"}
    poison["dynamodb"]["SequenceNumber"] = record["dynamodb"]["SequenceNumber"] + "5"
    return poison


def provider_index(records: list[dict[str, Any]]) -> int:
    """Where the provider's registration is in the registry's records."""
    sort_keys = [r["dynamodb"]["Keys"]["sk"]["S"] for r in records]
    return sort_keys.index("PROVIDER")


def registry_event(dynamodb: Any) -> dict[str, Any]:
    """The registry's stream as one event: a provider, its meter, three readings."""
    (event,) = unread_batches(dynamodb, tables_from_environment(dict(os.environ)).registry)
    return event


def counted(market: MarketHarness) -> tuple[int, int]:
    stats = analytics.market_stats(market.deps)
    return stats.providers_registered, stats.readings_24h


def with_records(event: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, Any]:
    return {**event, "Records": records}


def test_a_poison_record_is_reported_and_only_the_records_before_it_are_processed(
    dynamodb: Any, market: MarketHarness, lambda_client: Any
) -> None:
    selling_provider(market, [2_500, 2_500])
    event = registry_event(dynamodb)
    records = event["Records"]
    cut = provider_index(records) + 1
    poison = poisoned(records[cut - 1])
    batch = [*records[:cut], poison, *records[cut:]]

    answer = lambda_client.lambda_.invoke("watch_meters", with_records(event, batch)).payload

    # The checkpoint: the poison record; everything after it comes again.
    assert answer == {
        "state": {},
        "batchItemFailures": [{"itemIdentifier": poison["dynamodb"]["SequenceNumber"]}],
    }
    assert counted(market) == (1, 0)  # the provider, before the poison; no reading yet
    # Lambda, once it has given up on the poison record, delivers what follows it.
    after = lambda_client.lambda_.invoke("watch_meters", with_records(event, records[cut:]))
    assert after.payload == {"state": {}, "batchItemFailures": []}
    assert counted(market) == (1, 3)
    # A redelivery of the whole batch counts nothing twice.
    lambda_client.lambda_.invoke("watch_meters", with_records(event, records))
    assert counted(market) == (1, 3)


def test_a_poison_record_at_the_head_of_a_batch_raises_for_a_split_and_writes_nothing(
    dynamodb: Any, market: MarketHarness, lambda_client: Any
) -> None:
    selling_provider(market, [2_500])
    event = registry_event(dynamodb)
    poison = poisoned(event["Records"][provider_index(event["Records"])])

    with pytest.raises(PoisonRecord, match=poison["dynamodb"]["SequenceNumber"]):
        lambda_client.lambda_.invoke(
            "watch_meters", with_records(event, [poison, *event["Records"]])
        )
    assert analytics_items(dynamodb) == []
    # Alone in its batch (after the splits), it is reported, not raised.
    alone = lambda_client.lambda_.invoke("watch_meters", with_records(event, [poison]))
    assert alone.payload["batchItemFailures"] == [
        {"itemIdentifier": poison["dynamodb"]["SequenceNumber"]}
    ]


def _failing_dynamodb(code: str) -> Any:
    """The app's DynamoDB client failing every call with ``code``, until the hook is removed."""
    from chalicelib.adapters.aws import dynamodb_client

    def fail(**_: Any) -> None:
        raise ClientError({"Error": {"Code": code, "Message": code}}, "Call")

    client = dynamodb_client()
    client.meta.events.register("before-call.dynamodb", fail)
    return lambda: client.meta.events.unregister("before-call.dynamodb", fail)


def test_a_throttled_batch_is_reported_whole_and_counted_once_when_retried(
    dynamodb: Any, market: MarketHarness, lambda_client: Any
) -> None:
    selling_provider(market, [2_500, 2_500])
    event = registry_event(dynamodb)
    first = event["Records"][0]["dynamodb"]["SequenceNumber"]

    remove = _failing_dynamodb("ProvisionedThroughputExceededException")
    try:
        answer = lambda_client.lambda_.invoke("watch_meters", event).payload
    finally:
        remove()

    assert answer == {"state": {}, "batchItemFailures": [{"itemIdentifier": first}]}
    assert lambda_client.lambda_.invoke("watch_meters", event).payload["batchItemFailures"] == []
    assert counted(market) == (1, 3)


def test_a_failure_that_is_not_transient_is_raised_for_lambda_to_split_the_batch(
    dynamodb: Any, market: MarketHarness, lambda_client: Any
) -> None:
    selling_provider(market, [2_500])
    event = registry_event(dynamodb)
    remove = _failing_dynamodb("ValidationException")
    try:
        with pytest.raises(ClientError, match="ValidationException"):
            lambda_client.lambda_.invoke("watch_meters", event)
    finally:
        remove()


def test_the_disputes_consumer_answers_with_a_checkpoint_and_no_window_state(
    lambda_client: Any,
) -> None:
    from infra.stream_poller import lambda_event

    arn = "arn:aws:dynamodb:us-east-1:123456789012:table/d/stream/2026-01-01T00:00:00.000"
    disputed = {
        "eventName": "INSERT",
        "dynamodb": {
            "SequenceNumber": "100",
            "Keys": {"pk": {"S": "DISPUTE#d1"}, "sk": {"S": "DISPUTE"}},
            "NewImage": {"pk": {"S": "DISPUTE#d1"}, "sk": {"S": "DISPUTE"}},  # nothing else
        },
    }
    answer = lambda_client.lambda_.invoke(
        "publish_dispute_events", lambda_event([disputed], arn, "shardId-1")
    ).payload
    assert answer == {"batchItemFailures": [{"itemIdentifier": "100"}]}
    empty = lambda_client.lambda_.invoke("publish_dispute_events", lambda_event([], arn))
    assert empty.payload == {"batchItemFailures": []}
