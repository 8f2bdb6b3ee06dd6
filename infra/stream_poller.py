"""The local stand-in for Lambda's DynamoDB stream event sources.

In AWS, Lambda polls a table's stream and invokes each function that has an
``@app.on_dynamodb_record`` event source with batches of records. Offline,
this process imports ``app``, finds the same functions (Chalice keeps them
in ``app.app.event_sources``), reads the streams they name from moto, reshapes
each batch into the event Lambda sends (``{"Records": [...]}`` with
``eventSourceARN`` and epoch-second ``ApproximateCreationDateTime``) and calls
the handler. Its counters and backlog go to ``--status-file``.

Failures are handled as the event source mapping is configured in
infra/template.yaml (read through ``infra.emulation.stream_event_source``):

- with ``ReportBatchItemFailures``, the answer's ``batchItemFailures`` is a
  checkpoint: the records before the lowest reported sequence number are done,
  and the next batch starts at it (a reported record counts one failed
  attempt). An identifier that names no record of the batch, or the batch's
  first record, fails the batch;
- a handler that raises fails the batch; with ``BisectBatchOnFunctionError``
  a failed invocation of more than one record is split in two and the first
  half delivered (a split costs no retry, as in Lambda);
- a batch that failed is delivered again after a backoff, until
  ``MaximumRetryAttempts`` retries; then, as with records older than
  ``MaximumRecordAgeInSeconds``, Lambda's description of the batch (function,
  shard, first and last sequence number, condition) goes to the on-failure
  destination, the ``StreamFailuresQueue`` in moto, and the shard goes on.

A mapping's ``FilterCriteria`` is applied as Lambda applies it, before
batching: a record no pattern matches is dropped unseen (counted as
``filtered``), and a batch is never made of them.

Tumbling windows are not emulated: each batch is its own window, and the final one.

    python -m infra.stream_poller --stack-name energy-marketplace-local \\
        --status-file .local/streams/status.json
"""

from __future__ import annotations

import argparse
import base64
import datetime
import importlib
import json
import logging
import math
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from chalice.app import DynamoDBEventConfig

from infra.emulation import (
    OFFLINE_ACCOUNT_ID,
    StreamEventSource,
    queue_definition,
    stream_event_source,
)
from iot.lifecycle import set_on_signals, write_status

logger = logging.getLogger("infra.stream_poller")

POLL_SECONDS = 0.5
STATUS_SECONDS = 2.0
RETRY_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 10.0
BACKLOG_PROBE_LIMIT = 1000
REGION = "us-east-1"


@dataclass
class Shard:
    """Where a subscription has got to in one shard."""

    iterator: str | None
    pending: list[dict[str, Any]] = field(default_factory=list)  # read, from the checkpoint on
    failed_attempts: int = 0  # failed invocations of the batch at the checkpoint
    limit: int | None = None  # the next batch's size after a split


@dataclass
class Subscription:
    """One handler reading one stream, and where it has got to."""

    name: str
    handler: Any
    stream_arn: str
    batch_size: int
    starting_position: str
    source: StreamEventSource = field(default_factory=lambda: StreamEventSource(""))
    failure_queue_url: str | None = None
    shards: dict[str, Shard] = field(default_factory=dict)
    records: int = 0  # handed to the handler and done
    batches: int = 0
    failures: int = 0  # invocations that failed (raised, or reported a record)
    splits: int = 0
    discarded: int = 0  # records given up on, described to the on-failure destination
    filtered: int = 0  # records the mapping's FilterCriteria dropped
    backlog: int = 0
    last_error: str | None = None

    def status(self) -> dict[str, Any]:
        return {
            "stream_arn": self.stream_arn,
            "records": self.records,
            "batches": self.batches,
            "failures": self.failures,
            "splits": self.splits,
            "discarded": self.discarded,
            "filtered": self.filtered,
            "backlog": self.backlog,
            "last_error": self.last_error,
        }


def lambda_event(
    records: list[dict[str, Any]], stream_arn: str, shard_id: str = "shardId-local"
) -> dict[str, Any]:
    """The event Lambda sends a stream function, from GetRecords' records.

    As Lambda sends it to a function with a tumbling window (the template
    gives both consumers one): with the shard's id, the window and its state.
    Windows are not emulated: each batch is its own, and the final one.
    """
    shaped = []
    for record in records:
        change = dict(record["dynamodb"])
        created = change.get("ApproximateCreationDateTime")
        if isinstance(created, datetime.datetime):
            change["ApproximateCreationDateTime"] = int(created.timestamp())
        for part in ("Keys", "NewImage", "OldImage"):
            if part in change:
                change[part] = {k: _as_in_lambda(v) for k, v in change[part].items()}
        shaped.append({**record, "dynamodb": change, "eventSourceARN": stream_arn})
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "Records": shaped,
        "shardId": shard_id,
        "eventSourceARN": stream_arn,
        "window": {"start": now, "end": now},
        "state": {},
        "isFinalInvokeForWindow": True,
        "isWindowTerminatedEarly": False,
    }


def _as_in_lambda(value: dict[str, Any]) -> dict[str, Any]:
    """An attribute value as Lambda's JSON event carries it: binary as base64
    text (boto3 hands it over as bytes)."""
    ((kind, content),) = value.items()
    if kind == "B":
        return {"B": base64.b64encode(content).decode()}
    if kind == "BS":
        return {"BS": [base64.b64encode(b).decode() for b in content]}
    if kind == "M":
        return {"M": {k: _as_in_lambda(v) for k, v in content.items()}}
    if kind == "L":
        return {"L": [_as_in_lambda(v) for v in content]}
    return value


def stream_subscriptions(module: Any) -> list[Subscription]:
    subscriptions = []
    for source in module.app.event_sources:
        if isinstance(source, DynamoDBEventConfig):
            subscriptions.append(
                Subscription(
                    name=source.name,
                    handler=getattr(module, source.handler_string.split(".")[-1]),
                    stream_arn=source.stream_arn,
                    batch_size=source.batch_size,
                    starting_position=source.starting_position,
                    source=stream_event_source(source.name),
                )
            )
    return subscriptions


@dataclass(frozen=True)
class Outcome:
    """One invocation's result: the records done, and whether the batch failed."""

    done: int
    failed: bool
    raised: bool = False
    error: str | None = None


class StreamPoller:
    def __init__(
        self,
        subscriptions: list[Subscription],
        streams: Any,
        status_path: Path | None,
        *,
        sqs: Any = None,
        retry_seconds: float = RETRY_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.subscriptions = subscriptions
        self.streams = streams
        self.status_path = status_path
        self.sqs = sqs
        self.retry_seconds = retry_seconds
        self.clock = clock
        self.stopping = threading.Event()

    def _open(self, subscription: Subscription) -> None:
        description = self.streams.describe_stream(StreamArn=subscription.stream_arn)
        for shard in description["StreamDescription"]["Shards"]:
            if shard["ShardId"] not in subscription.shards:
                subscription.shards[shard["ShardId"]] = Shard(
                    self.streams.get_shard_iterator(
                        StreamArn=subscription.stream_arn,
                        ShardId=shard["ShardId"],
                        ShardIteratorType=subscription.starting_position,
                    )["ShardIterator"]
                )

    def poll(self, subscription: Subscription) -> int:
        """One batch per shard, taken until it is done or given up; return the records settled."""
        self._open(subscription)
        settled = 0
        for shard_id, shard in list(subscription.shards.items()):
            wanted = subscription.batch_size - len(shard.pending)
            if wanted > 0 and shard.iterator is not None:
                response = self.streams.get_records(ShardIterator=shard.iterator, Limit=wanted)
                admitted = [r for r in response["Records"] if subscription.source.admits(r)]
                filtered = len(response["Records"]) - len(admitted)
                subscription.filtered += filtered
                settled += filtered  # done with, as Lambda's checkpoint passes them
                shard.pending += admitted
                shard.iterator = response.get("NextShardIterator")
            if shard.pending:
                settled += self._settle_head(subscription, shard_id, shard)
        return settled

    def _settle_head(self, subscription: Subscription, shard_id: str, shard: Shard) -> int:
        """Deliver the batch at the shard's checkpoint until some of it is settled."""
        source = subscription.source
        backoff = self.retry_seconds
        while not self.stopping.is_set():
            expired = self._expired(source, shard.pending)
            if expired:
                self._give_up(subscription, shard_id, shard, expired, "RecordAgeExceeded", None)
                return expired
            size = min(subscription.batch_size, shard.limit or subscription.batch_size)
            batch = shard.pending[:size]
            outcome = self._invoke(subscription, batch, shard_id)
            if outcome.done:
                shard.pending = shard.pending[outcome.done :]
                shard.limit = None
                shard.failed_attempts = 1 if outcome.failed else 0
                subscription.records += outcome.done
                subscription.batches += 1
                if not outcome.failed:
                    subscription.last_error = None
                return outcome.done
            subscription.failures += 1
            subscription.last_error = outcome.error
            if outcome.raised and source.bisect_on_function_error and len(batch) > 1:
                shard.limit = math.ceil(len(batch) / 2)
                subscription.splits += 1
                continue  # a split is not a retry: no backoff, no count
            shard.failed_attempts += 1
            retries = shard.failed_attempts - 1
            if 0 <= source.maximum_retry_attempts <= retries:
                self._give_up(
                    subscription, shard_id, shard, len(batch), "RetryAttemptsExhausted", outcome
                )
                return len(batch)
            self.stopping.wait(backoff)
            backoff = min(MAX_BACKOFF_SECONDS, backoff * 2)
        return 0

    def _invoke(
        self, subscription: Subscription, batch: list[dict[str, Any]], shard_id: str
    ) -> Outcome:
        event = lambda_event(batch, subscription.stream_arn, shard_id)
        try:
            answer = subscription.handler(event, None)
        except Exception as exc:  # the invocation failed (a function error)
            logger.exception("%s failed on a batch of %d", subscription.name, len(batch))
            return Outcome(0, True, raised=True, error=f"{type(exc).__name__}: {exc}")
        if not subscription.source.report_batch_item_failures:
            return Outcome(len(batch), False)  # Lambda ignores the answer
        failures = (answer or {}).get("batchItemFailures") if isinstance(answer, dict) else None
        if not failures:
            return Outcome(len(batch), False)
        numbers = [str(r["dynamodb"]["SequenceNumber"]) for r in batch]
        reported = [f.get("itemIdentifier") if isinstance(f, dict) else None for f in failures]
        if any(item not in numbers for item in reported):
            error = f"batchItemFailures names no record of the batch: {reported}"
            return Outcome(0, True, error=error)
        checkpoint = min(numbers.index(str(item)) for item in reported)
        return Outcome(checkpoint, True, error=f"record {numbers[checkpoint]} reported failed")

    def _expired(self, source: StreamEventSource, pending: list[dict[str, Any]]) -> int:
        """How many records at the head are older than the mapping's maximum record age."""
        if source.maximum_record_age_seconds < 0:
            return 0
        oldest_allowed = self.clock() - source.maximum_record_age_seconds
        count = 0
        for record in pending:
            if _created_at(record) >= oldest_allowed:
                break
            count += 1
        return count

    def _give_up(
        self,
        subscription: Subscription,
        shard_id: str,
        shard: Shard,
        count: int,
        condition: str,
        outcome: Outcome | None,
    ) -> None:
        """Describe the batch to the on-failure destination (as Lambda does) and move past it."""
        batch, shard.pending = shard.pending[:count], shard.pending[count:]
        description = failure_description(
            subscription, shard_id, batch, condition, shard.failed_attempts, outcome
        )
        shard.failed_attempts, shard.limit = 0, None
        subscription.discarded += len(batch)
        logger.error("%s gave up on %d record(s): %s", subscription.name, len(batch), condition)
        if self.sqs is not None and subscription.failure_queue_url is not None:
            self.sqs.send_message(
                QueueUrl=subscription.failure_queue_url, MessageBody=json.dumps(description)
            )
        else:  # no destination configured: Lambda drops the records; the log keeps them
            logger.error("no on-failure destination: %s", json.dumps(description))

    def measure_backlog(self) -> None:
        """Records in each stream not yet done (up to a probe's limit per shard)."""
        for subscription in self.subscriptions:
            waiting = 0
            for shard in subscription.shards.values():
                waiting += len(shard.pending)
                if shard.iterator is not None:
                    probe = self.streams.get_records(
                        ShardIterator=shard.iterator, Limit=BACKLOG_PROBE_LIMIT
                    )
                    waiting += len(probe["Records"])
            subscription.backlog = waiting

    def write_status(self) -> None:
        if self.status_path is None:
            return
        self.measure_backlog()
        write_status(self.status_path, {s.name: s.status() for s in self.subscriptions})

    def run(self) -> None:
        next_status = 0.0
        while not self.stopping.is_set():
            busy = False
            for subscription in self.subscriptions:
                try:
                    busy = self.poll(subscription) > 0 or busy
                except (BotoCoreError, ClientError) as exc:  # moto busy or restarting
                    subscription.last_error = f"{type(exc).__name__}: {exc}"
                    logger.warning("%s: %s", subscription.name, exc)
            if time.monotonic() >= next_status:
                self.write_status()
                next_status = time.monotonic() + STATUS_SECONDS
            if not busy:
                self.stopping.wait(POLL_SECONDS)
        self.write_status()


def _created_at(record: dict[str, Any]) -> float:
    created = record["dynamodb"].get("ApproximateCreationDateTime")
    if isinstance(created, datetime.datetime):
        return created.timestamp()
    return float(created) if created is not None else time.time()


def _iso(seconds: float) -> str:
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def failure_description(
    subscription: Subscription,
    shard_id: str,
    batch: list[dict[str, Any]],
    condition: str,
    attempts: int,
    outcome: Outcome | None,
) -> dict[str, Any]:
    """What Lambda sends a stream mapping's on-failure destination: the batch, not its records."""
    function_arn = f"arn:aws:lambda:{REGION}:{OFFLINE_ACCOUNT_ID}:function:{subscription.name}"
    response: dict[str, Any] = {"statusCode": 200, "executedVersion": "$LATEST"}
    if outcome is not None and outcome.raised:
        response["functionError"] = "Unhandled"
    return {
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "functionArn": function_arn,
            "condition": condition,
            "approximateInvokeCount": attempts,
        },
        "responseContext": response,
        "version": "1.0",
        "timestamp": _iso(time.time()),
        "DDBStreamBatchInfo": {
            "shardId": shard_id,
            "startSequenceNumber": str(batch[0]["dynamodb"]["SequenceNumber"]),
            "endSequenceNumber": str(batch[-1]["dynamodb"]["SequenceNumber"]),
            "approximateArrivalOfFirstRecord": _iso(_created_at(batch[0])),
            "approximateArrivalOfLastRecord": _iso(_created_at(batch[-1])),
            "batchSize": len(batch),
            "streamArn": subscription.stream_arn,
        },
    }


def failure_queue_urls(sqs: Any, subscriptions: list[Subscription], stack_name: str) -> None:
    """Point each subscription at its on-failure queue (created by infra.emulation)."""
    for subscription in subscriptions:
        queue_id = subscription.source.on_failure_queue_id
        if queue_id is not None:
            name = queue_definition(queue_id, stack_name)["QueueName"]
            subscription.failure_queue_url = sqs.get_queue_url(QueueName=name)["QueueUrl"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.stream_poller", description=__doc__)
    parser.add_argument("--app", default="app", help="module holding the Chalice app")
    parser.add_argument("--status-file", type=Path, default=None)
    parser.add_argument(
        "--stack-name", default=None, help="the local stack's name, for its on-failure queue"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    subscriptions = stream_subscriptions(importlib.import_module(args.app))
    sqs = boto3.client("sqs") if args.stack_name else None
    if sqs is not None:
        failure_queue_urls(sqs, subscriptions, args.stack_name)
    poller = StreamPoller(subscriptions, boto3.client("dynamodbstreams"), args.status_file, sqs=sqs)

    set_on_signals(poller.stopping)
    logger.info("polling %s", ", ".join(f"{s.name} <- {s.stream_arn}" for s in subscriptions))
    poller.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
